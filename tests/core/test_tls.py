"""headend.core.tls: the installation's CA and server certificate, made, rotated and
replaced by the operator's, checked before use."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from headend.core.home import Home
from headend.core.tls import RENEW_DAYS, SERVER_DAYS, TlsError, ensure, installed, use_operator


def _serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def test_made_once_private_and_valid_for_python_clients(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "home")
    files = ensure(home, ["headend.xa-tanlang.vn", "203.0.113.7"])
    assert files == installed(home)
    assert sorted(files.names()) == ["203.0.113.7", "headend.xa-tanlang.vn"]
    for key in (files.key, home.tls_dir / "ca.key"):
        assert key.stat().st_mode & 0o777 == 0o600
    assert home.tls_dir.stat().st_mode & 0o777 == 0o700
    # A TLS client that trusts only this CA accepts the server certificate for its name.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cadata=files.ca_der())
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(files.cert, files.key)
    # Called again with the same names, nothing changes (nodes keep their pinned CA).
    before = (_serial(files.ca), _serial(files.cert))
    ensure(home, ["203.0.113.7", "headend.xa-tanlang.vn"])
    assert (_serial(files.ca), _serial(files.cert)) == before


def test_rotated_near_its_end_and_for_new_names_under_the_same_ca(tmp_path: Path) -> None:
    home = Home.create(tmp_path / "home")
    files = ensure(home, ["a.example"])
    ca, cert = _serial(files.ca), _serial(files.cert)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=SERVER_DAYS - RENEW_DAYS + 1)
    ensure(home, ["a.example"], now=later)
    assert _serial(files.ca) == ca and _serial(files.cert) != cert
    assert files.expires() > later + dt.timedelta(days=SERVER_DAYS - 1)
    cert = _serial(files.cert)
    ensure(home, ["b.example"])
    assert _serial(files.ca) == ca and _serial(files.cert) != cert
    assert files.names() == ["b.example"]
    with pytest.raises(TlsError):
        ensure(home, [])


def test_the_operators_certificate_is_checked_then_kept(tmp_path: Path) -> None:
    theirs = ensure(Home.create(tmp_path / "theirs"), ["radio.example.vn"])
    other = ensure(Home.create(tmp_path / "other"), ["radio.example.vn"])
    home = Home.create(tmp_path / "home")
    with pytest.raises(TlsError, match="is not the key"):
        use_operator(home, theirs.cert, other.key, theirs.ca)
    with pytest.raises(TlsError, match="did not sign"):
        use_operator(home, theirs.cert, theirs.key, other.ca)
    with pytest.raises(TlsError, match="cannot read"):
        use_operator(home, tmp_path / "missing.pem", theirs.key, theirs.ca)
    assert not installed(home).cert.exists()
    files = use_operator(home, theirs.cert, theirs.key, theirs.ca)
    assert files.ca_der() == theirs.ca_der()
    assert ensure(home, ["radio.example.vn"]).ca_der() == theirs.ca_der()  # not replaced
    with pytest.raises(TlsError, match="does not name"):
        ensure(home, ["other.example.vn"])


def test_cli_show_and_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    from support.cli import run_main

    theirs = ensure(Home.create(tmp_path / "theirs"), ["radio.example.vn"])
    home = tmp_path / "home"
    code, _, err = run_main(capsys, "--home", str(home), "tls", "show")
    assert code == 2 and "chưa có chứng chỉ" in err
    code, _, err = run_main(capsys, "--home", str(home), "tls", "use", "--cert",
                            str(theirs.cert), "--key", str(theirs.ca), "--ca", str(theirs.ca))
    assert code == 2 and "loaxa: error:" in err and "Traceback" not in err
    code, out, _ = run_main(capsys, "--home", str(home), "tls", "use", "--cert",
                            str(theirs.cert), "--key", str(theirs.key), "--ca", str(theirs.ca))
    assert code == 0 and "names: radio.example.vn" in out
    assert hashlib.sha256(theirs.ca_der()).hexdigest() in out
