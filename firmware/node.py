# A loudspeaker node: checks signed commands, follows its signed plan on its own (firmware/plan.py
# decides, firmware/player.py airs), drives playback through the HAL, keeps its as-run records in
# flash until the headend acknowledges them (firmware/asrun.py), and reports health
# (firmware/health.py). The test tone is firmware/tone.py.
import asyncio
import json
import random
from binascii import a2b_base64

from firmware import asrun, health, http, mqtt, ota as otalib, plan as planlib, protocol, tone, wav
from firmware.asrun import F_ASRUN
from firmware.cache import CacheFull, MediaCache
from firmware.health import AMP_MIN_MA, FULL_EVERY_MS, TELEMETRY_S  # noqa: F401 (the bench's)
from firmware.mqtt import MQTTClient, sleep_ms, ticks_diff, ticks_ms
from firmware.player import AMP_PREROLL_MS, LEAD_MS, RELAY_TIMEOUT_MS, Airing, Player
from firmware.session import Session

FW_VERSION = "0.1.0"
CHUNK = 1024  # bytes of PCM per read: small enough for a 100 KB heap
AMP_POSTROLL_MS = 300
FETCH_LEAD_MS = 2000  # for a play with a start time: open the stream this long before it

# Persisted files in the node's storage
F_SEQ = "seq.ctr"  # last accepted command sequence number: replay protection across reboots
F_STATE = "state.json"  # session counter, next as-run record id, volume
F_PLAN = "plan.json"  # the plan in force (after the lock-window merge), written atomically
F_DONE = "done.json"  # ids of plan items already dealt with (aired, missed, stopped)

CACHE_BYTES = 4 * 1024 * 1024  # default media cache size (config "cache_bytes")
PREFETCH_RETRY_MS = 5000  # real ms; doubles per failed round up to PREFETCH_RETRY_MAX_MS
PREFETCH_RETRY_MAX_MS = 300000
CLOSE_OUT_DELAY_MS = 100  # real ms: as-run and done writes wait for the next item's start
NAP_MAX_MS = 60000  # the plan runner looks again at least this often (simulated ms)
ITEM_LEAD_MS = LEAD_MS + AMP_PREROLL_MS  # an item's task starts this long before its "s"
AMP_SENSE_MS = 100  # after switching by hand, the current is read this much later
REBOOT_DELAY_MS = 200  # real ms between the reboot's ack and the reset, so the ack leaves
# Heartbeats (firmware/device.py feeds the watchdog only while every loop beats in time): a
# loop may be silent for its own period plus this (config "device": {"beat_slack_ms"}).
BEAT_SLACK_MS = 30000


class BadHash(Exception):
    """A command's media is not the bytes its "sha" names."""


async def _cancel(task):
    """Cancel a task and wait until it has finished its clean-up."""
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: B036 - CancelledError is a BaseException on CPython
        pass


