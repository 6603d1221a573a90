# LoaXa protocol v1: the one codec that the headend (CPython) and the nodes (MicroPython) import.
# docs/protocol.md is the prose version of this file; keep them in step.
# MicroPython constraints: no dataclasses/typing at runtime, no json sort_keys, no hmac module.
import hashlib
import json

from binascii import hexlify, unhexlify

VERSION = 1
PREFIX = "loaxa/v1/node/"
MAX_PAYLOAD = 4096  # bytes; larger command payloads are rejected unread
MAX_PLAN_PAYLOAD = 16384  # bytes; a plan for 48 h and more (about 60 items)
CLOCK_SKEW_MS = 30000  # a command issued up to this far in the future is still valid
MAX_TTL_MS = 24 * 3600 * 1000  # a command may not claim to live longer than a day

# Topic leaves under loaxa/v1/node/<node>/ . The broker ACL uses %u = node id.
CMD = "cmd"  # headend -> node, QoS 1, never retained
ACK = "ack"  # node -> headend
STATE = "state"  # node -> headend, retained birth / last-will
TELEMETRY = "telemetry"  # node -> headend
ASRUN = "asrun"  # node -> headend, as-run records
ASRUN_ACK = "asrun/ack"  # headend -> node, per-record acks
ECHO = "echo"  # headend -> node, transport diagnostic (unsigned, echoed verbatim)
ECHO_REPLY = "echo/r"  # node -> headend
PLAN = "plan"  # headend -> node, QoS 1, RETAINED: the node's signed plan

OPS = ("play", "stop", "volume", "ping", "report", "emergency", "test_tone", "amp", "reboot",
       "ota")

# test_tone arguments: a locally generated sine, no media download (works with the media host
# down). The node generates whole periods in a 100 ms block, so hz is aired to the nearest 10 Hz.
TONE_SECONDS_MIN = 1
TONE_SECONDS_MAX = 60
TONE_SECONDS_DEFAULT = 5
TONE_HZ_MIN = 200
TONE_HZ_MAX = 4000
TONE_HZ_DEFAULT = 1000

# A full report (op "report") keeps its lists this short, so it stays well under MAX_PAYLOAD.
REPORT_MAX_CACHE = 24  # cache file names
REPORT_MAX_RIDS = 50  # pending as-run record ids (the oldest first)

# Plan item kinds and TT39 priority classes (0 normal, 1 priority, 2 emergency)
KINDS = ("vov_relay", "province_relay", "local_bulletin", "notice", "emergency")
PRIORITIES = (0, 1, 2)

# Ack statuses
ACCEPTED = "accepted"
REJECTED = "rejected"
STARTED = "started"
DONE = "done"
FAILED = "failed"

# Rejection reasons (stable codes; the headend translates them for people)
R_MALFORMED = "malformed"
R_OVERSIZED = "oversized"
R_VERSION = "unsupported_version"
R_WRONG_NODE = "wrong_node"
R_SIGNATURE = "bad_signature"
R_REPLAY = "replay"
R_EXPIRED = "expired"
R_NOT_YET_VALID = "not_yet_valid"
R_UNKNOWN_OP = "unknown_op"
R_BAD_ARGS = "bad_args"
R_HOST = "host_not_allowed"
R_QUIET = "quiet_hours"  # a play command during the node's quiet hours
R_BUSY = "busy_emergency"  # a play / test_tone / reboot while an emergency is on air
R_ON_AIR = "on_air"  # amp off while something is on air
R_SAFE_MODE = "safe_mode"  # playback refused: the node started in safe mode (boot loop)
# Why an "ota" command failed (ack "failed"; the running image is untouched in every case)
R_OTA_UNSUPPORTED = "ota_unsupported"  # the board has no OTA slot
R_OTA_BUSY = "ota_busy"  # another image is being installed
R_WRONG_BOARD = "wrong_board"  # the manifest is for another kind of board
R_NOT_NEWER = "not_newer"  # the image's version is not newer than the running one
R_DOWNLOAD = "download_failed"  # connect, HTTP status, cut or stalled download
R_BAD_SIZE = "bad_size"  # the image is not the size the manifest says
R_BAD_HASH = "bad_hash"  # its SHA-256 is not the manifest's
R_OTA_WRITE = "write_failed"  # the board could not write or switch its inactive slot
R_AMP_FAULT = "amp_fault"  # (as-run) the amplifier's current showed it did not drive the speakers
R_NOT_VERIFIED = "not_verified"  # (as-run) played; the board cannot sense the amplifier's current
R_NOT_HEALTHY = "not_healthy"  # (telemetry) the new image was rolled back: not healthy in time
# (a play / emergency whose media does not have the command's "sha" fails with R_BAD_HASH)
# Why the headend refused an as-run record (asrun_ack "refused"; the node drops it)
R_BAD_FIELD = "bad_field"  # a field of the wrong type, out of range or too long
R_BAD_TIME = "bad_time"  # start after end, or times far from the plan, command or receipt
R_CONFLICT = "conflict"  # the headend holds other content under this record id
# (a manifest whose signature does not verify fails with R_SIGNATURE, "bad_signature")

