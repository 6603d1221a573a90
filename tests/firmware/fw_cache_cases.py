# firmware/cache.py: the node's media cache over hal.sim storage, fed by a local HTTP server.
# Runs under MicroPython and CPython.
import fwsim
import fwtest

from firmware.cache import PART, PREFIX, CacheFull, MediaCache
from hal.sim import SimStorage


def storage(name):
    return SimStorage(fwsim.tmpdir(name))


def cache_names(st):
    return sorted(n for n in st.names() if n.startswith(PREFIX))


def with_server(body):
    async def main():
        srv = await fwsim.Server().start()
        try:
            await body(srv)
        finally:
            srv.close()

    fwtest.run(main())


def test_fetch_verifies_and_keeps_the_file():
    async def body(srv):
        data = fwsim.wav_file(30)  # 3 KB: three chunks and a bit
        srv.routes["/a.wav"] = data
        st = storage("good")
        c = MediaCache(st, 100000)
        m = fwsim.media(srv.port, "/a.wav", data)
        assert await c.fetch(m["url"], m["sha"], m["size"]) is True
        assert c.has(m["sha"]) and c.used() == len(data)
        f = c.open(m["sha"])
        assert f.read() == data
        f.close()
        assert await c.fetch(m["url"], m["sha"], m["size"]) is False  # cached: no download
        assert srv.hits["/a.wav"] == 1
        assert cache_names(st) == [PREFIX + m["sha"]]

    with_server(body)


def test_wrong_hash_or_size_keeps_nothing():
    async def body(srv):
        data = fwsim.wav_file(20)
        srv.routes["/a.wav"] = data
        st = storage("hash")
        c = MediaCache(st, 100000)
        bad = fwsim.sha(b"something else")
        for sha, size in ((bad, len(data)), (fwsim.sha(data), len(data) + 1)):
            try:
                await c.fetch(srv.url("/a.wav"), sha, size)
            except ValueError:
                pass
            else:
                raise AssertionError("a wrong hash/size must fail")
        assert cache_names(st) == [] and c.used() == 0

    with_server(body)


def test_cut_download_keeps_nothing():
    async def body(srv):
        data = fwsim.wav_file(50)
        srv.routes["/cut.wav"] = ("cut", data, 2500)
        srv.routes["/gone.wav"] = 404
        st = storage("cut")
        c = MediaCache(st, 100000)
        for path in ("/cut.wav", "/gone.wav"):
            try:
                await c.fetch(srv.url(path), fwsim.sha(data), len(data))
            except OSError:
                pass
            else:
                raise AssertionError("a cut or failed download must fail: " + path)
        assert cache_names(st) == []
        # a part left by a power cut is removed at boot
        f = st.open(PREFIX + fwsim.sha(data) + PART, "wb")
        f.write(b"half")
        f.close()
        MediaCache(st, 100000)
        assert cache_names(st) == []

    with_server(body)


def test_eviction_keeps_what_the_plan_needs():
    async def body(srv):
        blobs = {}
        for i in range(4):
            d = fwsim.wav_file(20 + i)  # about 2 KB each
            srv.routes["/%d.wav" % i] = d
            blobs[i] = fwsim.media(srv.port, "/%d.wav" % i, d)
        st = storage("evict")
        c = MediaCache(st, 6600)  # room for three
        for i in (0, 1, 2):
            await c.fetch(blobs[i]["url"], blobs[i]["sha"], blobs[i]["size"])
        c.open(blobs[0]["sha"]).close()  # 0 used recently: 1 is now the oldest
        keep = {blobs[1]["sha"]: 1, blobs[3]["sha"]: 1}  # the plan needs 1 and 3
        await c.fetch(blobs[3]["url"], blobs[3]["sha"], blobs[3]["size"], keep)
        assert c.has(blobs[1]["sha"]) and c.has(blobs[3]["sha"])  # 1 kept although oldest
        assert not c.has(blobs[2]["sha"]) and c.has(blobs[0]["sha"])  # 2 was the LRU victim
        assert c.used() <= 6600
        # nothing the plan does not need is left to evict: cache_full, nothing removed
        keep = {blobs[0]["sha"]: 1, blobs[1]["sha"]: 1, blobs[3]["sha"]: 1}
        try:
            await c.fetch(blobs[2]["url"], blobs[2]["sha"], blobs[2]["size"], keep)
        except CacheFull:
            pass
        else:
            raise AssertionError("must report cache_full")
        assert c.full and len(cache_names(st)) == 3
        # the LRU order survives a reboot (index file)
        c2 = MediaCache(st, 6600)
        await c2.fetch(blobs[2]["url"], blobs[2]["sha"], blobs[2]["size"], {})
        assert not c2.has(blobs[1]["sha"]) or not c2.has(blobs[0]["sha"])

    with_server(body)
