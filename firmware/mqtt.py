# A small asyncio MQTT 3.1.1 client for the node. docs/transport.md says why it exists.
# It speaks TCP, or TLS to a server its pinned CA signed, through asyncio streams, so it works
# over any IP link the node has (WiFi, Ethernet, 4G PPP). Runs unchanged under MicroPython and
# CPython 3.11. Supported: CONNECT (user/password, will, clean/persistent session), SUBSCRIBE,
# PUBLISH QoS 0/1 both ways, PINGREQ keepalive, DISCONNECT. Not supported: QoS 2, UNSUBSCRIBE.
import asyncio
import errno
import ssl
import time

if False:  # type comments only; MicroPython has no typing module
    from typing import Any

try:
    _ticks_ms = time.ticks_ms  # type: ignore[attr-defined]
    _ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
except AttributeError:  # CPython
    _ticks_ms = None  # type: ignore[assignment]
    _ticks_diff = None  # type: ignore[assignment]


def ticks_ms():
    """Monotonic milliseconds (wraps on MicroPython; compare with ticks_diff)."""
    if _ticks_ms is not None:
        return _ticks_ms()
    return int(time.monotonic() * 1000)  # type: ignore[attr-defined]


def ticks_diff(a, b):
    """a - b in milliseconds, wrap-safe on MicroPython."""
    if _ticks_diff is not None:
        return _ticks_diff(a, b)
    return a - b


async def sleep_ms(ms):
    if hasattr(asyncio, "sleep_ms"):
        await asyncio.sleep_ms(ms)  # type: ignore[attr-defined]
    else:
        await asyncio.sleep(ms / 1000)


async def wait_ms(aw, ms):
    """Await aw for at most ms milliseconds; a timeout raises OSError(ETIMEDOUT)."""
    try:
        if hasattr(asyncio, "wait_for_ms"):
            return await asyncio.wait_for_ms(aw, ms)  # type: ignore[attr-defined]
        # CPython 3.11's wait_for can swallow a cancellation that arrives as the awaited
        # thing completes (fixed in 3.12): the task then runs on, e.g. a play that a test
        # tone should have cut airs to its end. asyncio.timeout does not.
        async with asyncio.timeout(ms / 1000):  # type: ignore[attr-defined]
            return await aw
    except asyncio.TimeoutError:
        raise OSError(errno.ETIMEDOUT, "timeout")


