"""Nodes reach the headend as over the public 4G network: MQTT and media over TLS, checked
against the installation's CA that each node pins. Someone on the path sees no password, key
or command, and tampering only drops connections; a broker another CA signed, or a name the
certificate does not carry, is refused by the node (real Mosquitto, real MicroPython)."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import pytest
from support.loaxa_stack import Stack, wait_until
from support.onpath import OnPath, on_path

from headend.core.home import Home
from headend.core.tls import ensure as ensure_tls

TITLE = "Thông báo họp dân thôn Nà Pài"


def _tone_pcm(stack: Stack) -> bytes:
    with wave.open(str(stack.tone)) as w:
        return w.readframes(w.getnframes())


def _through(stack: Stack, mq: OnPath, web: OnPath) -> None:
    """Start the stack with the nodes' MQTT and media going through the relays on the path."""
    stack.fleet.broker_port = mq.port
    stack.fleet.media_hosts = [f"https://127.0.0.1:{web.port}"]
    stack.start()


def _play_via(stack: Stack, web_port: int) -> str:
    url = f"https://127.0.0.1:{web_port}/media/{stack.tone.name}"
    cmds = stack.run(stack.headend.send(stack.node_ids, "play", {"url": url, "title": TITLE},
                                        operator="test", title=TITLE))
    return cmds[0].id


