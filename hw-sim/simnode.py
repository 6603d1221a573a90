# hw-sim node host: runs many LoaXa nodes (the real firmware over hal.sim) in one MicroPython
# process. Started by hwsim.fleet; argv[1] is a JSON file describing the nodes.
# A line-based control port lets the controller cut and restore each node's link and set
# hardware faults. A node that reboots (op "reboot") is restarted in place: its flash stays,
# its RAM state goes, and it connects again with the next session counter.
# A node's "profile" picks its board: "sim" (hal.sim, the default) or "esp32" (hal.esp32, the
# board code that runs on the ESP32, over per-node stand-ins for machine/network/esp32/ntptime
# from hw-sim/mpsim). The host samples gc.mem_alloc() (status: heap_peak), for the heap budget.
import asyncio
import gc
import json
import os
import random
import sys

from firmware.device import Device
from hal.sim import SimBoard, SimClock, SimLink


def make_clock(nc):
    """The node's SimClock: its own offset on the fleet's shared controlled time, if any."""
    ck = nc.get("clock") or {}
    return SimClock(nc.get("clock_offset_ms", 0), ck.get("rate", 1), ck.get("sim_epoch_ms"),
                    ck.get("real_epoch_ms"), ck.get("warp"))


BOOT_MS = 300  # real ms a rebooting node is gone before its firmware starts again
HEAP_SAMPLE_MS = 200  # real ms between heap samples


def run_firmware(board, nc):
    """The node's firmware as every board runs it (firmware/device.py: watchdog, safe mode,
    OTA trial), and the coroutine to run."""
    dev = Device(board, nc)
    return dev, dev.run()