class Node:
    def __init__(self, board, config):
        self.board = board
        self.clock = board.clock
        self.id = config["id"]
        if not protocol.valid_node_id(self.id):
            raise ValueError("bad node id")
        self.config = config
        self.signer = protocol.Signer(protocol.node_key(config["key"]))
        # "host:port" (http) or "https://host:port"; https is checked against the pinned CA.
        self.media_prefixes = [(h if "://" in h else "http://" + h) + "/"
                               for h in config.get("media_hosts", [])]
        self.tls = None
        ca = config["broker"].get("ca")
        if ca:  # DER, base64 in the config
            self.tls = http.TLS = mqtt.tls_context(a2b_base64(ca))
        self.telemetry_ms = config.get("telemetry_s", TELEMETRY_S) * 1000
        self._told = None  # the last full telemetry's settled fields (health.settled)
        self._told_at = 0  # and when it went (ticks, real ms)
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
        self._play_stop = None  # why the command's playback was stopped
        self.emergency = None  # id of the emergency command on air
        self.rejections = 0
        # Plan following
        self.plan = self._load_json(F_PLAN, None)
        # Quiet hours until a plan brings them: the commune's, as provisioning wrote them
        q = config.get("quiet")
        q = q if protocol.valid_quiet(q) else planlib.DEFAULT_QUIET
        self.quiet = self.plan["quiet"] if self.plan else list(q)
        self.done = self._load_json(F_DONE, {})
        self.cache = MediaCache(board.storage, config.get("cache_bytes", CACHE_BYTES))
        # How early an item's task starts (stream opened, amplifier on) before its "s". On the
        # board clock; a simulator running its clock faster gives more, for real-time network.
        self.item_lead_ms = config.get("item_lead_ms", ITEM_LEAD_MS)
        self.cache_error = None
        self.player = Player(board, self.cache, self._allowed_url,
                             config.get("relay_timeout_ms", RELAY_TIMEOUT_MS))
        self.closing = 0  # items whose as-run record is still to be written
        self.on_air = None  # id of the plan item on air
        self._item_task = None
        self._item_stop = None  # why the item was stopped; "pre-empted ..." means it resumes
        self._wake = asyncio.Event()
        self._prefetch_task = None
        # Health
        self.amp_min_ma = config.get("amp_min_ma", AMP_MIN_MA)
        self.amp_fault = False  # the last verdict while the amplifier was on
        self.rebooting = False
        self._tasks = []  # long-lived tasks, cancelled by halt()
        # Device life (firmware/device.py sets these): safe mode, heartbeats, OTA
        ota = board.ota
        self.fw = (ota.version() if ota is not None else None) or FW_VERSION
        self.safe_mode = None  # why the node started in safe mode (no plan, no playback)
        self.reset_why = None  # what the watchdog saw before the last reset, if it bit
        self.beats = {}  # loop name -> (ticks_ms of its last beat, ms it may stay silent)
        self.beat_slack_ms = config.get("device", {}).get("beat_slack_ms", BEAT_SLACK_MS)
        self.reported = False  # birth and telemetry out on the current connection
        self.on_reboot = None  # called just before an intended reset
        self.installing = False  # an OTA image is being downloaded
        self.local_tone = False  # the local button's tone is starting or playing
        self.ota_last = otalib.last(board.storage)
        board.on_test_button(self._test_button)
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

    # Parts in their own modules, as methods too under the names the board, firmware/device.py,
    # hw-sim and the tests call (a class attribute: no heap per node, no extra call).
    _test_button = tone.button_pressed
    _store = asrun.store
    _save_pending = asrun.save
    telemetry = health.telemetry
    _send_telemetry = health.send_telemetry
    _health_loop = health.health_loop

    # --- MQTT session -----------------------------------------------------------------

    def _make_client(self):
        # Every connection gets a new session number, carried in both birth and will, so the
        # headend can ignore a last-will that arrives after a newer session has started.
        self.session_no += 1
        self._save_state()
        b = self.config["broker"]
        will = protocol.state(self.id, False, self.session_no, self.clock.time_ms(), self.fw)
        c = MQTTClient(self.id, b["host"], b["port"], user=self.id, password=b["password"],
                       keepalive=b.get("keepalive", 30), clean=False,
                       will=(self._t(protocol.STATE), protocol.encode(will), True, 1),
                       max_packet=protocol.MAX_PLAN_PAYLOAD + 256, tls=self.tls)
        c.on_message = self._on_message
        c.on_oversize = self._on_oversize
        return c

    async def _on_connected(self, client):
        self.reported = False
        for leaf in (protocol.CMD, protocol.ASRUN_ACK, protocol.ECHO, protocol.PLAN):
            await client.subscribe(self._t(leaf), 1)
        birth = protocol.state(self.id, True, self.session_no, self.clock.time_ms(), self.fw)
        await client.publish(self._t(protocol.STATE), protocol.encode(birth), 1, True)
        self.board.led.set("on")
        self.reported = await health.send_telemetry(self)
        for rec in self.pending:
            await asrun.send(self, rec)

    def _link_down(self):
        self.board.led.set("blink")
        c = self.session.client
        if c:
            c.close()

    def _t(self, leaf):
        return protocol.topic(self.id, leaf)

    async def _publish(self, leaf, msg, qos=1):
        """msg: a dict (JSON) or the wire bytes of a signed report."""
        try:
            payload = msg if isinstance(msg, bytes) else protocol.encode(msg)
            await self.session.publish(self._t(leaf), payload, qos)
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
            asrun.on_ack(self, payload)
        elif leaf == protocol.PLAN:
            self._on_plan(payload)
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
        asyncio.create_task(self._publish(protocol.ACK, protocol.sign_report(self.signer, msg)))

    def _on_command(self, payload):
        now = self.clock.time_ms()
        try:
            cmd = protocol.parse_command(payload, self.id, self.signer, self.seq.value, now)
            self._check_args(cmd)
        except protocol.Rejected as err:
            self._reject(err)
            return
        # Persist the sequence number before acting, so a replay after a reboot is refused
        # (also for a command refused below for the node's state: it must not air later).
        self.seq.set(cmd["seq"])
        op = cmd["op"]
        if op in ("play", "test_tone", "emergency", "amp") and self.safe_mode:
            self._reject(protocol.Rejected(protocol.R_SAFE_MODE, cmd["id"], self.safe_mode))
            return
        if op in ("play", "test_tone", "reboot", "ota") and self.emergency is not None:
            self._reject(protocol.Rejected(protocol.R_BUSY, cmd["id"], self.emergency))
            return
        if op in ("play", "test_tone"):
            # (a test tone at night wakes the village just as well)
            at = cmd["args"].get("at") or now
            if planlib.in_quiet(self.quiet, max(at, now)):
                self._reject(protocol.Rejected(protocol.R_QUIET, cmd["id"]))
                return
        if op == "amp" and not cmd["args"]["on"]:
            busy = self.emergency or self.playing or self.on_air
            if busy:
                self._reject(protocol.Rejected(protocol.R_ON_AIR, cmd["id"], busy))
                return
        asyncio.create_task(self._run_command(cmd))

    def _check_args(self, cmd):
        op, args = cmd["op"], cmd["args"]
        bad = None
        if op == "play" or op == "emergency":
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
            # The media's SHA-256 and size: the node plays only bytes that hash to it.
            if "sha" in args or "size" in args:
                why = protocol.media_error(args)
                if why:
                    bad = why
            at = args.get("at")
            if at is not None and op == "emergency":
                bad = "at"
            elif at is not None and (not isinstance(at, int) or isinstance(at, bool)
                                   or not cmd["iat"] - protocol.CLOCK_SKEW_MS <= at < cmd["exp"]):
                bad = "at"
        elif op == "ota" and isinstance(args.get("url"), str) \
                and not self._allowed_url(args["url"]):
            try:
                host = http.parse_url(args["url"])[0]
            except ValueError:
                raise protocol.Rejected(protocol.R_BAD_ARGS, cmd["id"], "url")
            raise protocol.Rejected(protocol.R_HOST, cmd["id"], host)
        elif op == "volume":
            level = args.get("level")
            if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 100:
                bad = "level"
        else:
            bad = protocol.args_error(op, args)
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
        if op == "play" or op == "test_tone":
            if self.emergency is not None:  # an emergency arrived meanwhile
                await self._ack(cid, protocol.FAILED, protocol.R_BUSY)
                return
            await self._stop_item("pre-empted by command")
            await self._stop_playback("pre-empted by command")
            run = self._play(cmd) if op == "play" else tone.play(self, cmd)
            self._play_task = asyncio.create_task(run)
        elif op == "emergency":
            # Always allowed (also in quiet hours): stops whatever is on air, at once.
            self.emergency = cid
            await self._stop_item("pre-empted by emergency")
            await self._stop_playback("pre-empted by emergency")
            self.emergency = cid
            self._play_task = asyncio.create_task(self._play(cmd, "emergency"))
        elif op == "stop":
            stopped = await self._stop_playback("stopped")
            item = await self._stop_item("stopped")
            await self._ack(cid, protocol.DONE, extra={"stopped": stopped or item})
        elif op == "volume":
            self.volume = cmd["args"]["level"]
            self.board.audio.set_volume(self.volume)
            self._save_state()
            await self._ack(cid, protocol.DONE, extra={"volume": self.volume})
        elif op == "ping":
            await self._ack(cid, protocol.DONE, extra={"pong": self.clock.time_ms()})
        elif op == "report":
            await self._publish(protocol.TELEMETRY, health.full_report(self), 0)
            await self._ack(cid, protocol.DONE)
        elif op == "amp":
            # By hand (a technician checking the relay). On, it stays on until switched off
            # here or until the next broadcast's post-roll.
            amp = self.board.amp
            if cmd["args"]["on"]:
                amp.on()
                await self.clock.sleep_ms(AMP_SENSE_MS)  # let the current settle
            else:
                amp.off()
            health.check_amp(self)
            await self._ack(cid, protocol.DONE, extra={"amp": amp.is_on(),
                                                       "amp_ma": amp.current_ma(),
                                                       "amp_fault": self.amp_fault})
        elif op == "reboot":
            await self._ack(cid, protocol.DONE)
            asyncio.create_task(self._reboot())
        elif op == "ota":
            await self._ota(cmd)

    async def _ota(self, cmd):
        """op ota: install the image in the inactive slot (firmware/ota.py), ack, reboot into
        it on trial. Any refusal leaves the running image as it is."""
        args, cid = cmd["args"], cmd["id"]
        if self.installing:
            await self._ack(cid, protocol.FAILED, protocol.R_OTA_BUSY, "installing")
            return
        self.installing = True
        try:
            await otalib.install(self.board, self.signer, args, self.fw)
        except otalib.Refused as e:
            self.ota_last = otalib.record(self.board.storage, args["version"], self.fw,
                                          otalib.FAILED, e.reason, e.detail)
            await self._ack(cid, protocol.FAILED, e.reason, e.detail)
            return
        finally:
            self.installing = False
        self.ota_last = otalib.last(self.board.storage)
        await self._ack(cid, protocol.DONE, extra={"version": args["version"], "reboot": True})
        asyncio.create_task(self._reboot())

    async def _ack(self, cid, status, reason=None, detail=None, extra=None):
        msg = protocol.ack(self.id, cid, status, self.clock.time_ms(), reason, detail, extra)
        await self._publish(protocol.ACK, protocol.sign_report(self.signer, msg))

    # --- playback ---------------------------------------------------------------------

    async def _stop_playback(self, why="stopped"):
        t = self._play_task
        if t is None:
            return None
        stopped = self.playing
        self._play_stop = why
        await _cancel(t)
        return stopped

    def _cut_short(self, start):
        """(end, outcome, reason) of a playback stopped by a command, emergency or reboot."""
        why = self._play_stop or "stopped"
        if start is not None:
            return self.clock.time_ms(), protocol.PARTIAL, why
        return None, protocol.OUTCOME_FAILED, why + " before start"

    async def _play(self, cmd, trigger="command"):
        args = cmd["args"]
        board = self.board
        self.playing = cmd["id"]
        start = end = None
        outcome, reason = protocol.AIRED, None
        resp = None
        at = args.get("at")  # a synchronised start: every village begins at the same instant
        amp_since = None
        try:
            if trigger == "emergency":
                # Every second counts: the amplifier's pre-roll runs during the download.
                if not board.amp.is_on():
                    board.amp.on()
                    amp_since = self.clock.time_ms()
                board.led.set("play")
            if at is not None:
                wait = at - FETCH_LEAD_MS - AMP_PREROLL_MS - self.clock.time_ms()
                if wait > 0:
                    await self.clock.sleep_ms(wait)
            try:
                if "sha" in args:
                    resp = await self._cached(args, trigger)
                else:
                    resp = await http.get(args["url"])
                    if resp.status != 200:
                        raise OSError("HTTP %d" % resp.status)
                rate, bits, channels, size = await wav.read_header(resp)
            except BadHash:
                outcome, reason = protocol.OUTCOME_FAILED, protocol.R_BAD_HASH
                return
            except CacheFull as e:
                outcome, reason = protocol.OUTCOME_FAILED, "cache_full: %s" % e
                return
            except (OSError, ValueError) as e:
                outcome, reason = protocol.OUTCOME_FAILED, "media: %s" % e
                return
            preroll = AMP_PREROLL_MS
            if board.amp.is_on():
                # Already on (an emergency, or handed over from what it pre-empted).
                preroll = 0
                if amp_since is not None:
                    preroll = amp_since + AMP_PREROLL_MS - self.clock.time_ms()
            board.amp.on()
            board.led.set("play")
            if at is not None:
                preroll = max(preroll, at - self.clock.time_ms())
            if preroll > 0:
                await self.clock.sleep_ms(preroll)
            board.audio.open(rate, bits, channels, cmd["id"])
            start = self.clock.time_ms()
            health.check_amp(self)
            # A silent amplifier: started, but the village hears nothing (the page says so).
            await self._ack(cmd["id"], protocol.STARTED,
                            protocol.R_AMP_FAULT if self.amp_fault else None,
                            extra={"start": start})
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
            end, outcome, reason = self._cut_short(start)
        finally:
            if resp:
                resp.close()
            await self._playback_ended(cmd)
            outcome, reason = asrun.heard(self, outcome, reason)
            asrun.record_command(self, cmd, start, end, outcome, reason, trigger)
            self._final_ack(cmd, start, end, outcome, reason)

    async def _cached(self, args, trigger):
        """The command's media from the cache, downloaded into it first if need be: only a
        file whose size and SHA-256 are the command's is played (an emergency whose media is
        already cached starts at once). An emergency may evict anything; a play keeps what
        the plan needs. BadHash: the bytes are not the command's media."""
        sha = args["sha"]
        if not self.cache.has(sha):
            keep = {}
            if trigger != "emergency" and self.plan:
                for url, s, size in planlib.media_needed(self.plan, self.clock.time_ms()):
                    keep[s] = 1
            try:
                await self.cache.fetch(args["url"], sha, args["size"], keep)
            except ValueError as e:  # wrong size or hash: nothing was kept
                raise BadHash(str(e))
        f = self.cache.open(sha)
        if f is None:
            raise OSError("media not cached")
        return wav.FileStream(f)

    async def _playback_ended(self, cmd):
        """Common end of a command's playback: audio closed, post-roll (unless handed over)."""
        board = self.board
        board.audio.close()
        if board.amp.is_on() and not self._handover(self._play_stop):
            await self._postroll()
        if not board.amp.is_on():
            board.led.set("on" if self.session.connected else "blink")
        self.playing = None
        self._play_task = None
        self._play_stop = None
        if self.emergency == cmd["id"]:
            self.emergency = None

    def _final_ack(self, cmd, start, end, outcome, reason):
        status = protocol.DONE if outcome == protocol.AIRED else protocol.FAILED
        asyncio.create_task(self._ack(cmd["id"], status, reason,
                                      extra={"start": start, "end": end, "outcome": outcome}))
        self._wake.set()  # the plan resumes

    async def _postroll(self):
        try:
            await self.clock.sleep_ms(AMP_POSTROLL_MS)
        finally:
            self.board.amp.off()

    # --- the plan ---------------------------------------------------------------------

    def _on_plan(self, payload):
        if self.safe_mode:
            return  # no plan runner in safe mode: the retained plan is taken after it
        now = self.clock.time_ms()
        cur = self.plan["ver"] if self.plan else 0
        try:
            new = protocol.parse_plan(payload, self.id, self.signer, cur, now)
        except protocol.Rejected as err:
            if err.reason == protocol.R_REPLAY and err.cmd_id == protocol.plan_ack_id(cur):
                return  # the retained plan again, on every (re)connect: nothing to say
            self._reject(err)
            return
        self.accept_plan(new, now)
        asyncio.create_task(self._ack(protocol.plan_ack_id(new["ver"]), protocol.ACCEPTED,
                                      extra={"items": len(self.plan["items"])}))

    def accept_plan(self, new, now):
        """Take a checked plan: merge under the lock window, persist, wake the runner."""
        old = self.plan["items"] if self.plan else None
        items = planlib.merge(old, new["items"], now, self.on_air)
        plan = {}
        for k in new:
            if k != "items" and k != "sig":
                plan[k] = new[k]
        plan["items"] = items
        done = {}
        for it in items:
            if it["id"] in self.done or (old is None and it["e"] <= now):
                done[it["id"]] = 1  # a first plan's past items were not ours to air
        self.board.storage.write(F_PLAN, json.dumps(plan).encode())
        self.plan = plan
        self.quiet = plan["quiet"]
        self.done = done
        self._save_done()
        self._restart_prefetch()
        self._wake.set()

    def _save_done(self):
        self.board.storage.write(F_DONE, json.dumps(self.done).encode())

    def _missed_while_off(self):
        """Items of the stored plan that ended while the node was off (optional diary help)."""
        if not self.plan:
            return
        now = self.clock.time_ms()
        changed = False
        for it in self.plan["items"]:
            if it["e"] <= now and it["id"] not in self.done:
                a = Airing()
                a.outcome, a.reason = protocol.MISSED, "node was off"
                asrun.record_item(self, it, a)
                self.done[it["id"]] = 1
                changed = True
        if changed:
            self._save_done()

    # --- media prefetch ---------------------------------------------------------------

    def _restart_prefetch(self):
        t = self._prefetch_task
        if t is not None:
            t.cancel()
        self._prefetch_task = asyncio.create_task(self._prefetch()) if self.plan else None

    async def _prefetch(self):
        """Fetch the media the plan needs (fallback first, then by start time), retrying
        with backoff until everything is cached; runs again for every new plan."""
        delay = PREFETCH_RETRY_MS
        while self.plan:
            need = planlib.media_needed(self.plan, self.clock.time_ms())
            keep = {}
            for url, sha, size in need:
                keep[sha] = 1
            failed = 0
            for url, sha, size in need:
                if self.cache.has(sha):
                    continue
                try:
                    if not self._allowed_url(url):
                        raise OSError("host not allowed")
                    await self.cache.fetch(url, sha, size, keep)
                    self.cache_error = None
                except CacheFull as e:
                    failed += 1
                    self.cache_error = "cache_full: %s" % e
                except (OSError, ValueError) as e:
                    failed += 1
                    self.cache_error = "%s: %s" % (url, e)
            if not failed:
                break
            await sleep_ms(delay)  # a network retry: real time
            delay = min(delay * 2, PREFETCH_RETRY_MAX_MS)
        self._prefetch_task = None

    # --- the plan runner ----------------------------------------------------------------

    async def _run_plan(self):
        while True:
            self.beat("plan", NAP_MAX_MS)
            try:
                await self._plan_step()
            except Exception as e:  # a bug must not stop the node from following its plan
                print("plan runner:", repr(e))
                await self._nap(1000)

    async def _plan_step(self):
        """Reconcile once: start the item that should be on air, or sleep until the next."""
        if self.rebooting:
            await self._nap(NAP_MAX_MS)  # what was on air resumes after the reboot
            return
        if self._item_task is not None and self.emergency is None and self.plan:
            # Back to back: open the next relay's stream while this item still plays, so
            # the handover does not wait for a connection.
            now = self.clock.time_ms()
            nxt = None
            for it in self.plan["items"]:  # the next item after the one on air
                if it["s"] > now and it["id"] != self.on_air and it["id"] not in self.done:
                    nxt = it
                    break
            if nxt is not None:
                ahead = nxt["s"] - self.item_lead_ms - now
                if ahead <= 0 and "src" in nxt:
                    self.player.preopen(nxt)
                elif ahead > 0:
                    await self._nap(min(ahead, NAP_MAX_MS))
                    return
        if self._item_task is not None or self.emergency is not None:
            await self._nap(NAP_MAX_MS)  # woken when it ends
            return
        now = self.clock.time_ms()
        items = self.plan["items"] if self.plan else []
        target = None
        if self._play_task is None:
            target = planlib.current(items, now, self.done)  # joined late: time-anchored
        nxt = planlib.upcoming(items, now, self.done)
        if target is None and nxt is not None and nxt["s"] - self.item_lead_ms <= now:
            target = nxt  # a hard start: it stops a command that is playing at its "s"
        if target is None:
            wait = NAP_MAX_MS
            if nxt is not None:
                wait = min(wait, nxt["s"] - self.item_lead_ms - now)
            await self._nap(max(wait, 1))
            return
        self.on_air = target["id"]
        self._item_stop = None
        self._item_task = asyncio.create_task(self._air_item(target))

    async def _nap(self, ms):
        """Sleep ms on the board clock, or less when woken (plan change, an item, a command
        or an emergency ends)."""
        alarm = asyncio.create_task(self._alarm(ms))
        try:
            await self._wake.wait()
        finally:
            self._wake.clear()
            alarm.cancel()

    async def _alarm(self, ms):
        await self.clock.sleep_ms(ms)
        self._wake.set()

    async def _stop_item(self, why):
        """Stop the plan item on air. Pre-empted ('pre-empted ...') it resumes afterwards,
        time-anchored; stopped ('stopped') it is done. Returns the item id or None."""
        t = self._item_task
        if t is None:
            return None
        stopped = self.on_air
        self._item_stop = why
        await _cancel(t)
        return stopped

    async def _before_audio(self):
        # A plan item starting while a command plays stops the command (hard start).
        if self._play_task is not None and self.emergency is None:
            await self._stop_playback("pre-empted by plan item")
            self.board.amp.on()
        health.check_amp(self)

    @staticmethod
    def _handover(why):
        """Pre-empted playback leaves the amplifier on for what pre-empted it (no gap)."""
        return bool(why) and why.startswith("pre-empted")

    async def _air_item(self, item):
        board = self.board
        airing = Airing()
        done = True
        try:
            start_at = max(item["s"], self.clock.time_ms())
            w = planlib.window(item, self.quiet, start_at)
            if w is None:
                airing.outcome, airing.reason = protocol.MISSED, protocol.R_QUIET
                return
            until = w[1]
            if "src" in item:
                await self.player.relay(item, start_at, until, airing, self._before_audio,
                                        self.plan.get("fallback") if self.plan else None)
            else:
                await self.player.recorded(item, start_at, until, airing, self._before_audio)
            if w[2] and airing.outcome == protocol.AIRED:
                airing.outcome, airing.reason = protocol.PARTIAL, protocol.R_QUIET
        except asyncio.CancelledError:
            why = self._item_stop or "stopped"
            airing.finish(self.clock.time_ms())
            if airing.start is not None:
                airing.outcome, airing.reason = protocol.PARTIAL, why
            else:
                airing.outcome, airing.reason = protocol.OUTCOME_FAILED, why + " before start"
            done = not why.startswith("pre-empted")
            if airing.src is None:
                for name in ("primary", "backup", "fallback"):
                    if airing.aired.get(name):
                        airing.src = name
                        break
        except Exception as e:  # never leave the amplifier on over a bug
            airing.finish(self.clock.time_ms())
            airing.outcome = protocol.PARTIAL if airing.start else protocol.OUTCOME_FAILED
            airing.reason = "error: %r" % e
        finally:
            board.audio.close()
            if board.amp.is_on() and not self._handover(self._item_stop) \
                    and not self._next_item_within(AMP_POSTROLL_MS + AMP_PREROLL_MS):
                await self._postroll()  # (back to back, the amplifier stays on instead)
            if not board.amp.is_on():
                board.led.set("on" if self.session.connected else "blink")
            if done:
                self.done[item["id"]] = 1
            self.on_air = None
            self._item_task = None
            self._wake.set()
            # Flash writes are slow (littlefs on an ESP32): the next item starts first.
            self.closing += 1
            asyncio.create_task(self._close_out(item, airing, done))

    def _next_item_within(self, ms):
        if not self.plan:
            return False
        nxt = planlib.upcoming(self.plan["items"], self.clock.time_ms() - 1, self.done)
        return nxt is not None and nxt["s"] - self.clock.time_ms() <= ms

    async def _close_out(self, item, airing, done):
        try:
            await sleep_ms(CLOSE_OUT_DELAY_MS)  # real time: the next item's start path
            if done:
                self._save_done()
            if done or airing.start is not None:
                asrun.record_item(self, item, airing)
        finally:
            self.closing -= 1

    # --- heartbeats (the watchdog, firmware/device.py) -------------------------------------

    def beat(self, name, period_ms):
        """Loop name is alive; it beats again within period_ms (+ beat_slack_ms), real time."""
        self.beats[name] = (ticks_ms(), period_ms + self.beat_slack_ms)

    def silent_loop(self):
        """The first long-lived loop that missed its heartbeat, or None."""
        now = ticks_ms()
        for name in self.beats:
            t, within = self.beats[name]
            if ticks_diff(now, t) > within:
                return name
        return None

    def healthy(self):
        """Connected, birth and telemetry out, every loop beating, the plan runner among them
        (so never in safe mode): what a new image must reach to be kept."""
        return (self.session.connected and self.reported and "plan" in self.beats
                and self.silent_loop() is None)

    # --- reboot -------------------------------------------------------------------------

    async def _reboot(self):
        """op reboot (its ack is already out): stop what airs with a clean record (a plan
        item resumes after the reboot, time-anchored), flush state, wait so the ack and the
        records leave, reset."""
        self.rebooting = True
        await self._stop_playback("stopped by reboot")
        await self._stop_item("pre-empted by reboot")
        if self.board.amp.is_on():
            await self._postroll()
        for _ in range(100):  # the item's as-run record is written shortly after it ends
            if not self.closing:
                break
            await sleep_ms(20)
        self._save_state()
        asrun.save(self)
        self._save_done()
        await sleep_ms(REBOOT_DELAY_MS)  # real time: the network gets the ack out first
        if self.on_reboot is not None:
            self.on_reboot()
        self.board.reboot()

    def halt(self):
        """Stop every task at once, as a power cut does (the simulator's in-place reboot;
        cancel the task running run() as well)."""
        tasks, self._tasks = self._tasks, []
        tasks.extend((self._item_task, self._play_task, self._prefetch_task))
        for t in tasks:
            if t is not None:
                t.cancel()
        self.player.drop_preopened()
        c = self.session.client
        if c:
            c.close()

    def start_plan(self):
        """Start following the stored plan (the runner and the media prefetch)."""
        self._missed_while_off()
        self._tasks.append(asyncio.create_task(self._run_plan()))
        self._restart_prefetch()

    async def run(self):
        self.board.led.set("blink")
        if not self.safe_mode:  # safe mode: network, telemetry and OTA only
            self.start_plan()
        # (the health loop through self: a test hangs it)
        for loop in (health.telemetry_loop(self), asrun.resend_loop(self), self._health_loop()):
            self._tasks.append(asyncio.create_task(loop))
        await self.session.run()
