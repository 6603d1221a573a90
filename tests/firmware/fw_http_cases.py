# firmware/http.py: url parsing and streaming GETs from the pytest side's HTTP server.
# Plain asserts; runs under MicroPython and CPython.
import hashlib

import fwtest

from firmware import http


def expected_digest(n):
    """sha256 of the server's /blob body (chained sha256 blocks), without holding it whole."""
    h = hashlib.sha256()
    block = b"loaxa"
    left = n
    while left > 0:
        block = hashlib.sha256(block).digest()
        h.update(block[:left])
        left -= len(block)
    return h.digest()


def test_parse_url_ok():
    assert http.parse_url("http://example.org") == ("example.org", 80, "/")
    assert http.parse_url("http://example.org/") == ("example.org", 80, "/")
    assert http.parse_url("HTTP://10.0.0.5:8080/media/a.mp3") == ("10.0.0.5", 8080, "/media/a.mp3")
    assert http.parse_url("http://h:81/a/b?x=1&y=2") == ("h", 81, "/a/b?x=1&y=2")
    assert http.parse_url("http://h?x=1") == ("h", 80, "/?x=1")
    assert http.parse_url("http://h/p#frag") == ("h", 80, "/p")
    assert http.parse_url("https://headend.example/media/a.wav") == (
        "headend.example", 443, "/media/a.wav")
    assert http.parse_url("HTTPS://10.0.0.5:8443/m?n=x") == ("10.0.0.5", 8443, "/m?n=x")
    # A media URL with the node's token (headend/media/access.py): the query goes out as given.
    t = "9a45b07f5291016aaa5907b5558cfc66"
    assert http.parse_url("http://10.0.0.5:8080/media/3dd8.mp3?n=tl-banchu-1&t=" + t) == (
        "10.0.0.5", 8080, "/media/3dd8.mp3?n=tl-banchu-1&t=" + t)


def test_https_without_a_pinned_ca_is_refused():
    # A node with no CA must not fetch https unchecked: Python's default context checks
    # nothing on MicroPython.
    import asyncio

    async def main():
        try:
            await http.get("https://127.0.0.1:9/x", 1000)
        except OSError as e:
            return str(e)
        return None

    assert http.TLS is None
    err = asyncio.run(main())
    assert err is not None and "CA" in err, err


def test_parse_url_errors():
    bad = ("httpx://example.org/a.mp3", "ftp://h/x", "example.org/a.mp3", "http://", "http:///x",
           "http://h:/x", "http://h:0/x", "http://h:70000/x", "http://h:80a/x",
           "http://user:pw@h/x", "http://[::1]/x", "", "rtsp://h/x")
    for url in bad:
        try:
            http.parse_url(url)
        except ValueError:
            continue
        raise AssertionError(f"parse_url must reject {url!r}")
    try:
        http.parse_url(None)
    except ValueError:
        pass
    else:
        raise AssertionError("parse_url(None) must raise ValueError")


def test_get_streams_body():
    async def main():
        n = 100003  # not a multiple of the chunk or block size
        r = await http.get(fwtest.http_base() + f"/blob?n={n}")
        try:
            assert r.status == 200, r.status
            assert r.headers["content-length"] == str(n)
            assert r.headers["content-type"] == "audio/mpeg"
            h = hashlib.sha256()
            total = 0
            chunks = 0
            while True:
                b = await r.read(1024)
                if not b:
                    break
                assert len(b) <= 1024
                h.update(b)
                total += len(b)
                chunks += 1
            assert total == n, total
            assert chunks >= n // 1024
            assert h.digest() == expected_digest(n)
            assert await r.read(1024) == b""
        finally:
            r.close()

    fwtest.run(main())


def test_get_without_content_length_reads_to_eof():
    async def main():
        r = await http.get(fwtest.http_base() + "/nolength")
        body = b""
        while True:
            b = await r.read(5)
            if not b:
                break
            body += b
        r.close()
        assert r.status == 200 and body == b"no length here", (r.status, body)

    fwtest.run(main())


def test_get_redirect_and_404_are_not_followed():
    async def main():
        r = await http.get(fwtest.http_base() + "/redirect")
        r.close()
        assert r.status == 302, r.status
        assert r.headers["location"] == "/blob?n=10"
        r = await http.get(fwtest.http_base() + "/missing")
        assert r.status == 404
        assert await r.read(100) == b"not found"
        r.close()

    fwtest.run(main())


def test_get_truncated_body_raises():
    async def main():
        r = await http.get(fwtest.http_base() + "/truncated")
        got = 0
        try:
            while True:
                b = await r.read(64)
                if not b:
                    break
                got += len(b)
        except OSError:
            assert got == 100, got
        else:
            raise AssertionError("a body shorter than Content-Length must raise OSError")
        finally:
            r.close()

    fwtest.run(main())


def test_get_stall_times_out():
    async def main():
        r = await http.get(fwtest.http_base() + "/stall", timeout_ms=500)
        try:
            await r.read(10)
        except OSError:
            pass
        else:
            raise AssertionError("a stalled body must raise OSError after timeout_ms")
        finally:
            r.close()

    fwtest.run(main())


def test_get_connection_refused():
    async def main():
        try:
            r = await http.get("http://127.0.0.1:1/x", timeout_ms=3000)
        except OSError:
            return
        r.close()
        raise AssertionError("GET to a closed port must raise OSError")

    fwtest.run(main())