class Host:
    def __init__(self, cfg):
        self.cfg = cfg
        self.nodes = {}
        self.devices = {}  # node id -> its firmware.device.Device (the node and its life)
        self.tasks = {}  # node id -> the task running Device.run()
        self.boots = {}  # node id -> times started (1 + reboots)
        self.hw = {}  # node id -> its mpsim.Node (esp32 profile)
        self.heap_peak = 0

    def sample_heap(self):
        if self.cfg.get("heap_collect"):
            gc.collect()  # live heap, not garbage awaiting a collection (one small node host)
        used = gc.mem_alloc()  # type: ignore[attr-defined]
        if used > self.heap_peak:
            self.heap_peak = used
        return used

    def start_nodes(self):
        for nc in self.cfg["nodes"]:
            if nc.get("profile", "sim") == "esp32":
                self._boot_esp32(nc, make_clock(nc), nc.get("link_up", True), None, 1)
            else:
                self._boot(nc, make_clock(nc), SimLink(nc.get("link_up", True)), None)

    def _boot(self, nc, clock, link, faults):
        board = SimBoard(nc["dir"], clock=clock, link=link)
        if faults:  # hardware faults survive a reboot
            board.set_fault(log=False, **faults)
        board.on_reboot = lambda: asyncio.create_task(self._restart(nc))
        self._run(nc, board)

    def _boot_esp32(self, nc, clock, link_up, faults, cause):
        import mpsim

        from hal.esp32 import Esp32Board

        nid = nc["id"]
        hw = mpsim.Node(nc["dir"], clock, nc, cause,
                        lambda c: asyncio.create_task(self._restart_esp32(nc, c)))
        hw.link_up = link_up
        if faults:
            hw.set_fault(log=False, **faults)
        self.hw[nid] = hw
        board = Esp32Board(nc, hw=hw, clock=clock, storage_root=nc["dir"] + "/flash",
                           trace=hw.trace)
        self._run(nc, board)

    def _run(self, nc, board):
        nid = nc["id"]
        dev, run = run_firmware(board, nc)
        self.devices[nid] = dev
        self.nodes[nid] = dev.node
        self.boots[nid] = self.boots.get(nid, 0) + 1
        self.tasks[nid] = asyncio.create_task(run)

    async def _restart_esp32(self, nc, cause):
        """The board reset (machine.reset, the watchdog): RAM and tasks gone, flash kept."""
        nid = nc["id"]
        old = self.nodes[nid]
        hw = self.hw[nid]
        self.tasks[nid].cancel()
        self.devices[nid].halt()
        link = old.board.link
        if link._task is not None:
            link._task.cancel()
        old.board.led.set("off")
        old.board.audio.close()
        await asyncio.sleep(BOOT_MS / 1000)
        self._boot_esp32(nc, hw.clock, hw.link_up, hw.faults(), cause)

    async def _restart(self, nc):
        nid = nc["id"]
        ob = self.nodes[nid].board
        up = ob.link.is_up()
        self.tasks[nid].cancel()
        self.devices[nid].halt()
        # The old board is off: its link never comes back, so even a session loop that missed
        # the cancel (it may land while the loop collects its ended reader) cannot reconnect.
        ob.link.set_up(False)
        await asyncio.sleep(BOOT_MS / 1000)
        link = SimLink(up, ob.link.dbm)
        self._boot(nc, ob.clock, link, ob.faults())  # the same clock: the RTC keeps its offset

    def _targets(self, name):
        if name == "*":
            return list(self.nodes.values())
        n = self.nodes.get(name)
        return [n] if n else []

    def command(self, line):
        words = line.split()
        if not words:
            return "ERR empty"
        verb = words[0]
        if verb in ("down", "up") and len(words) == 2:
            targets = self._targets(words[1])
            for n in targets:
                hw = self.hw.get(n.id)
                if hw is not None:
                    hw.set_link(verb == "up")  # what network.WLAN/LAN/PPP see
                else:
                    n.board.link.set_up(verb == "up")
            return "OK %d" % len(targets)
        if verb == "fault" and len(words) >= 3:
            # fault <node|*> {"amp_fault": true, "signal_dbm": -95, "temp_c": 70, ...}
            try:
                kw = json.loads(line.split(None, 2)[2])
                targets = self._targets(words[1])
                for n in targets:
                    hw = self.hw.get(n.id)
                    if hw is not None:
                        hw.set_fault(kw.get("amp_fault"), kw.get("signal_dbm"),
                                     kw.get("temp_c"), kw.get("clock_offset_ms"),
                                     kw.get("wdt_hold"))
                    else:
                        n.board.set_fault(kw.get("amp_fault"), kw.get("signal_dbm"),
                                          kw.get("temp_c"), kw.get("clock_offset_ms"))
            except (ValueError, TypeError, AttributeError) as e:
                return "ERR fault: %r" % e
            return "OK %d" % len(targets)
        if verb == "status":
            heap = self.sample_heap()
            out = {}
            for nid, n in self.nodes.items():
                err = n.session.last_error
                out[nid] = {"connected": n.session.connected, "connects": n.session.connects,
                            "failures": n.session.failures,
                            "last_error": None if err is None else str(err)[:200],
                            "link": n.board.link.is_up(), "playing": n.playing,
                            "seq": n.seq.value, "pending": len(n.pending),
                            "plan": n.plan["ver"] if n.plan else None, "on_air": n.on_air,
                            "emergency": n.emergency, "clock": n.clock.time_ms(),
                            "session": n.session_no, "boots": self.boots.get(nid, 1),
                            "amp": n.board.amp.is_on(), "amp_fault": n.amp_fault,
                            "profile": n.board.name, "heap_used": heap,
                            "heap_peak": self.heap_peak}
            return "OK " + json.dumps(out)
        return "ERR unknown command"

    async def serve(self, reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                reply = self.command(line.decode().strip())
                writer.write((reply + "\n").encode())
                await writer.drain()
        finally:
            writer.close()


async def sample_heap(host):
    while True:
        host.sample_heap()
        await asyncio.sleep(HEAP_SAMPLE_MS / 1000)


async def watch_parent(pid):
    # The controller may die without stopping us (kill -9): then leave too, not run on orphaned.
    while True:
        await asyncio.sleep(2)
        try:
            os.stat("/proc/%d" % pid)
        except OSError:
            print("controller gone; exiting")
            sys.exit(0)


async def serve_control(host):
    # Pick our own free port: a port chosen by the controller beforehand could be taken by
    # the time we bind it (many hosts start at once). The controller reads it from READY.
    for _ in range(50):
        port = 20000 + random.getrandbits(15)
        try:
            await asyncio.start_server(host.serve, "127.0.0.1", port)
            return port
        except OSError:
            pass
    raise OSError("no free control port")


def budget_heap(cfg):
    """With "heap_budget" N: leave exactly N bytes of heap free once the code is loaded, as on
    an ESP32 whose firmware is frozen into flash (its bytecode takes no heap). The rest of
    the (larger) -X heapsize is held by one ballast block, so going over N is a MemoryError
    here too. Returns the ballast, which must stay referenced."""
    budget = cfg.get("heap_budget")
    if not budget:
        return None
    import mpsim  # noqa: F401  (everything a node imports, loaded before measuring)

    import hal.esp32  # noqa: F401
    gc.collect()
    free = gc.mem_free()  # type: ignore[attr-defined]
    if free < budget:
        raise MemoryError("-X heapsize too small for a heap budget of %d" % budget)
    # In blocks: the free heap is not one piece, so one block of it all may not fit.
    ballast = []
    block = 16384
    while block >= 64:
        excess = gc.mem_free() - budget  # type: ignore[attr-defined]
        if excess < 64:
            break
        try:
            ballast.append(bytearray(min(block, excess)))
        except MemoryError:
            block //= 2
    gc.collect()
    free = gc.mem_free()  # type: ignore[attr-defined]
    print("HEAP budget", budget, "ballast", sum(len(b) for b in ballast), "free", free)
    return ballast


async def main(path):
    with open(path) as f:
        cfg = json.load(f)
    host = Host(cfg)
    host.ballast = budget_heap(cfg)  # held until the process ends
    gc.collect()
    host.sample_heap()
    base = gc.mem_alloc()  # type: ignore[attr-defined]
    host.start_nodes()
    asyncio.create_task(sample_heap(host))
    if cfg.get("parent_pid"):
        asyncio.create_task(watch_parent(cfg["parent_pid"]))
    port = await serve_control(host)
    print("HEAP base", base)
    print("READY", len(host.nodes), port)
    while True:
        await asyncio.sleep(3600)


asyncio.run(main(sys.argv[-1]))  # `simnode.py CFG`, or `-m simnode CFG` (precompiled)
