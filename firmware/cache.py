# The node's media cache: recorded items and the fallback announcement, kept in flash so the
# plan plays when the headend or the backhaul is down. Bounded; least recently used entries
# that the current plan does not need go first. Downloads stream in 1 KB chunks to a temp file,
# hashed on the way, and only a file with the right size and SHA-256 is renamed into place.
import json

from binascii import hexlify

import hashlib

from firmware import http

CHUNK = 1024
PREFIX = "m-"  # cache file: m-<sha256 hex>
PART = ".part"  # download in progress (removed at boot and on any failure)
F_INDEX = "cache.json"  # {sha: last use}: the LRU order, small and rewritten atomically


class CacheFull(Exception):
    """The entry does not fit even after evicting everything the plan does not need."""


class MediaCache:
    def __init__(self, storage, limit_bytes, get=None):
        self.storage = storage
        self.limit = limit_bytes
        self._get = get or http.get
        self.full = False  # the last fetch did not fit (reported in telemetry)
        self._lru = {}  # type: dict[str, int]
        raw = storage.read(F_INDEX)
        if raw:
            try:
                self._lru = json.loads(raw)
            except ValueError:
                self._lru = {}
        self._use = 0
        for v in self._lru.values():
            if v > self._use:
                self._use = v
        for name in storage.names():  # a download cut by a power failure
            if name.startswith(PREFIX) and name.endswith(PART):
                storage.remove(name)

    # --- what is there ----------------------------------------------------------------

    def _name(self, sha):
        return PREFIX + sha

    def entries(self):
        """{sha: size} of the complete cache files."""
        out = {}
        for name in self.storage.names():
            if name.startswith(PREFIX) and not name.endswith(PART):
                size = self.storage.size(name)
                if size is not None:
                    out[name[len(PREFIX):]] = size
        return out

    def used(self):
        total = 0
        for size in self.entries().values():
            total += size
        return total

    def has(self, sha):
        return self.storage.size(self._name(sha)) is not None

    def open(self, sha):
        """The cached file for reading (binary), or None. Counts as a use for the LRU order."""
        if not self.has(sha):
            return None
        self._touch(sha)
        return self.storage.open(self._name(sha), "rb")

    def _touch(self, sha):
        self._use += 1
        self._lru[sha] = self._use
        self._save_index()

    def _save_index(self):
        self.storage.write(F_INDEX, json.dumps(self._lru).encode())

    def remove(self, sha):
        self.storage.remove(self._name(sha))
        if sha in self._lru:
            del self._lru[sha]
            self._save_index()

    # --- making room --------------------------------------------------------------------

    def make_room(self, size, keep):
        """Evict least recently used entries not in keep until size more bytes fit.
        Raises CacheFull (evicting nothing) when that is impossible."""
        if size > self.limit:
            raise CacheFull("%d bytes > cache of %d" % (size, self.limit))
        entries = self.entries()
        used = 0
        for s in entries.values():
            used += s
        if used + size <= self.limit:
            return
        victims = [sha for sha in entries if sha not in keep]
        victims.sort(key=lambda sha: self._lru.get(sha, 0))
        free = self.limit - used
        chosen = []
        for sha in victims:
            if free >= size:
                break
            chosen.append(sha)
            free += entries[sha]
        if free < size:
            raise CacheFull("need %d bytes, %d free after eviction" % (size, free))
        for sha in chosen:
            self.remove(sha)

    # --- fetching -----------------------------------------------------------------------

    async def fetch(self, url, sha, size, keep=()):
        """Make sure the media is cached. True if it was downloaded, False if already there.
        OSError: network or HTTP failure; ValueError: wrong size or hash; CacheFull.
        A failed download leaves no file behind."""
        if self.has(sha):
            self._touch(sha)
            return False
        try:
            self.make_room(size, keep)
        except CacheFull:
            self.full = True
            raise
        part = self._name(sha) + PART
        f = None
        resp = None
        ok = False
        try:
            resp = await self._get(url)
            if resp.status != 200:
                raise OSError("HTTP %d" % resp.status)
            if resp.length is not None and resp.length != size:
                raise ValueError("size %d, expected %d" % (resp.length, size))
            f = self.storage.open(part, "wb")
            h = hashlib.sha256()
            got = 0
            while True:
                chunk = await resp.read(CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if got > size:
                    raise ValueError("more than %d bytes" % size)
                h.update(chunk)
                f.write(chunk)
            f.close()
            f = None
            if got != size:
                raise ValueError("size %d, expected %d" % (got, size))
            if hexlify(h.digest()).decode() != sha:
                raise ValueError("sha256 mismatch")
            self.storage.rename(part, self._name(sha))
            ok = True
        finally:
            if resp is not None:
                resp.close()
            if f is not None:
                f.close()
            if not ok:
                self.storage.remove(part)
        self.full = False
        self._touch(sha)
        return True
