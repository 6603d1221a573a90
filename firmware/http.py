# Minimal async HTTP/1.0 GET for streaming media to the node: http, or https to a server the
# node's pinned CA signed (no redirects: a 3xx is returned as is and the caller reports it as
# a failure). Runs unchanged under MicroPython and CPython 3.11.
import errno

from firmware.mqtt import close_stream, open_stream, tls_error, wait_ms

MAX_HEADER_LINE = 1024
MAX_HEADERS = 40


TLS = None  # the node's tls_context (firmware/mqtt.py), set at start when it has a CA


def parse_url(url):
    """'http[s]://host[:port][/path][?query]' -> (host, port, path). ValueError otherwise."""
    if not isinstance(url, str):
        raise ValueError("url must be a string")
    i = url.find("://")
    scheme = url[:i].lower() if i > 0 else ""
    if scheme != "http" and scheme != "https":
        raise ValueError("only http:// and https:// urls are supported")
    rest = url[i + 3:]
    h = rest.find("#")
    if h >= 0:
        rest = rest[:h]
    j = rest.find("/")
    q = rest.find("?")
    if q >= 0 and (j < 0 or q < j):
        j = q
    if j < 0:
        netloc, path = rest, "/"
    else:
        netloc, path = rest[:j], rest[j:]
        if path[0] == "?":
            path = "/" + path
    if "@" in netloc or "[" in netloc or " " in netloc or " " in path:
        raise ValueError("unsupported url: " + url)
    port = 443 if scheme == "https" else 80
    k = netloc.find(":")
    if k >= 0:
        p = netloc[k + 1:]
        netloc = netloc[:k]
        if not p or not p.isdigit():
            raise ValueError("bad port in url: " + url)
        port = int(p)
        if not 0 < port < 65536:
            raise ValueError("bad port in url: " + url)
    if not netloc:
        raise ValueError("no host in url: " + url)
    return netloc, port, path


class Response:
    def __init__(self, reader, writer, status, headers, timeout_ms):
        self.status = status
        self.headers = headers  # lower-case keys
        self._reader = reader
        self._writer = writer
        self._timeout_ms = timeout_ms
        self.bytes_read = 0
        cl = headers.get("content-length")
        self.length = int(cl) if cl is not None and cl.isdigit() else None

    async def read(self, n):
        """Up to n body bytes; b'' at the end. OSError on a stall (timeout) or a body cut short."""
        r = self._reader
        if r is None:
            return b""
        if self.length is not None:
            left = self.length - self.bytes_read
            if left <= 0:
                return b""
            if n > left:
                n = left
        data = await wait_ms(r.read(n), self._timeout_ms)
        if not data:
            if self.length is not None:
                raise OSError(errno.ECONNRESET, "body truncated")
            return b""
        self.bytes_read += len(data)
        return data

    def close(self):
        w = self._writer
        self._writer = None
        self._reader = None
        close_stream(w)


async def get(url, timeout_ms=10000):
    """GET url; returns a Response once the headers are in (body not read yet).
    OSError on connect/read failure or timeout, ValueError on a bad url or a malformed reply."""
    host, port, path = parse_url(url)
    tls = None
    if url[:6].lower() == "https:":
        tls = TLS
        if tls is None:
            raise OSError(errno.ECONNABORTED, "https without a CA to check the server")
    reader, writer = await wait_ms(open_stream(host, port, tls), timeout_ms)
    try:
        hosthdr = host if port == (443 if tls else 80) else "%s:%d" % (host, port)
        writer.write(("GET %s HTTP/1.0\r\nHost: %s\r\nUser-Agent: loaxa-node\r\n"
                      "Connection: close\r\n\r\n" % (path, hosthdr)).encode())
        try:
            await wait_ms(writer.drain(), timeout_ms)  # MicroPython's TLS handshake is here
        except ValueError as e:
            raise tls_error(e, tls)
        line = await wait_ms(reader.readline(), timeout_ms)
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise ValueError("bad status line: %r" % line[:80])
        status = int(parts[1])
        headers = {}  # type: dict[str, str]
        while True:
            line = await wait_ms(reader.readline(), timeout_ms)
            if not line:
                raise OSError(errno.ECONNRESET, "connection closed in headers")
            if line == b"\r\n" or line == b"\n":
                break
            if len(line) > MAX_HEADER_LINE or len(headers) >= MAX_HEADERS:
                raise ValueError("response headers too large")
            k = line.find(b":")
            if k > 0:
                headers[line[:k].strip().decode().lower()] = line[k + 1:].strip().decode()
        return Response(reader, writer, status, headers, timeout_ms)
    except BaseException:
        close_stream(writer)
        raise
