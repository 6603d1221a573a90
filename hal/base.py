# The hardware boundary. Firmware code reaches hardware only through these interfaces;
# hal/sim, hal/esp32 and hal/rpi each implement them. Plain classes (MicroPython has no abc).
import asyncio


class Clock:
    def time_ms(self):
        """UTC wall-clock time, milliseconds since 1970-01-01."""
        raise NotImplementedError

    def ticks_ms(self):
        """Monotonic milliseconds for measuring intervals."""
        raise NotImplementedError

    async def sleep_ms(self, ms):
        raise NotImplementedError


class AudioOut:
    """PCM sink (I2S DAC on ESP32, ALSA on a Pi, a recorder in the simulator)."""

    def open(self, rate, bits, channels, label=""):
        raise NotImplementedError

    async def write(self, buf):
        """Queue PCM bytes; returns when the sink can take more (paced at the playback rate)."""
        raise NotImplementedError

    async def drain(self):
        """Return once everything written has been heard."""
        raise NotImplementedError

    def close(self):
        raise NotImplementedError

    def set_volume(self, level):
        """0..100."""
        raise NotImplementedError


class Amplifier:
    """The relay that powers the amplifier and horns."""

    def on(self):
        raise NotImplementedError

    def off(self):
        raise NotImplementedError

    def is_on(self):
        raise NotImplementedError

    def current_ma(self):
        """Current the amplifier draws, in mA, or None where it is not sensed (or the reading
        has not settled since the relay closed)."""
        return None

    def verifies(self):
        """True where current_ma() is sensed: the node can tell an amplifier that drives the
        speakers from one that does not (else its airings are recorded "not verified")."""
        return False

    def fault(self):
        """True if the hardware itself reports a fault (a protection pin, say), False if it
        reports none, None where it cannot tell. The node also judges current_ma()."""
        return None


class StatusLed:
    def set(self, pattern):
        """'off', 'on' (connected), 'blink' (connecting), 'play'."""
        raise NotImplementedError


class Storage:
    """Small files in flash. write() is atomic: after a power cut the old or the new content is there."""

    def read(self, name):
        """bytes, or None when the file does not exist."""
        raise NotImplementedError

    def write(self, name, data):
        raise NotImplementedError

    def remove(self, name):
        """Delete a file; no error when it does not exist."""
        raise NotImplementedError

    # Files too big for read()/write() (the media cache): streamed through a file object.
    def open(self, name, mode):
        """A file object ('rb', 'wb' or 'r+b') with read(n), write(b), seek(pos), close()."""
        raise NotImplementedError

    def size(self, name):
        """Size in bytes, or None when the file does not exist."""
        raise NotImplementedError

    def rename(self, old, new):
        """Atomic rename, replacing new if it exists."""
        raise NotImplementedError

    def names(self):
        """Names of the files in storage."""
        raise NotImplementedError

    def counter(self, name):
        """A persisted integer, durable when set() returns (the replay-protection sequence
        number is set once per command, so boards may implement this more cheaply)."""
        return FileCounter(self, name)


class FileCounter:
    """Counter over Storage.read/write: one atomic file write per update."""

    def __init__(self, storage, name):
        self._storage = storage
        self._name = name
        raw = storage.read(name)
        self.value = int(raw) if raw else 0

    def set(self, value):
        self._storage.write(self._name, str(value).encode())
        self.value = value


