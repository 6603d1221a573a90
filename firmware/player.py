# Airing plan items through the HAL: recorded items from the media cache (or streamed from
# their url when not cached), relays from a primary and a backup stream with failover and a
# cached fallback announcement. Items are time-anchored: joined late, they start where they
# would be by now. The caller (firmware/node.py) owns the amplifier's post-roll and the records.
import asyncio

from firmware import http, wav
from firmware.plan import position_ms

CHUNK = 1024  # bytes of PCM per read: small enough for a 100 KB heap
AMP_PREROLL_MS = 300  # relay closes this long before audio so the first word is not clipped
LEAD_MS = 5000  # a relay opens its stream this long before the slot starts
RELAY_TIMEOUT_MS = 5000  # real ms: connect/read stall that counts as a dead source
RETRY_MS = 10000  # both sources dead and no fallback: try again after this long
ANCHOR_SLACK_MS = 2000  # started this late (scheduling), a recording still plays from its top
GAP_OK_MS = 15000  # a relay with gaps (failover) totalling at most this still "aired"
SOURCES = ("primary", "backup")


class Airing:
    """What actually aired for one as-run record."""

    def __init__(self):
        self.start = None
        self.end = None
        self.src = None
        self.media = None
        self.fails = []  # type: list[str]
        self.aired = {}  # type: dict[str, int]  # ms per source
        self.outcome = None
        self.reason = None
        self._open = None  # type: tuple | None  # (src, start) of the segment on air

    def fail(self, src, why):
        if len(self.fails) < 8:
            self.fails.append("%s: %s" % (src, why))

    def begin(self, src, start):
        if self.start is None:
            self.start = start
        self._open = (src, start)

    def finish(self, end):
        """Close the segment on air (if any) at end."""
        if self._open is None:
            return
        src, start = self._open
        self._open = None
        self.end = end
        self.aired[src] = self.aired.get(src, 0) + max(0, end - start)


