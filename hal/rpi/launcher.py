"""The process systemd runs (deploy/rpi/loaxa-node.service): applies the A/B rules, starts
the node (hal.rpi.main) from the `current` slot as a child, and after it ends records why.

    python -m hal.rpi.launcher --config /etc/loaxa/node.json

Rules (hal/rpi/ota.py has the layout):
- ota.json "next": switch `current` to it; the slot runs on trial.
- a trial slot that starts again after MAX_TRIAL_BOOTS boots (a power cut or watchdog
  reset during the trial) or whose node exits without confirm() is rolled back: `current`
  goes back to the old slot.
The launcher then exits with the node's status and systemd (Restart=always) starts it again.
READY=1 and WATCHDOG=1 come from the node itself (NotifyAccess=all)."""
import argparse
import json
import logging
import os
import signal
import subprocess
import sys
from typing import Any

from hal.rpi.const import (
    ENV_INSTALL_DIR,
    ENV_RESET_CAUSE,
    ENV_SLOT,
    EXIT_REBOOT,
    EXIT_SYSTEM_REBOOT,
    rpi_config,
)
from hal.rpi.ota import MAX_TRIAL_BOOTS, AbSlots
from hal.rpi.storage import atomic_write
from hal.rpi.system import boot_id

log = logging.getLogger("loaxa.launcher")


def prepare(slots: AbSlots) -> str:
    """Apply the A/B rules before a start; the slot to run."""
    st = slots.state()
    if "next" in st:
        old = slots.active()
        slots.point_current(st["next"])
        st = {"trial": st["next"], "from": old, "boots": 0}
        log.info("starting slot %s on trial (from %s)", st["trial"], old)
    if "trial" in st:
        if st.get("boots", 0) >= MAX_TRIAL_BOOTS:
            rollback(slots, st, f"not confirmed after {st['boots']} boot(s)")
        else:
            st["boots"] = st.get("boots", 0) + 1
            slots.save(st)
    return slots.active()


def rollback(slots: AbSlots, st: dict[str, Any], why: str) -> None:
    log.error("rolling back slot %s to %s: %s", st["trial"], st["from"], why)
    slots.point_current(st["from"])
    slots.save({"rolled_back": st["trial"], "why": why})


def after_exit(slots: AbSlots, status: int) -> None:
    """The node has ended: a trial it did not confirm is over."""
    st = slots.state()
    if "trial" in st:
        rollback(slots, st, f"node exited (status {status}) without confirming")


def reset_cause(marker: dict[str, Any]) -> str:
    """Why this start: from what the previous launcher recorded about its node."""
    if not marker:
        return "power"
    if marker.get("running"):  # the launcher itself died with its node
        return "watchdog" if marker.get("boot_id") == boot_id() else "power"
    status = marker.get("status")
    if status in (EXIT_REBOOT, EXIT_SYSTEM_REBOOT):
        return "soft"
    return "power" if marker.get("boot_id") != boot_id() else "crash"


def launch(root: str, child: list[str], python: str = sys.executable) -> int:
    """One start of the node: `python <child...>` from the current slot. Returns its status."""
    slots = AbSlots(root)
    marker_path = os.path.join(root, "launcher.json")
    try:
        with open(marker_path) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        marker = {}
    slot = prepare(slots)
    slot_dir = os.path.realpath(slots.dir(slot))
    env = dict(os.environ)
    env.update({ENV_SLOT: slot, ENV_INSTALL_DIR: root, ENV_RESET_CAUSE: reset_cause(marker),
                "PYTHONPATH": slot_dir})
    atomic_write(marker_path, json.dumps({"running": True, "boot_id": boot_id(),
                                          "slot": slot}).encode())
    proc = subprocess.Popen([python, *child], cwd=slot_dir, env=env)

    def forward(signum: int, _frame: Any) -> None:
        proc.send_signal(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    status = proc.wait()
    if status < 0:  # killed by a signal
        status = 128 - status
    atomic_write(marker_path, json.dumps({"running": False, "boot_id": boot_id(),
                                          "slot": slot, "status": status}).encode())
    after_exit(slots, status)
    return status


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="/etc/loaxa/node.json")
    p.add_argument("--install-dir", help="overrides the config's rpi.install_dir")
    p.add_argument("node_args", nargs="*", help="more arguments for hal.rpi.main")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with open(a.config) as f:
        cfg = rpi_config(json.load(f))
    root = a.install_dir or cfg["install_dir"]
    status = launch(root, ["-m", "hal.rpi.main", "--config", a.config, *a.node_args])
    if status == EXIT_SYSTEM_REBOOT:
        subprocess.call(["systemctl", "reboot"])
    return status


if __name__ == "__main__":
    sys.exit(main())
