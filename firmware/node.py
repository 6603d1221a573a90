# A loudspeaker node: checks signed commands, drives playback through the HAL, keeps its
# as-run records in flash until the headend acknowledges them, and reports health.
import asyncio
import json
import random

from firmware import http, protocol, wav
from firmware.mqtt import MQTTClient
from firmware.session import Session

FW_VERSION = "0.1.0"
CHUNK = 1024  # bytes of PCM per read: small enough for a 100 KB heap
AMP_PREROLL_MS = 300  # relay closes this long before audio so the first word is not clipped
AMP_POSTROLL_MS = 300
FETCH_LEAD_MS = 2000  # for a play with a start time: open the stream this long before it
ASRUN_MAX = 200  # as-run records kept while the headend is unreachable (about a week of items)
ASRUN_RESEND_MS = 30000

# Persisted files in the node's storage
F_SEQ = "seq.ctr"  # last accepted command sequence number: replay protection across reboots
F_STATE = "state.json"  # session counter, next as-run record id, volume
F_ASRUN = "asrun.json"  # as-run records not yet acknowledged by the headend


class Node:
    def __init__(self, board, config):
        self.board = board
        self.clock = board.clock
        self.id = config["id"]
        if not protocol.valid_node_id(self.id):
            raise ValueError("bad node id")
        self.config = config
        self.signer = protocol.Signer(protocol.node_key(config["key"]))
        self.media_prefixes = ["http://%s/" % h for h in config.get("media_hosts", [])]
        self.telemetry_ms = config.get("telemetry_s", 60) * 1000
        self.boot_ms = self.clock.time_ms()
        self.seq = board.storage.counter(F_SEQ)
        st = self._load_json(F_STATE, {})
        self.session_no = st.get("session", 0)
        # On a fresh (or wiped) flash, record ids start at a random point, so a reset node
        # cannot reuse ids the headend already stored (it would drop them as duplicates).
        self.next_rid = st.get("rid") or (random.getrandbits(30) << 20) + 1
        self.volume = st.get("volume", 70)
        self.pending = self._load_json(F_ASRUN, [])  # as-run records awaiting the headend's ack
        self.playing = None  # id of the command whose audio is playing
        self._play_task = None
        self.rejections = 0
        board.audio.set_volume(self.volume)
        self.session = Session(self._make_client, board.link, self._on_connected,
                               **config.get("session", {}))
        board.link.on_down(self._link_down)

    # --- persistence ------------------------------------------------------------------

    def _load_json(self, name, default):
        raw = self.board.storage.read(name)
        if not raw:
            return default
        try:
            return json.loads(raw)
        except ValueError:
            return default  # a torn file cannot happen (atomic writes), but never fail to boot

    def _save_state(self):
        st = {"session": self.session_no, "rid": self.next_rid, "volume": self.volume}
        self.board.storage.write(F_STATE, json.dumps(st).encode())

    def _save_pending(self):
        self.board.storage.write(F_ASRUN, json.dumps(self.pending).encode())

    # --- MQTT session -----------------------------------------------------------------

    def _make_client(self):
        # Every connection gets a new session number, carried in both birth and will, so the
        # headend can ignore a last-will that arrives after a newer session has started.
        self.session_no += 1
        self._save_state()
        b = self.config["broker"]
        will = protocol.state(self.id, False, self.session_no, self.clock.time_ms(), FW_VERSION)
        c = MQTTClient(self.id, b["host"], b["port"], user=self.id, password=b["password"],
                       keepalive=b.get("keepalive", 30), clean=False,
                       will=(self._t(protocol.STATE), protocol.encode(will), True, 1),
                       max_packet=protocol.MAX_PAYLOAD + 256)
        c.on_message = self._on_message
        c.on_oversize = self._on_oversize
        return c

    async def _on_connected(self, client):
        for leaf in (protocol.CMD, protocol.ASRUN_ACK, protocol.ECHO):
            await client.subscribe(self._t(leaf), 1)
        birth = protocol.state(self.id, True, self.session_no, self.clock.time_ms(), FW_VERSION)
        await client.publish(self._t(protocol.STATE), protocol.encode(birth), 1, True)
        self.board.led.set("on")
        await self._send_telemetry()
        for rec in self.pending:
            await self._publish(protocol.ASRUN, rec)

    def _link_down(self):
        self.board.led.set("blink")
        c = self.session.client
        if c:
            c.close()

    def _t(self, leaf):
        return protocol.topic(self.id, leaf)

    async def _publish(self, leaf, msg, qos=1):
        try:
            await self.session.publish(self._t(leaf), protocol.encode(msg), qos)
            return True
        except OSError:
            return False  # offline: acks are best effort, as-run records are resent

    # --- incoming ---------------------------------------------------------------------

    def _on_message(self, topic, payload):
        parts = protocol.split_topic(topic)
        if not parts or parts[0] != self.id:
            return
        leaf = parts[1]
        if leaf == protocol.CMD:
            self._on_command(payload)
        elif leaf == protocol.ASRUN_ACK:
            self._on_asrun_ack(payload)
        elif leaf == protocol.ECHO:
            # Transport diagnostic: echoed verbatim, unsigned, no side effects.
            asyncio.create_task(self._echo(payload))

    async def _echo(self, payload):
        try:
            await self.session.publish(self._t(protocol.ECHO_REPLY), payload, 1)
        except OSError:
            pass

    def _on_oversize(self, topic, size):
        self._reject(protocol.Rejected(protocol.R_OVERSIZED, None, "%d bytes" % size))

    def _reject(self, err):
        self.rejections += 1
        msg = protocol.ack(self.id, err.cmd_id, protocol.REJECTED, self.clock.time_ms(),
                           err.reason, err.detail)
        asyncio.create_task(self._publish(protocol.ACK, msg))

    def _on_command(self, payload):
        now = self.clock.time_ms()
        try:
            cmd = protocol.parse_command(payload, self.id, self.signer, self.seq.value, now)
            self._check_args(cmd)
        except protocol.Rejected as err:
            self._reject(err)
            return
        # Persist the sequence number before acting, so a replay after a reboot is refused.
        self.seq.set(cmd["seq"])
        asyncio.create_task(self._run_command(cmd))

    def _check_args(self, cmd):
        op, args = cmd["op"], cmd["args"]
        bad = None
        if op == "play":
            url = args.get("url")
            if not isinstance(url, str):
                bad = "url"
            elif not self._allowed_url(url):
                try:
                    host = http.parse_url(url)[0]
                except ValueError:
                    raise protocol.Rejected(protocol.R_BAD_ARGS, cmd["id"], "url")
                raise protocol.Rejected(protocol.R_HOST, cmd["id"], host)
            if not isinstance(args.get("title", ""), str):
                bad = "title"
            at = args.get("at")
            if at is not None and (not isinstance(at, int) or isinstance(at, bool)
                                   or not cmd["iat"] - protocol.CLOCK_SKEW_MS <= at < cmd["exp"]):
                bad = "at"
        elif op == "volume":
            level = args.get("level")
            if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 100:
                bad = "level"
        if bad:
            raise protocol.Rejected(protocol.R_BAD_ARGS, cmd["id"], bad)

    def _allowed_url(self, url):
        # "http://host:port/" exactly: no user-info or look-alike host can slip past a prefix
        # that ends in the port and a slash.
        for prefix in self.media_prefixes:
            if url.startswith(prefix):
                return True
        return False

    async def _run_command(self, cmd):
        op, cid = cmd["op"], cmd["id"]
        await self._ack(cid, protocol.ACCEPTED)
        if op == "play":
            await self._stop_playback()
            self._play_task = asyncio.create_task(self._play(cmd))
        elif op == "stop":
            stopped = await self._stop_playback()
            await self._ack(cid, protocol.DONE, extra={"stopped": stopped})
        elif op == "volume":
            self.volume = cmd["args"]["level"]
            self.board.audio.set_volume(self.volume)
            self._save_state()
            await self._ack(cid, protocol.DONE, extra={"volume": self.volume})
        elif op == "ping":
            await self._ack(cid, protocol.DONE, extra={"pong": self.clock.time_ms()})
        elif op == "report":
            await self._send_telemetry()
            await self._ack(cid, protocol.DONE)

    async def _ack(self, cid, status, reason=None, detail=None, extra=None):
        msg = protocol.ack(self.id, cid, status, self.clock.time_ms(), reason, detail, extra)
        await self._publish(protocol.ACK, msg)

    # --- playback ---------------------------------------------------------------------

    async def _stop_playback(self):
        t = self._play_task
        if t is None:
            return None
        stopped = self.playing
        t.cancel()
        try:
            await t
        except BaseException:  # noqa: B036 - CancelledError is a BaseException on CPython
            pass
        return stopped

    async def _play(self, cmd):
        args = cmd["args"]
        board = self.board
        self.playing = cmd["id"]
        start = end = None
        outcome, reason = protocol.AIRED, None
        resp = None
        at = args.get("at")  # a synchronised start: every village begins at the same instant
        try:
            if at is not None:
                wait = at - FETCH_LEAD_MS - AMP_PREROLL_MS - self.clock.time_ms()
                if wait > 0:
                    await self.clock.sleep_ms(wait)
            try:
                resp = await http.get(args["url"])
                if resp.status != 200:
                    raise OSError("HTTP %d" % resp.status)
                rate, bits, channels, size = await wav.read_header(resp)
            except (OSError, ValueError) as e:
                outcome, reason = protocol.OUTCOME_FAILED, "media: %s" % e
                return
            board.amp.on()
            board.led.set("play")
            preroll = AMP_PREROLL_MS
            if at is not None:
                preroll = max(preroll, at - self.clock.time_ms())
            await self.clock.sleep_ms(preroll)
            board.audio.open(rate, bits, channels, cmd["id"])
            start = self.clock.time_ms()
            await self._ack(cmd["id"], protocol.STARTED, extra={"start": start})
            left = size
            try:
                while left > 0:
                    chunk = await resp.read(min(CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    await board.audio.write(chunk)
                await board.audio.drain()
            except OSError as e:
                reason = "stream: %s" % e
            end = self.clock.time_ms()
            if left > 0:
                outcome = protocol.PARTIAL
                reason = reason or "stream ended early"
        except asyncio.CancelledError:
            if start is not None:
                end = self.clock.time_ms()
                outcome, reason = protocol.PARTIAL, "stopped"
            else:
                outcome, reason = protocol.OUTCOME_FAILED, "stopped before start"
        finally:
            if resp:
                resp.close()
            board.audio.close()
            if board.amp.is_on():
                await self._postroll()
            board.led.set("on" if self.session.connected else "blink")
            self.playing = None
            self._play_task = None
            self._record(cmd, start, end, outcome, reason)
            status = protocol.DONE if outcome == protocol.AIRED else protocol.FAILED
            asyncio.create_task(self._ack(cmd["id"], status, reason,
                                          extra={"start": start, "end": end, "outcome": outcome}))

    async def _postroll(self):
        try:
            await self.clock.sleep_ms(AMP_POSTROLL_MS)
        finally:
            self.board.amp.off()

    # --- as-run records ---------------------------------------------------------------

    def _record(self, cmd, start, end, outcome, reason):
        rec = {"v": protocol.VERSION, "t": "asrun", "node": self.id, "rid": self.next_rid,
               "cmd": cmd["id"], "trigger": "command", "media": cmd["args"]["url"],
               "title": cmd["args"].get("title", ""), "planned": cmd["args"].get("at"),
               "start": start, "end": end,
               "outcome": outcome, "reason": reason}
        self.next_rid += 1
        self._save_state()
        self.pending.append(rec)
        if len(self.pending) > ASRUN_MAX:
            self.pending.pop(0)  # the oldest goes; the headend sees the gap in record ids
        self._save_pending()
        asyncio.create_task(self._publish(protocol.ASRUN, rec))

    def _on_asrun_ack(self, payload):
        msg = protocol.decode(payload)
        if not msg or not isinstance(msg.get("rids"), list):
            return
        acked = msg["rids"]
        keep = [r for r in self.pending if r["rid"] not in acked]
        if len(keep) != len(self.pending):
            self.pending = keep
            self._save_pending()

    async def _resend_asrun(self):
        while True:
            await self.clock.sleep_ms(ASRUN_RESEND_MS)
            if self.session.connected:
                for rec in list(self.pending):
                    await self._publish(protocol.ASRUN, rec)

    # --- health -----------------------------------------------------------------------

    def telemetry(self):
        link = self.board.link
        return {"v": protocol.VERSION, "t": "telemetry", "node": self.id,
                "at": self.clock.time_ms(), "fw": FW_VERSION, "board": self.board.name,
                "uptime_s": (self.clock.time_ms() - self.boot_ms) // 1000,
                "heap_free": self.board.heap_free(), "link": link.kind,
                "signal_dbm": link.signal_dbm(), "volume": self.volume,
                "amp": self.board.amp.is_on(), "playing": self.playing,
                "seq": self.seq.value, "session": self.session_no,
                "asrun_pending": len(self.pending), "rejections": self.rejections}

    async def _send_telemetry(self):
        await self._publish(protocol.TELEMETRY, self.telemetry(), 0)

    async def _telemetry_loop(self):
        while True:
            await self.clock.sleep_ms(self.telemetry_ms)
            if self.session.connected:
                await self._send_telemetry()

    async def run(self):
        self.board.led.set("blink")
        asyncio.create_task(self._telemetry_loop())
        asyncio.create_task(self._resend_asrun())
        await self.session.run()
