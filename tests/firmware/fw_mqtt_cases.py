# firmware/mqtt.py against a real mosquitto. Plain asserts; runs under MicroPython and CPython.
import asyncio

import fwtest

from firmware.mqtt import MQTTClient, MQTTError, sleep_ms, ticks_diff, ticks_ms


def test_remaining_length_encoding():
    c = MQTTClient("x", "127.0.0.1", 1)
    cases = ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
             (16384, b"\x80\x80\x01"), (2097152, b"\x80\x80\x80\x01"))
    for size, enc in cases:
        c._write_fixed(0x30, size)
        assert bytes(c._pkt) == b"\x30" + enc, (size, c._pkt)
    c._pkt = None


def test_round_trip_qos0_and_qos1():
    async def main():
        got = []
        sub = fwtest.client("sub", clean=True)
        sub.on_message = lambda t, p: got.append((t, p))
        pub = fwtest.client("pub", clean=True)
        present = await sub.connect(5000)
        assert present is False
        st = asyncio.create_task(sub.run())
        pt = await fwtest.started(pub)
        base = fwtest.uid("t")
        granted = await sub.subscribe(base + "/#", qos=1)
        assert granted == 1, granted
        await pub.publish(base + "/a", b"zero", qos=0)
        await pub.publish(base + "/b", b"one" * 100, qos=1)  # returns after PUBACK
        await pub.publish(base + "/c", "text", qos=1, retain=False)
        assert await fwtest.until(lambda: len(got) == 3)
        assert got[0] == (base + "/a", b"zero"), got[0]
        assert got[1] == (base + "/b", b"one" * 100)
        assert got[2] == (base + "/c", b"text")
        assert pub.bytes_out > 300 and pub.bytes_in >= 4 + 4 + 4  # CONNACK + 2 PUBACK
        assert sub.bytes_in > 300
        await pub.disconnect()
        await sub.disconnect()
        assert await st is None  # run() returns quietly after a local close
        assert await pt is None

    fwtest.run(main())


def test_persistent_session_present():
    async def main():
        cid = fwtest.uid("persist")
        host, port = fwtest.broker()
        c = MQTTClient(cid, host, port, clean=False)
        t = await fwtest.started(c)
        await c.subscribe(fwtest.uid("p") + "/x", qos=1)
        await c.disconnect()
        await t
        c2 = MQTTClient(cid, host, port, clean=False)
        assert await c2.connect(5000) is True  # the broker kept the session
        c2.close()
        c3 = MQTTClient(cid, host, port, clean=True)
        assert await c3.connect(5000) is False
        await c3.disconnect()

    fwtest.run(main())


def test_will_sent_on_close_not_on_disconnect():
    async def main():
        will_topic = fwtest.uid("will")
        got = []
        watcher = fwtest.client("watch", clean=True)
        watcher.on_message = lambda t, p: got.append((t, p))
        wt = await fwtest.started(watcher)
        await watcher.subscribe(will_topic, qos=1)

        polite = fwtest.client("polite", will=(will_topic, b"gone-polite", False, 1))
        pt = await fwtest.started(polite)
        await polite.disconnect()
        await pt
        await sleep_ms(500)
        assert got == [], got  # a clean DISCONNECT discards the will

        rude = fwtest.client("rude", will=(will_topic, b"gone-rude", False, 1))
        rt = await fwtest.started(rude)
        rude.close()
        assert await rt is None
        assert await fwtest.until(lambda: len(got) == 1)
        assert got == [(will_topic, b"gone-rude")], got
        await fwtest.stop(watcher, wt)

    fwtest.run(main())


def test_oversize_publish_discarded_and_link_usable():
    async def main():
        topic = fwtest.uid("big")
        got = []
        big = []
        rx = fwtest.client("rx", clean=True, max_packet=1024)
        rx.on_message = lambda t, p: got.append((t, p))
        rx.on_oversize = lambda t, n: big.append((t, n))
        rt = await fwtest.started(rx)
        await rx.subscribe(topic, qos=1)
        tx = fwtest.client("tx", clean=True)
        tt = await fwtest.started(tx)
        await tx.publish(topic, b"x" * 20000, qos=1)
        await tx.publish(topic, b"small", qos=1)
        await tx.publish(topic, b"y" * 3000, qos=0)
        await tx.publish(topic, b"after", qos=0)
        assert await fwtest.until(lambda: len(got) == 2 and len(big) == 2)
        assert got == [(topic, b"small"), (topic, b"after")], got
        # remaining length = 2 + topic + 2 (packet id) + payload
        assert big[0] == (topic, 2 + len(topic) + 2 + 20000), big
        assert big[1] == (topic, 2 + len(topic) + 3000), big
        assert rx.oversize_count == 2
        # still usable both ways
        await rx.publish(topic, b"from-rx", qos=1)
        assert await fwtest.until(lambda: len(got) == 3)
        assert got[2] == (topic, b"from-rx")
        assert rx.is_connected
        await fwtest.stop(tx, tt)
        await fwtest.stop(rx, rt)

    fwtest.run(main())