class Link:
    """The IP link (WiFi, Ethernet or 4G PPP). The MQTT transport only needs 'is there IP'.

    The up/down plumbing every board shares lives here: the board's watcher (a task polling
    the hardware, the simulator's switch) reports the state with set_up(); up() returns once
    it is up, and the on_down callbacks run when it drops. A board overrides up() to start
    its watcher or to bring the link up, and is_up() where it can look at the hardware."""

    kind = "unknown"

    def __init__(self, up=False):
        self._up = up
        self._event = asyncio.Event()  # set while up: what up() waits on
        if up:
            self._event.set()
        self._callbacks = []  # type: list

    async def up(self):
        """Return once the link carries IP (bring it up if needed)."""
        while not self._up:
            self._event.clear()
            await self._event.wait()

    def is_up(self):
        return self._up

    def signal_dbm(self):
        """Signal strength in dBm, or None where it means nothing (Ethernet)."""
        return None

    def on_down(self, callback):
        """Register callback() to run when the link drops, so open sockets are abandoned at
        once. It runs in set_up(), on the event loop's thread."""
        self._callbacks.append(callback)

    def set_up(self, up):
        """The watcher saw the link up (True) or down (False): wake up(), or run the on_down
        callbacks. Returns True when that is a change."""
        if up == self._up:
            return False
        self._up = up
        if up:
            self._event.set()
        else:
            for cb in self._callbacks:
                try:
                    cb()
                except Exception:  # a failing callback must not keep the link "up"
                    self._callback_failed()
        return True

    def _callback_failed(self):
        """An on_down callback raised (called in its except clause): a board may log it."""

    def info(self):
        """What the technician should see about the link, for telemetry: a small dict (a 4G
        link gives sim, reg, dbm, operator, apn), or None."""
        return None


class Watchdog:
    """The hardware watchdog. Once started it resets the board unless fed within timeout_ms.
    It cannot be stopped. Boards without one keep this no-op."""

    def start(self, timeout_ms):
        pass

    def feed(self):
        pass


class Ota:
    """The firmware slot not running now (the ESP32's other app partition, the Pi's other
    install directory, a directory in the simulator). An image is written into it, then made
    to boot next on trial: until the new firmware calls confirm(), any restart goes back to
    the old image."""

    def running(self):
        """Label of the running image (slot name or partition), for telemetry."""
        return None

    def begin(self, size):
        """Prepare the inactive slot for an image of size bytes (erase, truncate)."""
        raise NotImplementedError

    def write(self, data):
        """Append image bytes to the inactive slot."""
        raise NotImplementedError

    def finish(self):
        """The whole image is written and verified: boot it next time, on trial."""
        raise NotImplementedError

    def on_trial(self):
        """True while the running image has not been confirmed yet."""
        return False

    def confirm(self):
        """The running image works: keep it (cancels the rollback)."""
        pass

    def describe(self, manifest):
        """The verified manifest ({version, board, size, sha256}) of the image just written,
        called before finish(). Boards that keep it beside the slot may; others ignore it."""
        pass

    def version(self):
        """Version of the running image where the board knows it apart from the code it runs
        (the simulator: its slots hold no code it runs, so the slot's manifest says), else
        None, and the firmware's own FW_VERSION is the version."""
        return None


class Board:
    """Everything a node's firmware gets from its hardware."""

    # Set by each board's constructor.
    clock: Clock
    audio: AudioOut
    amp: Amplifier
    led: StatusLed
    storage: Storage
    link: Link
    name = "unknown"

    def heap_free(self):
        """Free heap in bytes (a board may collect garbage first), or None."""
        return None

    # The headend raises its temperature alarm above this board's limit, by `name`
    # (BOARD_TEMP_MAX_C in headend/nodes/health.py: esp32 70, rpi 80).
    def temperature_c(self):
        """Board (or enclosure) temperature in whole degrees Celsius, or None if not sensed."""
        return None

    # Set by boards that have them; None where there is none.
    watchdog = None  # type: Watchdog | None
    ota = None  # type: Ota | None

    def on_test_button(self, callback):
        """Register callback() to run when the local "test" button is pressed (a technician at
        the pole checks the loudspeakers without the network). Boards without one ignore it.
        callback() must run on the event loop's thread (it starts asyncio tasks): a board whose
        presses arrive elsewhere (gpiozero's thread, a pin IRQ) hands them over first
        (loop.call_soon_threadsafe, micropython.schedule plus an asyncio flag)."""
        pass

    def reset_cause(self):
        """Why the board last started: 'power', 'watchdog', 'soft', 'crash' or None."""
        return None

    def reboot(self):
        """Restart the board (machine.reset() on an ESP32: does not return). Whatever must
        survive has to be in storage before this is called."""
        raise NotImplementedError