class Player:
    def __init__(self, board, cache, allowed_url, timeout_ms=RELAY_TIMEOUT_MS):
        self.board = board
        self.clock = board.clock
        self.cache = cache
        self.allowed_url = allowed_url
        self.timeout_ms = timeout_ms
        self._t_open = 0
        self._bpm = 1.0
        self._label = ""
        self._pre = None  # (item id, task, [opened]): a back-to-back relay's primary stream

    # --- building blocks --------------------------------------------------------------

    async def amp_until(self, audio_at):
        """Amplifier on (if not already) and wait until audio_at, at least the pre-roll."""
        board = self.board
        if not board.amp.is_on():
            board.amp.on()
            board.led.set("play")
            audio_at = max(audio_at, self.clock.time_ms() + AMP_PREROLL_MS)
        # Until the node's clock says so: a sleep runs on another clock (ticks, monotonic)
        # and can end a little early, and an item must not start before its time.
        while True:
            wait = audio_at - self.clock.time_ms()
            if wait <= 0:
                return
            await self.clock.sleep_ms(wait)

    def open_audio(self, fmt, label):
        rate, bits, channels = fmt
        self.board.audio.open(rate, bits, channels, label)
        self._t_open = self.clock.time_ms()
        self._bpm = rate * wav.frame_bytes(bits, channels) / 1000
        return self._t_open

    async def pump(self, stream, fmt, until, limit=None):
        """Copy PCM from stream to the audio output until the audio reaches `until`, the
        stream ends or `limit` bytes. Returns (bytes, why) with why 'until', 'end' or 'eof'.
        OSError from the stream (stall, cut) propagates."""
        rate, bits, channels = fmt
        audio = self.board.audio
        written = 0
        while True:
            pos = self._t_open + int(written / self._bpm)
            now = self.clock.time_ms()
            if now > pos:
                pos = now  # an underrun: the output caught up with us
            n = wav.bytes_for_ms(until - pos, rate, bits, channels)
            if n <= 0:
                return written, "until"
            if n > CHUNK:
                n = CHUNK - CHUNK % wav.frame_bytes(bits, channels)
            if limit is not None:
                if limit - written <= 0:
                    return written, "end"
                n = min(n, limit - written)
            chunk = await stream.read(n)
            if not chunk:
                return written, "eof"
            await audio.write(chunk)
            written += len(chunk)

    async def _open_url(self, url, timeout_ms):
        if not self.allowed_url(url):
            try:
                host = http.parse_url(url)[0]
            except ValueError:
                host = "bad url"
            raise OSError("host not allowed: %s" % host)
        resp = await http.get(url, timeout_ms)
        try:
            if resp.status != 200:
                raise OSError("HTTP %d" % resp.status)
            rate, bits, channels, size, head = await wav.read_header_at(resp)
        except BaseException:
            resp.close()
            raise
        return resp, (rate, bits, channels), size

    def preopen(self, item):
        """Start opening a relay's primary stream before its slot (once per item)."""
        if self._pre is not None and self._pre[0] == item["id"]:
            return
        self.drop_preopened()
        got = []  # type: list
        self._pre = (item["id"], asyncio.create_task(self._open_into(got, item["src"][0])),
                     got)

    async def _open_into(self, got, url):
        got.append(await self._open_url(url, self.timeout_ms))

    def drop_preopened(self):
        pre, self._pre = self._pre, None
        if pre is not None:
            pre[1].cancel()
            for resp, _, _ in pre[2]:
                resp.close()

    async def _preopened(self, item):
        """The pre-opened primary stream of this item, or None (then open it now). OSError
        when opening it failed."""
        pre = self._pre
        if pre is None or pre[0] != item["id"]:
            self.drop_preopened()
            return None
        self._pre = None
        await pre[1]
        return pre[2][0]

    # --- recorded items ---------------------------------------------------------------

    async def recorded(self, item, start_at, until, airing, before_audio):
        """Air a recorded item from start_at (time-anchored) to until or the end of its media."""
        self.drop_preopened()
        m = item["media"]
        airing.media = m["url"]
        f = self.cache.open(m["sha"])
        stream = None
        try:
            if f is not None:
                stream = wav.FileStream(f)
                src = "cache"
                rate, bits, channels, size, head = await wav.read_header_at(stream)
                fmt = (rate, bits, channels)
            else:
                src = "stream"
                try:
                    stream, fmt, size = await self._open_url(m["url"], self.timeout_ms)
                except (OSError, ValueError) as e:
                    airing.outcome, airing.reason = "failed", "media not cached (%s)" % e
                    return
                head = 0
            await self.amp_until(start_at)
            await before_audio()
            pos = position_ms(item, self.clock.time_ms())
            if pos - item.get("off", 0) < ANCHOR_SLACK_MS:
                pos = item.get("off", 0)  # on time but for the loop's latency: from the top
            skip = wav.offset_bytes(pos, fmt[0], fmt[1], fmt[2])
            if skip >= size:
                airing.outcome, airing.reason = "aired", "media shorter than the slot"
                return
            if f is not None:
                stream.seek(head + skip)  # type: ignore[union-attr]
            else:
                left = skip
                while left > 0:
                    chunk = await stream.read(min(CHUNK, left))  # type: ignore[union-attr]
                    if not chunk:
                        raise OSError("stream ended before the join point")
                    left -= len(chunk)
            airing.begin(src, self.open_audio(fmt, item["id"]))
            airing.src = src
            try:
                written, why = await self.pump(stream, fmt, until, size - skip)
                await self.board.audio.drain()
            except OSError as e:
                airing.finish(self.clock.time_ms())
                airing.outcome, airing.reason = "partial", "media: %s" % e
                return
            airing.finish(self.clock.time_ms())
            if why == "eof":
                airing.outcome, airing.reason = "partial", "media ended early"
            else:
                airing.outcome = "aired"
        finally:
            if stream is not None:
                stream.close()

    # --- relays -----------------------------------------------------------------------

    async def relay(self, item, start_at, until, airing, before_audio, fallback=None):
        """Air a relay from start_at to until: src[0] then src[1] on any failure; when all are
        dead, the cached fallback announcement, then the sources again, until the slot ends."""
        srcs = item["src"]
        self._label = item["id"]
        i = 0
        dead = 0  # sources that failed since the last one that aired
        first = True
        clock = self.clock
        while clock.time_ms() < until:
            name = SOURCES[i]
            resp = None
            try:
                try:
                    got = await self._preopened(item) if first and i == 0 else None
                    if got is None:
                        got = await self._open_url(srcs[i], self.timeout_ms)
                    resp, fmt, size = got
                except (OSError, ValueError) as e:
                    airing.fail(name, e)
                    dead += 1
                    i = (i + 1) % len(srcs)
                    if dead >= len(srcs):
                        dead = 0
                        if not await self._fallback(fallback, start_at, until, airing,
                                                    before_audio):
                            await clock.sleep_ms(min(RETRY_MS, until - clock.time_ms()))
                    continue
                await self.amp_until(start_at if first else clock.time_ms())
                await before_audio()
                first = False
                if clock.time_ms() >= until:
                    break
                airing.media = srcs[i]
                airing.begin(name, self.open_audio(fmt, item["id"]))
                try:
                    written, why = await self.pump(resp, fmt, until)
                except OSError as e:
                    why = "stream: %s" % e
                airing.finish(clock.time_ms())
                if why == "until":
                    break
                airing.fail(name, "stream ended" if why == "eof" else why)
                dead = 1
                i = (i + 1) % len(srcs)
                if len(srcs) == 1:
                    dead = 0
                    if not await self._fallback(fallback, start_at, until, airing, before_audio):
                        await clock.sleep_ms(min(RETRY_MS, until - clock.time_ms()))
            finally:
                if resp is not None:
                    resp.close()
        self.board.audio.close()
        self._settle(airing, until - start_at)

    async def _fallback(self, fallback, start_at, until, airing, before_audio):
        """Play the cached fallback announcement once (up to until). False if there is none."""
        if not fallback:
            return False
        f = self.cache.open(fallback["sha"])
        if f is None:
            return False
        stream = wav.FileStream(f)
        try:
            rate, bits, channels, size, head = await wav.read_header_at(stream)
            fmt = (rate, bits, channels)
            await self.amp_until(max(start_at, self.clock.time_ms()))
            await before_audio()
            if self.clock.time_ms() >= until:
                return True
            airing.begin("fallback", self.open_audio(fmt, "fallback:" + self._label))
            await self.pump(stream, fmt, until, size)
            await self.board.audio.drain()
            airing.finish(self.clock.time_ms())
            self.board.audio.close()
        except (OSError, ValueError) as e:
            airing.fail("fallback", e)
            return False
        finally:
            stream.close()
        return True

    def _settle(self, airing, want_ms):
        """Outcome of a relay: aired when the real sources covered the slot but for short
        failover gaps, partial when they covered some of it, failed when none aired."""
        real = 0
        best = None
        for name in SOURCES:
            ms = airing.aired.get(name, 0)
            real += ms
            if ms and (best is None or ms > airing.aired[best]):
                best = name
        airing.src = best or ("fallback" if airing.aired.get("fallback") else None)
        if real and want_ms - real <= GAP_OK_MS:
            airing.outcome = "aired"
        elif real:
            airing.outcome = "partial"
        else:
            airing.outcome = "failed"
        if airing.fails:
            airing.reason = "; ".join(airing.fails)