def test_handler_error_does_not_drop_link():
    async def main():
        topic = fwtest.uid("err")
        got = []

        def on_message(t, p):
            if p == b"boom":
                raise ValueError("handler bug")
            got.append(p)

        c = fwtest.client("err", clean=True)
        c.on_message = on_message
        t = await fwtest.started(c)
        await c.subscribe(topic, qos=1)
        await c.publish(topic, b"boom", qos=1)
        await c.publish(topic, b"fine", qos=1)
        assert await fwtest.until(lambda: got == [b"fine"])
        assert c.callback_errors == 1
        await fwtest.stop(c, t)

    fwtest.run(main())


def test_connect_refused_raises_oserror():
    async def main():
        c = MQTTClient(fwtest.uid("nobody"), "127.0.0.1", 1)
        try:
            await c.connect(3000)
        except OSError:
            pass
        else:
            raise AssertionError("connect to a closed port must raise OSError")
        assert not c.is_connected
        try:
            await c.publish("x", b"y")
        except OSError:
            pass
        else:
            raise AssertionError("publish without a connection must raise OSError")

    fwtest.run(main())


def test_keepalive_pings_and_detects_dead_link():
    # A fake broker that answers CONNECT and then never answers PINGREQ.
    async def main():
        seen = []

        async def handle(reader, writer):
            await fwtest.read_packet(reader)  # CONNECT
            writer.write(b"\x20\x02\x00\x00")
            await writer.drain()
            while True:
                b = await reader.read(64)
                if not b:
                    break
                seen.append(b)

        srv, port = await fwtest.serve(handle)
        c = MQTTClient(fwtest.uid("ka"), "127.0.0.1", port, keepalive=1)
        await c.connect(3000)
        t0 = ticks_ms()
        try:
            await c.run()
        except OSError as e:
            assert "keepalive" in str(e), e
        else:
            raise AssertionError("run() must raise OSError on a dead link")
        took = ticks_diff(ticks_ms(), t0)
        assert 900 <= took <= 3000, took
        assert b"".join(seen).startswith(b"\xc0\x00"), seen  # PINGREQ went out
        srv.close()

    fwtest.run(main())


def test_keepalive_with_real_broker_stays_up():
    async def main():
        c = fwtest.client("alive", clean=True, keepalive=1)
        t = await fwtest.started(c)
        out0 = c.bytes_out
        await sleep_ms(2600)
        assert c.is_connected
        assert c.bytes_out >= out0 + 2 * 4, (out0, c.bytes_out)  # >= 4 PINGREQs of 2 bytes
        await fwtest.stop(c, t)

    fwtest.run(main())


def test_subscribe_refused_raises():
    # mosquitto refuses (0x80) only through ACLs, which the test broker has none of,
    # so a fake broker sends the refusal.
    async def main():
        async def handle(reader, writer):
            await fwtest.read_packet(reader)  # CONNECT
            writer.write(b"\x20\x02\x00\x00")
            await writer.drain()
            b = await fwtest.read_packet(reader)  # SUBSCRIBE: 0x82 len pid...
            writer.write(b"\x90\x03" + b[2:4] + b"\x80")
            await writer.drain()
            await reader.read(256)

        srv, port = await fwtest.serve(handle)
        c = MQTTClient(fwtest.uid("ref"), "127.0.0.1", port, keepalive=0)
        t = await fwtest.started(c)
        try:
            await c.subscribe("forbidden/#", qos=1, timeout_ms=3000)
        except MQTTError as e:
            assert e.code == 0x80
        else:
            raise AssertionError("SUBACK 0x80 must raise MQTTError")
        await fwtest.stop(c, t)
        srv.close()

    fwtest.run(main())
