# OTA on the node: fetch an image the headend signed for this node, check it on the way in and
# hand it to the board's inactive slot (hal Ota), which boots it next on trial. firmware/device.py
# confirms it once healthy or reboots so the board rolls back. docs/protocol.md, "OTA".
# The running image is never touched: until finish() the board still boots what it runs now.
import hashlib
import json

from binascii import hexlify

from firmware import http, protocol

CHUNK = 1024  # bytes per read: the image is streamed, never held (about 100 KB of heap)
TIMEOUT_MS = 20000  # a stall this long (real ms) fails the download
F_OTA = "ota.json"  # the last install: {"version", "from", "state", "reason", "detail"}

# States of the last install (ota.json, telemetry "ota.state")
STAGED = "staged"  # written and verified, boots next on trial
TRIAL = "trial"  # running on trial: confirmed once healthy, else rolled back
CONFIRMED = "confirmed"
ROLLED_BACK = "rolled_back"  # did not report healthy in time; the previous image runs again
FAILED = "failed"  # refused or failed before switching; the running image is untouched


class Refused(Exception):
    """The image was not installed. .reason is a protocol R_* code."""

    def __init__(self, reason, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def check_manifest(signer, args, board_name, running_version):
    """Signature first (nothing about the node is compared for a forged manifest), then the
    board and the version. Raises Refused."""
    if not signer.verify(protocol.ota_manifest_bytes(args), args.get("sig")):
        raise Refused(protocol.R_SIGNATURE, "manifest")
    if args["board"] != board_name:
        raise Refused(protocol.R_WRONG_BOARD, "%s, not %s" % (args["board"], board_name))
    new = protocol.parse_version(args["version"])
    cur = protocol.parse_version(running_version)
    if new is None or (cur is not None and new <= cur):
        raise Refused(protocol.R_NOT_NEWER, "%s <= %s" % (args["version"], running_version))


async def download(slot, url, size, sha256, timeout_ms=TIMEOUT_MS, chunk=CHUNK):
    """Stream url into slot (hal Ota: begin/write), hashing on the way. Raises Refused unless
    exactly size bytes with this SHA-256 arrived; finish() is the caller's, after this."""
    resp = None
    try:
        try:
            resp = await http.get(url, timeout_ms)
        except (OSError, ValueError) as e:
            raise Refused(protocol.R_DOWNLOAD, str(e))
        if resp.status != 200:
            raise Refused(protocol.R_DOWNLOAD, "HTTP %d" % resp.status)
        if resp.length is not None and resp.length != size:
            raise Refused(protocol.R_BAD_SIZE, "%d bytes, manifest %d" % (resp.length, size))
        slot.begin(size)
        h = hashlib.sha256()
        got = 0
        while True:
            try:
                data = await resp.read(chunk)
            except OSError as e:
                raise Refused(protocol.R_DOWNLOAD, "%s after %d bytes" % (e, got))
            if not data:
                break
            got += len(data)
            if got > size:
                raise Refused(protocol.R_BAD_SIZE, "more than %d bytes" % size)
            h.update(data)
            slot.write(data)
        if got != size:
            raise Refused(protocol.R_BAD_SIZE, "%d bytes, manifest %d" % (got, size))
        if hexlify(h.digest()).decode() != sha256:
            raise Refused(protocol.R_BAD_HASH)
    finally:
        if resp is not None:
            resp.close()


async def install(board, signer, args, running_version, timeout_ms=TIMEOUT_MS):
    """The "ota" op (args checked by protocol.args_error): verify the manifest, download,
    verify the image, then switch the board's next boot to it on trial. Raises Refused; on
    success the last install is STAGED (the caller reboots)."""
    slot = board.ota
    if slot is None:
        raise Refused(protocol.R_OTA_UNSUPPORTED, board.name)
    if slot.on_trial():  # the other slot holds the image to roll back to: keep it
        raise Refused(protocol.R_OTA_BUSY, "running image on trial")
    check_manifest(signer, args, board.name, running_version)
    try:
        await download(slot, args["url"], args["size"], args["sha256"], timeout_ms)
        manifest = {}
        for k in protocol.OTA_FIELDS:
            manifest[k] = args[k]
        slot.describe(manifest)
        slot.finish()
    except Refused:
        raise
    except Exception as e:  # a slot that cannot be written or switched (flash, unpacking)
        raise Refused(protocol.R_OTA_WRITE, repr(e))
    record(board.storage, args["version"], running_version, STAGED)


def record(storage, version, from_version, state, reason=None, detail=None):
    """Persist the last install's state; returns it."""
    last = {"version": version, "from": from_version, "state": state, "reason": reason,
            "detail": detail}
    storage.write(F_OTA, json.dumps(last).encode())
    return last


def last(storage):
    raw = storage.read(F_OTA)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def boot_check(board, running_version):
    """At boot: what became of the last install. Staged and now running on trial: TRIAL;
    staged or on trial but no longer on trial and not running its version: ROLLED_BACK (the
    board went back to the previous image). Returns the (updated) last install or None."""
    st = last(board.storage)
    if st is None or st.get("state") not in (STAGED, TRIAL) or board.ota is None:
        return st
    if board.ota.on_trial():
        state = TRIAL
    elif running_version == st.get("version"):
        state = CONFIRMED
    else:
        state = ROLLED_BACK
    if state != st["state"]:
        st = record(board.storage, st.get("version"), st.get("from"), state,
                    st.get("reason") or (protocol.R_NOT_HEALTHY if state == ROLLED_BACK
                                         else None),
                    st.get("detail"))
    return st


def summary(board, st):
    """The telemetry field "ota": the running slot, whether it is on trial, the last install."""
    slot = board.ota
    if slot is None:
        return None
    out = {"slot": slot.running(), "trial": slot.on_trial()}
    if st:
        out["state"] = st.get("state")
        out["version"] = st.get("version")
        out["reason"] = st.get("reason")
    return out
