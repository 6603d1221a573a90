# Protocol v1 codec tests: the same functions run under CPython (pytest) and MicroPython
# (tests/support/mp_runner.py), which is what proves both sides sign and check identically.
from firmware import protocol as P

KEY = P.node_key("11" * 32)
GOLDEN_SIG = "438f658c94692976395ee8743345d524e6a6a8929fc47e1bb7d63452f6e7205c"
GOLDEN_ARGS = {"url": "http://127.0.0.1:8080/media/a.wav", "title": 'Thông báo "khẩn"\n',
               "at": 1700000005000}
NOW = 1700000001000


def golden():
    return P.make_command(P.Signer(KEY), "c-golden", "n1", 7, 1700000000000, 1700000060000,
                          "play", GOLDEN_ARGS)


def reason_of(payload, node="n1", last_seq=0, now=NOW, key=KEY):
    try:
        P.parse_command(payload, node, P.Signer(key), last_seq, now)
    except P.Rejected as e:
        return e.reason
    return None


def test_hmac_matches_rfc4231_case_2():
    mac = P.hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?")
    assert mac == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_hmac_long_key_is_hashed_first():
    # RFC 4231 test case 6: a 131-byte key
    data = b"Test Using Larger Than Block-Size Key - Hash Key First"
    mac = P.hmac_sha256_hex(b"\xaa" * 131, data)
    assert mac == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"


def test_golden_command_is_byte_identical_on_both_interpreters():
    cmd = golden()
    assert cmd["sig"] == GOLDEN_SIG
    wire = P.encode_command(cmd)
    assert wire.startswith(b'{"args":{"at":1700000005000,"title":"Th\xc3\xb4ng b\xc3\xa1o \\"kh')
    assert wire.endswith(b'"seq":7,"sig":"' + GOLDEN_SIG.encode() + b'","v":1}')


def test_canonical_sorts_keys_and_escapes():
    out = P.canonical({"b": [1, True, None], "a": "x\"\\\x01y"})
    assert out == b'{"a":"x\\"\\\\\\u0001y","b":[1,true,null]}'


def test_canonical_refuses_floats():
    try:
        P.canonical({"a": 1.5})
    except ValueError:
        return
    raise AssertionError("a float was accepted in a signed message")


def test_good_command_is_accepted():
    cmd = P.parse_command(P.encode_command(golden()), "n1", P.Signer(KEY), 6, NOW)
    assert cmd["op"] == "play" and cmd["args"]["title"] == GOLDEN_ARGS["title"]


def test_rejections():
    wire = P.encode_command(golden())
    assert reason_of(wire, last_seq=7) == P.R_REPLAY
    assert reason_of(wire, last_seq=100) == P.R_REPLAY
    assert reason_of(wire, now=1700000060000) == P.R_EXPIRED
    assert reason_of(wire, now=1700000000000 - P.CLOCK_SKEW_MS - 1) == P.R_NOT_YET_VALID
    assert reason_of(wire, node="n2") == P.R_WRONG_NODE
    assert reason_of(wire, key=P.node_key("22" * 32)) == P.R_SIGNATURE
    assert reason_of(b"x" * (P.MAX_PAYLOAD + 1)) == P.R_OVERSIZED
    assert reason_of(b"{not json") == P.R_MALFORMED
    assert reason_of(b"[]") == P.R_MALFORMED
    assert reason_of(b'{"id":""}') == P.R_MALFORMED
    assert reason_of(b'{"id":"c1","v":2}') == P.R_VERSION
    assert reason_of(b'{"id":"c1","v":1,"node":"n1"}') == P.R_MALFORMED


def test_tampering_anywhere_breaks_the_signature():
    wire = P.encode_command(golden())
    for old, new in ((b'"seq":7', b'"seq":8'), (b"a.wav", b"b.wav"),
                     (b'"op":"play"', b'"op":"stop"'), (b"1700000060000", b"1800000060000")):
        assert reason_of(wire.replace(old, new)) == P.R_SIGNATURE, old


def test_non_canonical_encoding_is_refused():
    wire = P.encode_command(golden())
    assert reason_of(wire.replace(b'"op":"play"', b'"op": "play"')) == P.R_SIGNATURE


def test_a_nested_sig_key_does_not_confuse_verification():
    args = {"sig": "0" * 64, "url": "http://h:1/x.wav"}
    cmd = P.make_command(P.Signer(KEY), "c2", "n1", 9, NOW, NOW + 1000, "play", args)
    got = P.parse_command(P.encode_command(cmd), "n1", P.Signer(KEY), 0, NOW)
    assert got["args"]["sig"] == "0" * 64


def test_unknown_op_is_checked_after_the_signature():
    cmd = P.make_command(P.Signer(KEY), "c3", "n1", 9, NOW, NOW + 1000, "selfdestruct", {})
    assert reason_of(P.encode_command(cmd)) == P.R_UNKNOWN_OP
    forged = P.make_command(P.Signer(P.node_key("33" * 32)), "c3", "n1", 9, NOW, NOW + 1000,
                            "selfdestruct", {})
    assert reason_of(P.encode_command(forged)) == P.R_SIGNATURE


def test_too_long_validity_is_refused():
    cmd = P.make_command(P.Signer(KEY), "c4", "n1", 9, NOW, NOW + P.MAX_TTL_MS + 1, "ping", {})
    assert reason_of(P.encode_command(cmd)) == P.R_NOT_YET_VALID


def test_topics_and_node_ids():
    assert P.topic("n1", P.ASRUN_ACK) == "loaxa/v1/node/n1/asrun/ack"
    assert P.split_topic("loaxa/v1/node/n1/asrun/ack") == ("n1", "asrun/ack")
    assert P.split_topic("other/n1/cmd") is None
    assert P.valid_node_id("tl-napan-1")
    for bad in ("", "a/b", "a+b", "#", "A1", "x" * 41, 5, None):
        assert not P.valid_node_id(bad), bad


def test_decode_ignores_other_versions_and_garbage():
    assert P.decode(b'{"v":1,"t":"ack"}') == {"v": 1, "t": "ack"}
    assert P.decode(b'{"v":2}') is None
    assert P.decode(b"\xff\xfe") is None
    assert P.decode(b"[1]") is None