def test_on_path_observer_learns_nothing_and_the_audio_arrives(tmp_path: Path) -> None:
    stack = Stack(tmp_path, nodes=1, tls=True)
    node = stack.secrets[0]
    with on_path(stack.broker.node_port) as mq, on_path(stack.web_port) as web:
        _through(stack, mq, web)
        try:
            cmd_id = _play_via(stack, web.port)
            records = wait_until(lambda: stack.asrun(), 30, "the as-run record")
            assert records[0].outcome == "aired" and records[0].title == TITLE
            recs = stack.fleet.recordings(node.id)
            assert len(recs) == 1 and recs[0].pcm() == _tone_pcm(stack)
        finally:
            stack.stop()
    seen_mq, seen_web = mq.seen, web.seen
    assert len(seen_mq) > 2000 and len(seen_web) > len(_tone_pcm(stack))  # it all went by
    assert seen_mq[:1] == b"\x16" and seen_web[:1] == b"\x16"  # a TLS handshake first
    pcm = _tone_pcm(stack)
    secrets = {
        "node password": node.password.encode(),
        "node key": node.key.encode(),
        "node key bytes": bytes.fromhex(node.key)[:16],
        "headend password": stack.password.encode(),
        "command id": cmd_id.encode(),
        "command op": b'"op":"play"',
        "title": TITLE.encode(),
        "topic": b"loaxa/v1/node/",
        "media name": stack.tone.name.encode(),
        "audio": pcm[len(pcm) // 2:len(pcm) // 2 + 64],
        "http request": b"GET /media/",
    }
    for what, value in secrets.items():
        assert value not in seen_mq, f"{what} crossed the MQTT link in the clear"
        assert value not in seen_web, f"{what} crossed the media link in the clear"


def test_tampering_on_the_path_only_drops_connections(tmp_path: Path) -> None:
    stack = Stack(tmp_path, nodes=1, tls=True)
    node = stack.node_ids[0]
    with on_path(stack.broker.node_port) as mq, on_path(stack.web_port) as web:
        _through(stack, mq, web)
        try:
            connects = stack.fleet.status()[node]["connects"]
            mq.tamper = True
            _play_via(stack, web.port)
            wait_until(lambda: mq.tampered >= 3, 20, "tampered records on the path")
            time.sleep(1.5)
            # Every altered record was refused: the node played nothing, said nothing aired.
            assert stack.fleet.recordings(node) == []
            assert stack.asrun() == []
            assert not stack.fleet.status()[node]["connected"]
            mq.tamper = False
            # The path clean again, the node reconnects and its session brings the command.
            records = wait_until(lambda: stack.asrun(), 40, "the as-run record")
            assert records[0].outcome == "aired"
            recs = stack.fleet.recordings(node)
            assert len(recs) == 1 and recs[0].pcm() == _tone_pcm(stack)
            assert stack.fleet.status()[node]["connects"] > connects
        finally:
            stack.stop()


def _never_connects(stack: Stack, node: str) -> str:
    stack.broker.start()
    try:
        stack.fleet.start()
        deadline = time.monotonic() + 20
        while True:  # until it has tried, and tried again after its backoff
            st = stack.fleet.status()[node]
            assert not st["connected"], "the node trusted a server it should not"
            if st["failures"] >= 3:
                break
            assert time.monotonic() < deadline, st
            time.sleep(0.1)
        assert st["connects"] == 0
        return str(st["last_error"])
    finally:
        stack.fleet.stop()
        stack.broker.stop()


def test_a_broker_signed_by_another_ca_is_refused(tmp_path: Path) -> None:
    stack = Stack(tmp_path, nodes=1, tls=True)
    other = ensure_tls(Home.create(tmp_path / "other"), ["127.0.0.1", "localhost"])
    stack.fleet.broker_ca = other.ca_der()  # the node pins another installation's CA
    error = _never_connects(stack, stack.node_ids[0])
    assert "tls" in error.lower(), error


@pytest.mark.parametrize("dialled", ["localhost"])
def test_a_certificate_for_another_name_is_refused(tmp_path: Path, dialled: str) -> None:
    stack = Stack(tmp_path, nodes=1, tls=True)
    # Same CA, but the server's certificate names only 127.0.0.1: a node dialling another
    # name (what a DNS spoof would present) must not accept it.
    ensure_tls(stack.home, ["127.0.0.1"])
    stack.fleet.broker_host = dialled
    error = _never_connects(stack, stack.node_ids[0])
    assert "tls" in error.lower(), error


def test_plain_mqtt_to_the_tls_listener_gets_nothing(tmp_path: Path) -> None:
    import socket

    from headend.nodes.broker import _connect_packet

    stack = Stack(tmp_path, nodes=1, tls=True)
    stack.broker.start()
    try:
        node = stack.secrets[0]
        with socket.create_connection(("127.0.0.1", stack.broker.node_port), 5) as sock:
            sock.settimeout(5)
            sock.sendall(_connect_packet(node.id, node.password))
            try:
                reply = sock.recv(64)
            except ConnectionResetError:
                reply = b""  # Mosquitto hangs up on what is not TLS
        assert not reply.startswith(b"\x20"), "a CONNACK over plain TCP"
    finally:
        stack.broker.stop()


def test_the_web_app_over_https_keeps_its_cookies_to_tls(tmp_path: Path) -> None:
    import ssl

    import httpx
    from support.web_site import post_login

    from headend.core.auth import add_user

    stack = Stack(tmp_path, nodes=1, tls=True)
    add_user(stack.engine, "canbo", "mat-khau-dai-1", "officer", ["test-xa"],
             int(time.time() * 1000))
    stack.start()
    try:
        assert stack.tls is not None
        ctx = ssl.create_default_context(cadata=stack.tls.ca_der())
        with httpx.Client(base_url=f"https://127.0.0.1:{stack.web_port}", verify=ctx) as web:
            page = web.get("/login")
            assert page.status_code == 200
            assert page.headers["strict-transport-security"].startswith("max-age=")
            assert "secure" in page.headers["set-cookie"].lower()  # the log-in form's token
            r = post_login(web, "canbo", "mat-khau-dai-1")
            assert r.status_code == 303
            session = [c for c in r.headers.get_list("set-cookie") if "loaxa_session" in c]
            assert session and "secure" in session[0].lower()
            assert "httponly" in session[0].lower()
        # Nobody reaches it in the clear.
        with httpx.Client(base_url=f"http://127.0.0.1:{stack.web_port}") as plain, \
                pytest.raises(httpx.HTTPError):
            plain.get("/login")
    finally:
        stack.stop()