# As-run outcomes
AIRED = "aired"
PARTIAL = "partial"
OUTCOME_FAILED = "failed"
MISSED = "missed"  # a plan item that did not air (quiet hours, node off)

_NODE_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
_COMMAND_FIELDS = ("v", "id", "node", "seq", "iat", "exp", "op", "args", "sig")


def valid_node_id(node_id):
    """Node ids are usernames and topic levels: 1-40 chars of [a-z0-9-_]."""
    if not isinstance(node_id, str) or not 0 < len(node_id) <= 40:
        return False
    for ch in node_id:
        if ch not in _NODE_ID_CHARS:
            return False
    return True


def topic(node_id, leaf):
    return PREFIX + node_id + "/" + leaf


def split_topic(t):
    """'loaxa/v1/node/n1/asrun/ack' -> ('n1', 'asrun/ack'); None if not ours."""
    if not t.startswith(PREFIX):
        return None
    rest = t[len(PREFIX):]
    i = rest.find("/")
    if i <= 0:
        return None
    return rest[:i], rest[i + 1:]


# --- canonical encoding -------------------------------------------------------------------
# JSON with sorted keys, no spaces, integers only, strings escaped the same way on both
# implementations (json.dumps differs between CPython and MicroPython in key order and escaping).

def _canon_str(s, out):
    out.append('"')
    plain = True
    for ch in s:
        if ch == '"' or ch == "\\" or ord(ch) < 0x20:
            plain = False
            break
    if plain:  # the common case: one piece, not one per character (MicroPython heap)
        out.append(s)
        out.append('"')
        return
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')


def _canon(obj, out):
    if obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif isinstance(obj, int):
        out.append(str(obj))
    elif isinstance(obj, str):
        _canon_str(obj, out)
    elif isinstance(obj, (list, tuple)):
        out.append("[")
        first = True
        for item in obj:
            if not first:
                out.append(",")
            first = False
            _canon_part(item, out)
        out.append("]")
    elif isinstance(obj, dict):
        out.append("{")
        first = True
        for k in sorted(obj):
            if not isinstance(k, str):
                raise ValueError("non-string key")
            if not first:
                out.append(",")
            first = False
            _canon_str(k, out)
            out.append(":")
            _canon_part(obj[k], out)
        out.append("}")
    else:
        raise ValueError("value not allowed in a signed message")


def _canon_part(obj, out):
    # A nested list or object is joined into one string first: the list of pieces stays short
    # (a 16 KB plan as thousands of small strings does not fit a MicroPython heap).
    if isinstance(obj, (list, tuple, dict)):
        sub = []  # type: list[str]
        _canon(obj, sub)
        out.append("".join(sub))
    else:
        _canon(obj, out)


def canonical(obj):
    """Deterministic UTF-8 bytes of a JSON-like value (no floats)."""
    out = []  # type: list[str]
    _canon(obj, out)
    return "".join(out).encode()


def signing_bytes(cmd):
    """What a command's signature covers: every field but 'sig'."""
    body = {}
    for k in _COMMAND_FIELDS:
        if k != "sig" and k in cmd:
            body[k] = cmd[k]
    return canonical(body)


# --- HMAC-SHA256 (MicroPython has hashlib.sha256 but no hmac module) -----------------------

_BLOCK = 64
_DIGEST = 32


def _pads(key):
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key + b"\x00" * (_BLOCK - len(key))
    return bytes(b ^ 0x36 for b in key), bytes(b ^ 0x5C for b in key)


