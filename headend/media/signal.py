"""The signal work on a decoded bulletin, all numpy: loudness, level, limiting, silence
trimming and the chime.

**Loudness** (``integrated_lufs``): EBU R128 / ITU-R BS.1770-4 integrated loudness of the mono
signal: K-weighting (the BS.1770 high-shelf and high-pass biquads, with coefficients derived for
the actual sample rate as libebur128 does), mean square over 400 ms blocks with 75 % overlap,
an absolute gate at -70 LUFS and a relative gate 10 LU below the absolutely-gated mean. Instead
of running the IIR filters sample by sample, the K-weighted mean square of each 100 ms sub-block
is taken in the frequency domain: one batched real FFT of all sub-blocks (zero-padded to a
2^a 3^b length, which pocketfft does fastest), each bin's power
weighted by the filters' squared magnitude response at that frequency (Parseval). A 400 ms
block's mean square is the mean of its four sub-blocks. Leakage at sub-block edges is the only
approximation; the tests hold the meter within 0.3 LU of ffmpeg's ``ebur128`` filter.

**Level**: gain to ``TARGET_LUFS`` (-23 LUFS, EBU R128). If that gain would push a sample above
``PEAK_CEILING_DBFS`` (-1 dBFS sample peak), a look-ahead limiter pulls those peaks down: the
gain each sample needs, then a sliding minimum over ±10 ms, then a ±10 ms moving average (which
can only stay below the needed gain, so no peak passes: no clipping, no overshoot). Limiting
lowers the loudness a little, so the gain is raised and limited again until the result is
within 0.3 LU of the target (at most four rounds).

**Silence trimming**: leading and trailing 10 ms frames whose RMS is more than
``SILENCE_BELOW_LU`` (30 dB) below the source's integrated loudness, and never above
``SILENCE_FLOOR_DBFS`` (-70 dBFS), are silence (after removing any DC offset); the speech keeps
``TRIM_PADDING_MS`` (150 ms) of it on each side so no syllable is clipped.

**Chime** (optional): a three-note bell (G5, E5, C5, falling before the bulletin and rising
after it, about 1.5 s) made in numpy, at the same loudness target, joined by ``CHIME_GAP_MS``.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from headend.media.probe import Samples

TARGET_LUFS: Final = -23.0
PEAK_CEILING_DBFS: Final = -1.0
LOUDNESS_TOLERANCE_LU: Final = 0.3  # the gain/limit rounds stop within this of the target
SILENCE_BELOW_LU: Final = 30.0
SILENCE_FLOOR_DBFS: Final = -70.0
TRIM_PADDING_MS: Final = 150
LIMITER_MS: Final = 10.0


# --- Loudness (BS.1770-4) -------------------------------------------------------------------

def _fft_len(n: int) -> int:
    """The smallest 2^a * 3^b >= n: zero-padded FFTs of that length are the fastest."""
    best = 1 << max(0, (n - 1).bit_length())
    three = 1
    while three < best:
        two = three
        while two < n:
            two *= 2
        best, three = min(best, two), three * 3
    return best


@lru_cache(maxsize=16)
def _k_weights(n: int, m: int, rate: int) -> npt.NDArray[np.float32]:
    """Per-bin weights for an n-sample block zero-padded to an m-point rfft.

    |K(f)|^2 at each bin, times Parseval's factors: the mean square of the block is
    sum(c_k |X_k|^2) / (m n), with c_k = 2 except at DC and (m even) Nyquist.
    """
    k = math.tan(math.pi * 1681.974450955533 / rate)  # the high shelf (head effects)
    q = 0.7071752369554196
    vh = 10 ** (3.999843853973347 / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf_b = ((vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0,
               (vh - vb * k / q + k * k) / a0)
    shelf_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    k = math.tan(math.pi * 38.13547087602444 / rate)  # the high-pass (RLB)
    q = 0.5003270373238773
    a0 = 1 + k / q + k * k
    hp_b = (1.0, -2.0, 1.0)
    hp_a = (1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0)
    z = np.exp(-1j * 2 * np.pi * np.arange(m // 2 + 1) / m)  # z^-1 at each bin

    def power(b: tuple[float, float, float], a: tuple[float, float, float]
              ) -> npt.NDArray[np.float64]:
        num = b[0] + b[1] * z + b[2] * z * z
        den = a[0] + a[1] * z + a[2] * z * z
        return np.asarray(np.abs(num / den) ** 2, dtype=np.float64)

    w = power(shelf_b, shelf_a) * power(hp_b, hp_a) * 2
    w[0] /= 2
    if m % 2 == 0:
        w[-1] /= 2
    return np.asarray(w / (m * n), dtype=np.float32)


def _subblock_power(x: Samples, rate: int) -> npt.NDArray[np.float64]:
    """K-weighted mean square of each whole 100 ms sub-block."""
    n = max(1, round(rate / 10))
    count = len(x) // n
    out = np.empty(count, dtype=np.float64)
    m = _fft_len(n)
    pairs = np.repeat(_k_weights(n, m, rate), 2)  # one weight for each re and im
    rows = max(1, (1 << 21) // n)  # ~2 M samples per FFT batch
    for i in range(0, count, rows):
        j = min(count, i + rows)
        spec = np.fft.rfft(x[i * n:j * n].reshape(j - i, n), n=m, axis=1)
        parts = spec.astype(np.complex64, copy=False).view(np.float32)  # numpy 2: no copy
        out[i:j] = (parts * parts) @ pairs  # re^2 + im^2, weighted, summed
    return out


def integrated_lufs(x: Samples, rate: int) -> float:
    """EBU R128 integrated loudness (LUFS) of a mono signal; -inf if all of it is gated out."""
    p = _subblock_power(x, rate)
    if len(p) == 0:
        return -math.inf
    if len(p) < 4:  # shorter than one 400 ms block: the mean over what there is
        blocks = np.array([p.mean()])
    else:
        c = np.concatenate(([0.0], np.cumsum(p)))
        blocks = (c[4:] - c[:-4]) / 4
    with np.errstate(divide="ignore"):
        loud = -0.691 + 10 * np.log10(blocks)
    gated = blocks[loud > -70.0]
    if len(gated) == 0:
        return -math.inf
    relative = -0.691 + 10 * math.log10(float(gated.mean())) - 10
    gated = blocks[(loud > -70.0) & (loud > relative)]
    return -0.691 + 10 * math.log10(float(gated.mean()))


def peak_dbfs(x: Samples) -> float:
    peak = float(np.abs(x).max()) if len(x) else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


# --- Level, trimming, chime -----------------------------------------------------------------

def _sliding_min(a: Samples, h: int) -> Samples:
    """Minimum over [i-h, i+h] for each i (van Herk / Gil-Werman, ones beyond the ends)."""
    w = 2 * h + 1
    total = -(-(len(a) + 2 * h) // w) * w
    padded = np.ones(total, dtype=np.float32)
    padded[h:h + len(a)] = a
    blocks = padded.reshape(-1, w)
    prefix = np.minimum.accumulate(blocks, axis=1).ravel()
    suffix = np.minimum.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    return np.minimum(suffix[:len(a)], prefix[w - 1:w - 1 + len(a)])


def _moving_mean(a: Samples, h: int) -> Samples:
    """Mean over [i-h, i+h] for each i (ones beyond the ends)."""
    padded = np.concatenate((np.ones(h), a.astype(np.float64), np.ones(h)))
    c = np.concatenate(([0.0], np.cumsum(padded)))
    w = 2 * h + 1
    return np.asarray((c[w:] - c[:-w]) / w, dtype=np.float32)


def limit_peaks(x: Samples, rate: int, ceiling_dbfs: float = PEAK_CEILING_DBFS) -> Samples:
    """x with every sample peak at or below the ceiling, gain changes smoothed over ±10 ms."""
    ceiling = np.float32(10 ** (ceiling_dbfs / 20))
    over = np.abs(x) > ceiling
    if not over.any():
        return x
    h = max(1, round(rate * LIMITER_MS / 1000))
    out = x.copy()
    chunk = 1 << 20
    for start in range(0, len(x), chunk):
        stop = min(len(x), start + chunk)
        lo, hi = max(0, start - 2 * h), min(len(x), stop + 2 * h)
        if not over[lo:hi].any():
            continue
        seg = x[lo:hi]
        need = np.minimum(np.float32(1), ceiling / np.maximum(np.abs(seg), np.float32(1e-9)))
        gain = _moving_mean(_sliding_min(need, h), h)
        out[start:stop] = seg[start - lo:stop - lo] * gain[start - lo:stop - lo]
    np.clip(out, -ceiling, ceiling, out=out)
    return out


def to_target(x: Samples, rate: int, source_lufs: float) -> tuple[Samples, float, bool]:
    """Gain to TARGET_LUFS, peaks limited; (result, gain in dB, limited)."""
    gain_db = TARGET_LUFS - source_lufs
    first_gain = gain_db
    limited = False
    for _ in range(4):
        y = x * np.float32(10 ** (gain_db / 20))
        if peak_dbfs(y) <= PEAK_CEILING_DBFS:
            return y, first_gain, limited
        y, limited = limit_peaks(y, rate), True
        shortfall = TARGET_LUFS - integrated_lufs(y, rate)
        if abs(shortfall) <= LOUDNESS_TOLERANCE_LU:
            break
        gain_db += shortfall
    return y, first_gain, limited


def trim_silence(x: Samples, rate: int, source_lufs: float) -> tuple[int, int]:
    """(start, stop) sample indices of x without its leading and trailing silence."""
    frame = max(1, rate // 100)
    count = len(x) // frame
    if count == 0:
        return 0, len(x)
    frames = x[:count * frame].reshape(count, frame)
    ms = np.einsum("ij,ij->i", frames, frames, dtype=np.float64) / frame
    threshold_db = max(source_lufs - SILENCE_BELOW_LU, SILENCE_FLOOR_DBFS)
    loud = np.flatnonzero(ms > 10 ** (threshold_db / 10))
    if len(loud) == 0:
        return 0, len(x)
    pad = round(rate * TRIM_PADDING_MS / 1000)
    start = max(0, int(loud[0]) * frame - pad)
    stop = min(len(x), (int(loud[-1]) + 1) * frame + pad)
    if len(x) - stop < frame:  # the partial last frame is not silence we can vouch for
        stop = len(x)
    return start, stop


def make_chime(rate: int, *, rising: bool = False) -> Samples:
    """A ~1.5 s three-note bell (G5 E5 C5, or rising), at TARGET_LUFS."""
    notes = (523.25, 659.26, 783.99) if rising else (783.99, 659.26, 523.25)
    n = round(1.5 * rate)
    t = np.arange(n, dtype=np.float64) / rate
    out = np.zeros(n, dtype=np.float64)
    for i, freq in enumerate(notes):
        onset = 0.42 * i
        tt = t[t >= onset] - onset
        tone = (np.sin(2 * np.pi * freq * tt) + 0.3 * np.sin(2 * np.pi * 2 * freq * tt)
                + 0.1 * np.sin(2 * np.pi * 3 * freq * tt))
        envelope = np.exp(-tt / 0.45) * np.minimum(1.0, tt / 0.004)
        out[n - len(tt):] += tone * envelope
    fade = round(0.1 * rate)
    out[-fade:] *= np.linspace(1.0, 0.0, fade)
    x = out.astype(np.float32)
    x = (x * np.float32(10 ** ((TARGET_LUFS - integrated_lufs(x, rate)) / 20))).astype(np.float32)
    return limit_peaks(x, rate)
