# Names and defaults of the ESP32 board (docs/hardware.md has the wiring table).
# ruff: noqa: UP031  (MicroPython: %-formatting)
# Default pins for an ESP32-WROVER DevKit: no flash/PSRAM pins (6-11, 16-17 on WROVER), no
# strapping pins for outputs that must be low at boot (0, 2, 5, 12, 15). config.json "pins"
# overrides any of them; None means not fitted.
DEFAULT_PINS = {
    "i2s_sck": 14,  # BCLK  -> MAX98357A BCLK / PCM5102 BCK
    "i2s_ws": 13,  # LRCLK -> MAX98357A LRC  / PCM5102 LCK
    "i2s_sd": 4,  # DATA  -> MAX98357A DIN  / PCM5102 DIN
    "amp_relay": 32,  # relay driver input (transistor or opto relay board): amplifier mains
    "led": 2,  # status LED (the DevKit's own LED on GPIO 2; low at boot, as strapping wants)
    "amp_sense": 34,  # ADC1 input: amplifier current sense (ACS712 output, divided to <= 3.1 V)
    "amp_fault": 35,  # input only: amplifier protection output, active low (external pull-up)
    "test_button": 39,  # input only: "test" push button to GND (external 10k pull-up)
    "modem_tx": 33,  # ESP32 TX -> modem RX (UART2, 3.3 V levels)
    "modem_rx": 36,  # ESP32 RX <- modem TX (input-only pin)
    "modem_power": 12,  # modem PWRKEY through an NPN: low at boot, as strapping pin 12 wants
    "eth_mdc": 23,  # LAN8720 MDC (the RMII data pins are fixed: 0, 19, 21, 22, 25, 26, 27,
    "eth_mdio": 18,  # LAN8720 MDIO  so the defaults above stay clear of them)
    "eth_power": None,  # LAN8720 power enable, where the board has one
}
PIN_NAMES = tuple(DEFAULT_PINS)
I2S_IBUF = 6144  # bytes of DMA ring: 192 ms of 16 kHz 16-bit mono
VOLUME_BUF = 1024  # bytes: the player's chunk; volume is applied in this buffer


def pins_from(config):
    """The pin map: DEFAULT_PINS overridden by config["pins"]; a pin set to None is absent."""
    pins = dict(DEFAULT_PINS)
    pins.update(config.get("pins") or {})
    for k in pins:
        if k not in PIN_NAMES:
            raise ValueError("unknown pin name %s" % k)
    return pins