class Signer:
    """HMAC-SHA256 with the pads computed once per key (a node verifies many commands)."""

    def __init__(self, key):
        if isinstance(key, str):
            key = key.encode()
        self._ipad, self._opad = _pads(key)

    def digest(self, data, more=b""):
        """HMAC of data + more (two parts, so a caller can skip a field without copying)."""
        inner = hashlib.sha256(self._ipad)
        inner.update(data)
        if more:
            inner.update(more)
        outer = hashlib.sha256(self._opad)
        outer.update(inner.digest())
        return outer.digest()

    def sign(self, data):
        return hexlify(self.digest(data)).decode()

    def verify(self, data, sig, more=b""):
        if not isinstance(sig, str) or len(sig) != 2 * _DIGEST:
            return False
        try:
            want = unhexlify(sig)
        except ValueError:
            return False
        return equal_constant_time(self.digest(data, more), want)


def node_key(hex_key):
    """A node's HMAC key as stored in configs and the database (hex) -> bytes."""
    return unhexlify(hex_key)


def hmac_sha256_hex(key, data):
    return Signer(key).sign(data)


def equal_constant_time(a, b):
    """Compare two byte strings without leaking where they differ: compare their SHA-256
    digests instead (MicroPython has no hmac.compare_digest, and a Python loop or big-int
    arithmetic is slow there). An attacker cannot steer the digests byte by byte."""
    return hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


# --- commands -----------------------------------------------------------------------------

_SIG_FIELD = b',"sig":"'
_SIG_LEN = 64


def signed_part(payload, sig):
    """The bytes a received command's signature must cover, as two views of the payload
    around its sig field (no copy); (b"", b"") when the payload has no proper sig field.

    Commands travel in canonical encoding, where the top-level "sig" is the last key but "v"
    and a '"' inside a string is always escaped, so the last ',"sig":"' is the top-level one.
    The node thus verifies the exact bytes it received without re-encoding them (cheaper on an
    ESP32, and nothing to get subtly different). A non-canonical payload fails verification."""
    if isinstance(payload, str):
        payload = payload.encode()
    i = payload.rfind(_SIG_FIELD)
    start = i + len(_SIG_FIELD)
    end = start + _SIG_LEN
    if i < 0 or payload[end:end + 1] != b'"' or not isinstance(sig, str):
        return b"", b""
    if payload[start:end] != sig.encode():
        return b"", b""  # the parsed sig is not the one at the end: not canonical
    view = memoryview(payload)
    return view[:i], view[end + 1:]


def make_command(signer, cmd_id, node_id, seq, issued_ms, expires_ms, op, args):
    cmd = {
        "v": VERSION,
        "id": cmd_id,
        "node": node_id,
        "seq": seq,
        "iat": issued_ms,
        "exp": expires_ms,
        "op": op,
        "args": args,
    }
    cmd["sig"] = signer.sign(signing_bytes(cmd))
    return cmd


def encode_command(cmd):
    """Wire bytes of a command: canonical, so what was signed is exactly what is sent."""
    return canonical(cmd)


def encode(msg):
    """Wire bytes of any other message."""
    return json.dumps(msg).encode()


class Rejected(Exception):
    """A command the node must not act on. .reason is one of the R_* codes."""

    def __init__(self, reason, cmd_id=None, detail=""):
        super().__init__(reason)
        self.reason = reason
        self.cmd_id = cmd_id
        self.detail = detail


