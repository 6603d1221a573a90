# The device's life around the Node: boot counting and safe mode, the hardware watchdog fed only
# while the node is healthy, and the trial of a new OTA image (confirmed once healthy, else
# rolled back). Every board's main calls run(board, config). docs/protocol.md, "Device life".
import asyncio
import json

from firmware import ota as otalib
from firmware.mqtt import sleep_ms, ticks_diff, ticks_ms
from firmware.node import Node

F_BOOT = "boot.json"  # {"quick": boots in a row that ended before they were stable, "hung": ..}

# Defaults; config "device": {"boot_loop_k", "stable_ms", "wdt_ms", "trial_ms", "beat_slack_ms"}
BOOT_LOOP_K = 3  # this many quick boots in a row: the next starts in safe mode
STABLE_MS = 180000  # real ms up with every loop beating: a later reset is not a boot loop
WDT_MS = 30000  # the hardware watchdog's timeout
TRIAL_MS = 300000  # real ms a new image has to report healthy, else it is rolled back
TRIAL_CHECK_MS = 500


class Device:
    """One boot of the node. Construct it first thing at boot (it counts the boot), then
    await run(); halt() stops it as a power cut would (the simulator's in-place reboot)."""

    def __init__(self, board, config):
        dc = config.get("device", {})
        self.board = board
        self.k = dc.get("boot_loop_k", BOOT_LOOP_K)
        self.stable_ms = dc.get("stable_ms", STABLE_MS)
        self.wdt_ms = dc.get("wdt_ms", WDT_MS)
        self.trial_ms = dc.get("trial_ms", TRIAL_MS)
        self.stable = False
        self._tasks = []
        boot = self._load_boot()
        self.quick = boot.get("quick", 0)  # the boots before this one that ended quickly
        cause = board.reset_cause()
        safe = None
        if self.quick >= self.k:
            safe = "%d quick reboots (last: %s)" % (self.quick, cause)
            if cause == "watchdog" and boot.get("hung"):
                safe += ", %s loop silent" % boot["hung"]
        # This boot counts as quick until it has been stable for stable_ms.
        self._save_boot(self.quick + 1, None)
        self.node = Node(board, config)
        self.node.safe_mode = safe
        if cause == "watchdog":
            self.node.reset_why = boot.get("hung") or "event loop blocked"
        self.node.on_reboot = self._intended_reboot
        self.node.ota_last = otalib.boot_check(board, self.node.fw)

    # --- boot counting ------------------------------------------------------------------

    def _load_boot(self):
        raw = self.board.storage.read(F_BOOT)
        try:
            boot = json.loads(raw) if raw else {}
        except ValueError:
            boot = {}
        return boot if isinstance(boot, dict) else {}

    def _save_boot(self, quick, hung):
        self.board.storage.write(F_BOOT, json.dumps({"quick": quick, "hung": hung}).encode())

    def _intended_reboot(self):
        """op reboot or a rollback: neither a boot loop nor a sign of health (the count stays
        as it was before this boot). Into a new image: it starts counting afresh (so an image
        sent to a node in safe mode to fix it is not started in safe mode and rolled back)."""
        last = self.node.ota_last
        if last and last.get("state") == otalib.STAGED:
            self._save_boot(0, None)
        elif not self.stable:
            self._save_boot(self.quick, None)

    # --- the watchdog -------------------------------------------------------------------

    async def _supervise(self):
        """Feed the watchdog while every long-lived loop of the node beats in time. This task
        is itself the event loop's pulse: blocked, nothing feeds and the board resets. Also
        clears the boot count once the node has been stable for stable_ms."""
        wd = self.board.watchdog
        if wd is not None:
            wd.start(self.wdt_ms)
        t0 = ticks_ms()
        told = None
        while True:
            silent = self.node.silent_loop()
            if silent is None:
                if wd is not None:
                    wd.feed()
                if not self.stable and ticks_diff(ticks_ms(), t0) >= self.stable_ms:
                    self.stable = True
                    self.quick = 0
                    self._save_boot(0, None)
            elif silent != told:  # starve the watchdog; say why for the next boot
                told = silent
                print("watchdog: %s loop silent, not feeding" % silent)
                self._save_boot(0 if self.stable else self.quick + 1, silent)
            await sleep_ms(max(10, min(1000, self.wdt_ms // 4)))

    # --- the OTA trial ------------------------------------------------------------------

    async def _trial(self):
        """The running image is on trial: confirm it once the node is healthy, or reboot after
        trial_ms so the board goes back to the previous image."""
        node, slot = self.node, self.board.ota
        t0 = ticks_ms()
        while ticks_diff(ticks_ms(), t0) < self.trial_ms:
            if node.healthy():
                slot.confirm()
                st = node.ota_last or {}
                node.ota_last = otalib.record(self.board.storage, st.get("version", node.fw),
                                              st.get("from"), otalib.CONFIRMED)
                await node._send_telemetry()  # the headend sees it adopted now
                return
            await sleep_ms(TRIAL_CHECK_MS)
        st = node.ota_last or {}
        otalib.record(self.board.storage, st.get("version", node.fw), st.get("from"),
                      otalib.TRIAL, "not_healthy",
                      "not healthy within %d s" % (self.trial_ms // 1000))
        print("ota: not healthy within %d ms, rolling back" % self.trial_ms)
        await node._reboot()

    # --- life ---------------------------------------------------------------------------

    async def run(self):
        self._tasks.append(asyncio.create_task(self._supervise()))
        slot = self.board.ota
        if slot is not None and slot.on_trial():
            self._tasks.append(asyncio.create_task(self._trial()))
        await self.node.run()

    def halt(self):
        """Stop every task at once, as a power cut does (cancel the task running run() too)."""
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        self.node.halt()


async def run(board, config):
    """The node's firmware on any board: hal/esp32's main.py, hal/rpi's main and hw-sim."""
    await Device(board, config).run()