def tls_context(ca_der):
    """A client context that trusts only the CA given (DER bytes, what MicroPython reads)
    and checks the server's name: a server another CA signed, or one with another name, is
    refused. Python's default context would check nothing on MicroPython."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED  # type: ignore[attr-defined]  # (not in the stubs)
    ctx.load_verify_locations(cadata=ca_der)
    return ctx


async def open_stream(host, port, tls=None):
    """(reader, writer) to host:port, over TLS when tls (a tls_context) is given. On
    MicroPython the handshake happens at the first write: see tls_error."""
    if tls is None:
        return await asyncio.open_connection(host, port)
    try:
        return await asyncio.open_connection(host, port, ssl=tls, server_hostname=host)
    except ValueError as e:
        raise tls_error(e, tls)


def tls_error(e, tls):
    """What to raise for e: a certificate that does not check out becomes an OSError like
    any failed connect (MicroPython raises ValueError for it, which would end the session's
    loop for good); anything else stays as it is."""
    if tls is not None and isinstance(e, ValueError):
        return OSError(errno.ECONNABORTED, "tls: %s" % " ".join(str(e).split()))
    return e


def close_stream(writer):
    """Close an asyncio stream now, without awaiting.

    MicroPython's Stream.close() does nothing (the socket is closed in wait_closed()), so close
    the socket itself there. Cancel any task reading the stream first.
    """
    if writer is None:
        return
    try:
        writer.close()
    except Exception:
        pass
    sock = getattr(writer, "s", None)  # MicroPython Stream
    if sock is not None:
        try:
            sock.close()
        except Exception:
            pass


# Packet types (high nibble of the first byte)
CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82  # with the reserved flag bits 0010
SUBACK = 0x90
UNSUBACK = 0xB0
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

_DISCARD_CHUNK = 256  # bytes read at a time when throwing away an oversize PUBLISH
_LOST = -1  # ack result when the connection went away before the ack came


class MQTTError(Exception):
    """A broker refusal. code: CONNACK return code (1-5) or 0x80 for a refused SUBSCRIBE."""

    def __init__(self, msg, code=0):
        super().__init__(msg)
        self.code = code


class MQTTClient:
    def __init__(self, client_id, host, port, user=None, password=None, keepalive=30,
                 clean=False, will=None, max_packet=8192, tls=None):
        self.client_id = client_id
        self.tls = tls  # a tls_context, or None for plain TCP (loopback and tests only)
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive  # seconds; 0 disables pings
        self.clean = clean
        self.will = will  # (topic, payload, retain, qos) or None
        self.max_packet = max_packet
        self.on_message = None  # callback(topic: str, payload: bytes)
        self.on_oversize = None  # callback(topic: str, size: int)
        self.bytes_in = 0
        self.bytes_out = 0
        self.oversize_count = 0
        self.callback_errors = 0
        self._reader = None  # type: Any
        self._writer = None  # type: Any
        self._lock = asyncio.Lock()
        self._pkt = None  # type: Any  # the packet being built, written with one write()
        self._pid = 0
        self._acks = {}  # packet id -> [Event, result]
        self._run_task = None
        self._ping_sent = None  # ticks of the oldest unanswered PINGREQ
        self._dead = None  # why the link was dropped: "closed" (by us) or an error text

    # --- connection ---------------------------------------------------------------------------
    async def connect(self, timeout_ms=10000):
        """Open TCP and do CONNECT/CONNACK. Returns session_present (bool)."""
        self._dead = None
        try:
            return await wait_ms(self._connect(), timeout_ms)
        except BaseException as e:
            self._abort("connect failed")
            raise tls_error(e, self.tls)

    async def _connect(self):
        self._reader, self._writer = await open_stream(self.host, self.port, self.tls)
        cid = _utf8(self.client_id)
        flags = 0x02 if self.clean else 0
        size = 10 + 2 + len(cid)
        will = self.will
        wt = wp = None
        if will:
            wt = _utf8(will[0])
            wp = _utf8(will[1])
            size += 4 + len(wt) + len(wp)
            flags |= 0x04 | ((will[3] & 3) << 3) | (0x20 if will[2] else 0)
        user = pw = None
        if self.user is not None:
            user = _utf8(self.user)
            size += 2 + len(user)
            flags |= 0x80
            if self.password is not None:
                pw = _utf8(self.password)
                size += 2 + len(pw)
                flags |= 0x40
        w = self._writer
        self._write_fixed(CONNECT, size)
        vh = bytearray(b"\x00\x04MQTT\x04\x00\x00\x00")
        vh[7] = flags
        vh[8] = (self.keepalive >> 8) & 0xFF
        vh[9] = self.keepalive & 0xFF
        self._out(vh)
        self._out_str(cid)
        if will:
            self._out_str(wt)
            self._out_str(wp)
        if user is not None:
            self._out_str(user)
            if pw is not None:
                self._out_str(pw)
        self._send()
        await w.drain()
        b = await self._reader.readexactly(4)
        self.bytes_in += 4
        if b[0] != CONNACK or b[1] != 2:
            raise OSError(errno.EIO, "bad CONNACK")
        if b[3] != 0:
            raise MQTTError("connection refused, code %d" % b[3], b[3])
        return bool(b[2] & 1)

    async def disconnect(self):
        """Clean DISCONNECT: the broker discards the will."""
        w = self._writer
        if w is not None and self._dead is None:
            try:
                async with self._lock:
                    self._write_fixed(DISCONNECT, 0)
                    self._send()
                    self._dead = "closed"  # the broker's EOF that follows is expected
                    await wait_ms(w.drain(), 2000)
            except OSError:
                pass
        self.close()

    def close(self):
        """Drop the socket without DISCONNECT (the broker then publishes the will)."""
        self._abort("closed")

    @property
    def is_connected(self):
        return self._writer is not None and self._dead is None

    # --- publish / subscribe -------------------------------------------------------------------
    async def publish(self, topic, payload, qos=0, retain=False, timeout_ms=10000):
        """QoS 0: returns once written. QoS 1: waits for PUBACK (needs run() going);
        OSError on timeout or lost connection. No retransmission: the caller decides."""
        t = _utf8(topic)
        p = _utf8(payload)
        size = 2 + len(t) + len(p)
        pid = 0
        if qos:
            qos = 1
            size += 2
            pid = self._new_pid()
        entry = self._expect(pid) if qos else None
        try:
            async with self._lock:
                w = self._check()
                self._write_fixed(PUBLISH | (qos << 1) | (1 if retain else 0), size)
                self._out_str(t)
                if qos:
                    self._out_pid(pid)
                self._send(p)  # the payload goes out as is, not copied into the header buffer
                await w.drain()
            if entry is not None:
                await self._wait_ack(entry, timeout_ms)
        finally:
            if qos:
                self._acks.pop(pid, None)

    async def subscribe(self, topic, qos=1, timeout_ms=10000):
        """Subscribe and wait for SUBACK (needs run() going). Returns the granted QoS."""
        t = _utf8(topic)
        pid = self._new_pid()
        entry = self._expect(pid)
        try:
            async with self._lock:
                w = self._check()
                self._write_fixed(SUBSCRIBE, 2 + 2 + len(t) + 1)
                self._out_pid(pid)
                self._out_str(t)
                self._pkt.append(qos & 3)
                self._send()
                await w.drain()
            code = await self._wait_ack(entry, timeout_ms)
        finally:
            self._acks.pop(pid, None)
        if code == 0x80:
            raise MQTTError("subscribe refused: " + topic, 0x80)
        return code

    # --- the reader ----------------------------------------------------------------------------
    async def run(self):
        """Read packets until the connection ends. Returns None after close()/disconnect();
        raises OSError when the link is lost (EOF, socket error, keepalive timeout)."""
        if self._dead == "closed":
            return  # closed before the reader got going
        if self._reader is None or self._dead is not None:
            raise OSError(errno.ENOTCONN, "not connected")
        self._run_task = asyncio.current_task()
        pinger = asyncio.create_task(self._pinger()) if self.keepalive else None
        try:
            while True:
                await self._read_packet()
        except asyncio.CancelledError:
            if self._dead is None:
                raise  # cancelled from outside
        except EOFError:  # MicroPython readexactly; CPython IncompleteReadError
            self._dead = self._dead or "connection closed by broker"
        except OSError as e:
            self._dead = self._dead or ("socket error: %r" % e)
        except Exception as e:  # malformed packet (bad UTF-8 topic, short body, ...)
            self._dead = self._dead or ("protocol error: %r" % e)
        finally:
            self._run_task = None
            if pinger is not None:
                pinger.cancel()
            why = self._dead
            self._abort(why or "reader stopped")
        if why != "closed":
            raise OSError(errno.ECONNRESET, why)

    async def _read_packet(self):
        r = self._reader
        b = await r.readexactly(2)
        ptype = b[0] & 0xF0
        flags = b[0] & 0x0F
        n = b[1] & 0x7F
        shift = 7
        lb = b[1]
        count = 2
        while lb & 0x80:
            if shift > 21:
                raise OSError(errno.EIO, "bad remaining length")
            lb = (await r.readexactly(1))[0]
            n |= (lb & 0x7F) << shift
            shift += 7
            count += 1
        self.bytes_in += count + n
        if ptype == PUBLISH:
            await self._read_publish(flags, n)
        elif ptype == PUBACK or ptype == SUBACK or ptype == UNSUBACK:
            if n < 2:
                raise OSError(errno.EIO, "short ack")
            body = await r.readexactly(n)
            pid = (body[0] << 8) | body[1]
            entry = self._acks.get(pid)
            if entry is not None:
                entry[1] = body[2] if ptype == SUBACK and n > 2 else 0
                entry[0].set()
        elif ptype == PINGRESP:
            self._ping_sent = None
            if n:
                await self._discard(n)
        else:
            await self._discard(n)

    async def _read_publish(self, flags, n):
        r = self._reader
        qos = (flags >> 1) & 3
        b = await r.readexactly(2)
        tlen = (b[0] << 8) | b[1]
        left = n - 2
        if tlen > left or tlen > self.max_packet:
            await self._discard(left)
            self._oversize("", n)
            return
        topic = (await r.readexactly(tlen)).decode() if tlen else ""
        left -= tlen
        pid = 0
        if qos:
            b = await r.readexactly(2)
            pid = (b[0] << 8) | b[1]
            left -= 2
        if n > self.max_packet:
            await self._discard(left)
            self._oversize(topic, n)
        else:
            payload = await r.readexactly(left) if left > 0 else b""
            cb = self.on_message
            if cb is not None:
                try:
                    cb(topic, payload)
                except Exception as e:  # a handler bug must not take the link down
                    self.callback_errors += 1
                    print("mqtt: on_message error:", repr(e))
        if qos == 1:
            async with self._lock:
                w = self._check()
                self._write_fixed(PUBACK, 2)
                self._out_pid(pid)
                self._send()
                await w.drain()
        # QoS 2 is never granted (we subscribe with QoS <= 1), so it is not handled.

    async def _discard(self, n):
        r = self._reader
        while n > 0:
            chunk = await r.read(n if n < _DISCARD_CHUNK else _DISCARD_CHUNK)
            if not chunk:
                raise EOFError()
            n -= len(chunk)

    def _oversize(self, topic, size):
        self.oversize_count += 1
        cb = self.on_oversize
        if cb is not None:
            try:
                cb(topic, size)
            except Exception as e:
                self.callback_errors += 1
                print("mqtt: on_oversize error:", repr(e))

    async def _pinger(self):
        half = self.keepalive * 500
        limit = self.keepalive * 1000
        while self._dead is None:
            await sleep_ms(half)
            if self._dead is not None:
                return
            sent = self._ping_sent
            if sent is not None and ticks_diff(ticks_ms(), sent) >= limit:
                self._abort("keepalive timeout: no PINGRESP")
                return
            try:
                async with self._lock:
                    w = self._check()
                    self._write_fixed(PINGREQ, 0)
                    self._send()
                    await w.drain()
            except OSError as e:
                self._abort("ping failed: %r" % e)
                return
            if sent is None:
                self._ping_sent = ticks_ms()

    # --- helpers -------------------------------------------------------------------------------
    def _abort(self, why):
        """Mark the link dead, stop the reader, fail the ack waiters, close the socket."""
        if self._dead is None:
            self._dead = why
        t = self._run_task
        if t is not None and t is not asyncio.current_task():
            self._run_task = None
            t.cancel()
        for entry in self._acks.values():
            if entry[1] is None:
                entry[1] = _LOST
                entry[0].set()
        w = self._writer
        self._writer = None
        self._reader = None
        self._ping_sent = None
        close_stream(w)

    def _check(self):
        w = self._writer
        if w is None or self._dead is not None:
            raise OSError(errno.ENOTCONN, "not connected")
        return w

    def _new_pid(self):
        self._pid = self._pid + 1 if self._pid < 0xFFFF else 1
        return self._pid

    def _expect(self, pid):
        entry = [asyncio.Event(), None]
        self._acks[pid] = entry
        return entry

    async def _wait_ack(self, entry, timeout_ms):
        if entry[1] is None:
            await wait_ms(entry[0].wait(), timeout_ms)
        if entry[1] == _LOST:
            raise OSError(errno.ECONNRESET, "connection lost before ack")
        return entry[1]

    def _write_fixed(self, first, size):
        """Start a packet: fixed header with the remaining-length varint."""
        h = bytearray()
        h.append(first)
        while True:
            b = size & 0x7F
            size >>= 7
            if size:
                h.append(b | 0x80)
            else:
                h.append(b)
                break
        self._pkt = h

    def _out(self, data):
        self._pkt += data

    def _out_pid(self, pid):
        h = self._pkt
        h.append((pid >> 8) & 0xFF)
        h.append(pid & 0xFF)

    def _out_str(self, s):
        self._out_pid(len(s))
        self._pkt += s

    def _send(self, payload=None):
        """Write the packet built so far (and a payload after it) to the stream."""
        w = self._writer
        h = self._pkt
        self._pkt = None
        w.write(h)
        self.bytes_out += len(h)
        if payload:
            w.write(payload)
            self.bytes_out += len(payload)


def _utf8(s):
    if isinstance(s, str):
        return s.encode()
    return s