def _int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def parse_command(payload, node_id, signer, last_seq, now_ms):
    """Check a received command payload; return the command dict or raise Rejected.

    Order matters: structure first, then who it is for, then the signature, and only for a
    signed command the replay and validity checks (so a forger cannot probe our sequence)."""
    if len(payload) > MAX_PAYLOAD:
        raise Rejected(R_OVERSIZED, None, "%d bytes" % len(payload))
    try:
        cmd = json.loads(payload)
    except (ValueError, UnicodeError):
        raise Rejected(R_MALFORMED, None, "not JSON")
    if not isinstance(cmd, dict):
        raise Rejected(R_MALFORMED, None, "not an object")
    cmd_id = cmd.get("id")
    if not isinstance(cmd_id, str) or not 0 < len(cmd_id) <= 64:
        raise Rejected(R_MALFORMED, None, "bad id")
    if cmd.get("v") != VERSION:
        raise Rejected(R_VERSION, cmd_id, "v=%s" % cmd.get("v"))
    for k in _COMMAND_FIELDS:
        if k not in cmd:
            raise Rejected(R_MALFORMED, cmd_id, "missing " + k)
    for k in ("seq", "iat", "exp"):
        if not _int(cmd[k]):
            raise Rejected(R_MALFORMED, cmd_id, "bad " + k)
    if not isinstance(cmd["op"], str) or not isinstance(cmd["args"], dict):
        raise Rejected(R_MALFORMED, cmd_id, "bad op or args")
    if cmd["node"] != node_id:
        raise Rejected(R_WRONG_NODE, cmd_id, str(cmd["node"]))
    head, tail = signed_part(payload, cmd["sig"])
    if not head or not signer.verify(head, cmd["sig"], tail):
        raise Rejected(R_SIGNATURE, cmd_id)
    if cmd["seq"] <= last_seq:
        raise Rejected(R_REPLAY, cmd_id, "seq %d <= %d" % (cmd["seq"], last_seq))
    if now_ms >= cmd["exp"]:
        raise Rejected(R_EXPIRED, cmd_id)
    if cmd["iat"] > now_ms + CLOCK_SKEW_MS or cmd["exp"] - cmd["iat"] > MAX_TTL_MS:
        raise Rejected(R_NOT_YET_VALID, cmd_id)
    if cmd["op"] not in OPS:
        raise Rejected(R_UNKNOWN_OP, cmd_id, cmd["op"])
    return cmd


def _arg_int(args, name, lo, hi, default):
    v = args.get(name, default)
    return _int(v) and lo <= v <= hi


def _unknown_arg(args, allowed):
    for k in args:
        if k not in allowed:
            return k
    return None


def args_error(op, args):
    """The first bad argument of a test_tone / amp / reboot / ota command (these are strict
    about unknown arguments), or None. Shared by the node and the headend (which can refuse before
    sending). The other ops' arguments are checked by the node (some need its allow-list)."""
    if op == "test_tone":
        if not _arg_int(args, "seconds", TONE_SECONDS_MIN, TONE_SECONDS_MAX,
                        TONE_SECONDS_DEFAULT):
            return "seconds"
        if not _arg_int(args, "hz", TONE_HZ_MIN, TONE_HZ_MAX, TONE_HZ_DEFAULT):
            return "hz"
        return _unknown_arg(args, ("seconds", "hz"))
    if op == "amp":
        if not isinstance(args.get("on"), bool):
            return "on"
        return _unknown_arg(args, ("on",))
    if op == "reboot":
        return _unknown_arg(args, ())
    if op == "ota":
        return _ota_error(args)
    return None


# --- OTA images ---------------------------------------------------------------------------
# An "ota" command's args: the image's url plus its manifest {version, board, size, sha256}
# and "sig", HMAC-SHA256 under the node's key over ota_manifest_bytes(). docs/protocol.md, "OTA".

OTA_FIELDS = ("version", "board", "size", "sha256")
OTA_MAX_SIZE = 16 * 1024 * 1024  # bytes; an ESP32 app slot is 1.5-4 MB, a Pi tarball < 1 MB


def ota_manifest_bytes(manifest):
    """What an image manifest's signature covers: "t": "ota" (so it can never pass for a
    command or a plan, which are signed with the same key) and the four fields."""
    body = {"t": "ota"}
    for k in OTA_FIELDS:
        body[k] = manifest[k]
    return canonical(body)


def sign_ota_manifest(signer, version, board, size, sha256):
    m = {"version": version, "board": board, "size": size, "sha256": sha256}
    m["sig"] = signer.sign(ota_manifest_bytes(m))
    return m


def parse_version(v):
    """'1.2.10' -> (1, 2, 10); None if not 1-4 dot-separated decimal numbers."""
    if not isinstance(v, str) or not 0 < len(v) <= 32:
        return None
    out = []
    for part in v.split("."):
        if not part or not part.isdigit() or len(part) > 6:
            return None
        out.append(int(part))
    if len(out) > 4:
        return None
    return tuple(out)


def _hex64(v):
    if not isinstance(v, str) or len(v) != 64:
        return False
    for ch in v:
        if ch not in _HEX:
            return False
    return True


