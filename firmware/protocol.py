# LoaXa protocol v1: the one codec that the headend (CPython) and the nodes (MicroPython) import.
# docs/protocol.md is the prose version of this file; keep them in step.
# MicroPython constraints: no dataclasses/typing at runtime, no json sort_keys, no hmac module.
import hashlib
import json

from binascii import hexlify, unhexlify

VERSION = 1
PREFIX = "loaxa/v1/node/"
MAX_PAYLOAD = 4096  # bytes; larger command payloads are rejected unread
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

OPS = ("play", "stop", "volume", "ping", "report")

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

# As-run outcomes
AIRED = "aired"
PARTIAL = "partial"
OUTCOME_FAILED = "failed"

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
            _canon(item, out)
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
            _canon(obj[k], out)
        out.append("}")
    else:
        raise ValueError("value not allowed in a signed message")


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


def asrun_ack(rids):
    return {"v": VERSION, "t": "asrun_ack", "rids": list(rids)}


def decode(payload):
    """Parse a node/headend message; returns dict or None if it is not a v1 message."""
    try:
        msg = json.loads(payload)
    except (ValueError, UnicodeError):
        return None
    if not isinstance(msg, dict) or msg.get("v") != VERSION:
        return None
    return msg