def _ota_error(args):
    if not isinstance(args.get("url"), str) or not args["url"]:
        return "url"
    if parse_version(args.get("version")) is None:
        return "version"
    if not _str(args.get("board"), 32) or not args["board"]:
        return "board"
    size = args.get("size")
    if not _int(size) or not 0 < size <= OTA_MAX_SIZE:
        return "size"
    if not _hex64(args.get("sha256")):
        return "sha256"
    if not _hex64(args.get("sig")):
        return "sig"
    return _unknown_arg(args, ("url", "sig") + OTA_FIELDS)


# --- plans ----------------------------------------------------------------------------------
# A plan is one signed, canonical JSON object per node (docs/protocol.md, "Plans").

def valid_quiet(q):
    """Quiet hours as [start_min, end_min, utc_offset_min] (local minutes of the day)."""
    return (isinstance(q, list) and len(q) == 3 and _int(q[0]) and _int(q[1]) and _int(q[2])
            and 0 <= q[0] < 1440 and 0 <= q[1] < 1440 and -720 <= q[2] <= 840)


_PLAN_FIELDS = ("v", "t", "node", "ver", "iat", "from", "to", "quiet", "items", "sig")
_HEX = "0123456789abcdef"


def plan_signing_bytes(plan):
    """What a plan's signature covers: every top-level field but 'sig'."""
    body = {}
    for k in plan:
        if k != "sig":
            body[k] = plan[k]
    return canonical(body)


def make_plan(signer, node_id, ver, iat, from_ms, to_ms, quiet, items, fallback=None):
    """A signed plan dict (items as given: sorted by "s", not overlapping)."""
    plan = {"v": VERSION, "t": "plan", "node": node_id, "ver": ver, "iat": iat,
            "from": from_ms, "to": to_ms, "quiet": list(quiet), "items": list(items)}
    if fallback is not None:
        plan["fallback"] = fallback
    plan["sig"] = signer.sign(plan_signing_bytes(plan))
    return plan


def encode_plan(plan):
    """Wire bytes of a plan: canonical, so what was signed is what is sent."""
    return canonical(plan)


def plan_ack_id(ver):
    return "plan-%d" % ver


def _str(v, n):
    return isinstance(v, str) and len(v) <= n


def media_error(m):
    """Why a media reference {url, sha, size} is unusable (a plan's, or a play / emergency
    command's arguments), or None."""
    if not isinstance(m, dict):
        return "not an object"
    if not isinstance(m.get("url"), str) or not m["url"]:
        return "url"
    if not _hex64(m.get("sha")):
        return "sha"
    if not _int(m.get("size")) or m["size"] <= 0:
        return "size"
    return None


_media_error = media_error


def _item_error(it, seen):
    """Why a plan item is unusable, or None."""
    if not isinstance(it, dict):
        return "not an object"
    iid = it.get("id")
    if not isinstance(iid, str) or not 0 < len(iid) <= 64:
        return "id"
    if iid in seen:
        return "duplicate id"
    if it.get("kind") not in KINDS:
        return "kind"
    p = it.get("p")
    if not _int(p) or p not in PRIORITIES:
        return "p"
    s, e, off = it.get("s"), it.get("e"), it.get("off", 0)
    if not isinstance(s, int) or not isinstance(e, int) or not _int(s) or not _int(e) or s >= e:
        return "s/e"
    if not isinstance(off, int) or not _int(off) or off < 0:
        return "off"
    if not _str(it.get("title", ""), 200) or not _str(it.get("lang", ""), 16):
        return "title/lang"
    if it.get("q", 0) not in (0, 1) or isinstance(it.get("q", 0), bool):
        return "q"
    src, media = it.get("src"), it.get("media")
    if (src is None) == (media is None):
        return "src/media"
    if src is not None:
        if not isinstance(src, list) or not 1 <= len(src) <= 2:
            return "src"
        for u in src:
            if not isinstance(u, str) or not u:
                return "src"
    else:
        why = _media_error(media)
        if why:
            return "media " + why
    return None


def parse_plan(payload, node_id, signer, current_ver, now_ms):
    """Check a received plan payload; return the plan dict or raise Rejected (cmd_id is
    "plan-<ver>" once the ver is known). Same order as commands: structure, node, signature,
    then replay, expiry and the items."""
    if len(payload) > MAX_PLAN_PAYLOAD:
        raise Rejected(R_OVERSIZED, None, "%d bytes" % len(payload))
    try:
        plan = json.loads(payload)
    except (ValueError, UnicodeError):
        raise Rejected(R_MALFORMED, None, "not JSON")
    if not isinstance(plan, dict) or plan.get("t") != "plan":
        raise Rejected(R_MALFORMED, None, "not a plan")
    ver = plan.get("ver")
    if not isinstance(ver, int) or not _int(ver) or ver <= 0:
        raise Rejected(R_MALFORMED, None, "bad ver")
    pid = plan_ack_id(ver)
    if plan.get("v") != VERSION:
        raise Rejected(R_VERSION, pid, "v=%s" % plan.get("v"))
    for k in _PLAN_FIELDS:
        if k not in plan:
            raise Rejected(R_MALFORMED, pid, "missing " + k)
    for k in ("iat", "from", "to"):
        if not _int(plan[k]):
            raise Rejected(R_MALFORMED, pid, "bad " + k)
    if not valid_quiet(plan["quiet"]):
        raise Rejected(R_MALFORMED, pid, "bad quiet")
    if not isinstance(plan["items"], list):
        raise Rejected(R_MALFORMED, pid, "bad items")
    if plan["node"] != node_id:
        raise Rejected(R_WRONG_NODE, pid, str(plan["node"]))
    head, tail = signed_part(payload, plan["sig"])
    if not head or not signer.verify(head, plan["sig"], tail):
        raise Rejected(R_SIGNATURE, pid)
    if ver <= current_ver:
        raise Rejected(R_REPLAY, pid, "ver %d <= %d" % (ver, current_ver))
    if plan["to"] <= now_ms:
        raise Rejected(R_EXPIRED, pid)
    fb = plan.get("fallback")
    if fb is not None and _media_error(fb):
        raise Rejected(R_MALFORMED, pid, "fallback " + str(_media_error(fb)))
    seen = {}  # type: dict[str, int]
    last_e = None
    n = 0
    for it in plan["items"]:
        why = _item_error(it, seen)
        if why is None and last_e is not None and it["s"] < last_e:
            why = "not sorted or overlapping"
        if why:
            raise Rejected(R_MALFORMED, pid, "item %d: %s" % (n, why))
        seen[it["id"]] = 1
        last_e = it["e"]
        n += 1
    return plan


# --- node -> headend messages -------------------------------------------------------------

def ack(node_id, cmd_id, status, at_ms, reason=None, detail=None, extra=None):
    msg = {"v": VERSION, "t": "ack", "node": node_id, "id": cmd_id, "status": status, "at": at_ms}
    if reason:
        msg["reason"] = reason
    if detail:
        msg["detail"] = detail
    if extra:
        for k in extra:
            msg[k] = extra[k]
    return msg


def state(node_id, online, session, at_ms, fw):
    """Retained availability. The last-will is the same message with online=False."""
    return {"v": VERSION, "t": "state", "node": node_id, "online": online,
            "session": session, "at": at_ms, "fw": fw}


def asrun_ack(rids, refused=None):
    """The headend's answer to as-run records: rids stored (or already stored), and records
    refused, each as {"rid", "sig", "why"}: the node drops only the record with that rid AND
    that signature, so a refusal earned by a forged copy cannot cost the node its real one."""
    msg = {"v": VERSION, "t": "asrun_ack", "rids": list(rids)}
    if refused:
        msg["refused"] = list(refused)
    return msg


# --- signed reports (node -> headend): as-run records and acks -------------------------------
# The node signs them with its own key, like the headend signs commands: "sig" covers the
# canonical bytes of every other field, and the wire bytes are canonical, so the headend checks
# exactly what it received (signed_part). Their "t" ("asrun", "ack") keeps them apart from
# commands (no "t"), plans ("plan") and OTA manifests ("ota") signed with the same key.

def sign_report(signer, msg):
    """Sign a node report in place; returns its wire bytes."""
    if "sig" in msg:
        del msg["sig"]
    msg["sig"] = signer.sign(canonical(msg))
    return canonical(msg)


def report_signed(signer, payload, msg):
    """True when payload (as received) carries a valid signature of msg's node."""
    sig = msg.get("sig")
    head, tail = signed_part(payload, sig)
    return bool(head) and signer.verify(head, sig, tail)


def decode(payload):
    """Parse a node/headend message; returns dict or None if it is not a v1 message."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeError):
        return None
    if not isinstance(msg, dict) or msg.get("v") != VERSION:
        return None
    return msg
