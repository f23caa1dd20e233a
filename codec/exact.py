"""Arithmetic that decides how bits are read: basic IEEE operations only, the same on every machine.

IEEE 754 rounds ``+``, ``-``, ``*``, ``/`` and ``sqrt`` correctly, so a fixed
sequence of them gives the same bits on any processor, in any SIMD width and
with any thread count. ``exp``, ``log`` and ``pow`` carry no such promise: torch
sends a float32 ``exp`` to a vector-math library that picks its code path from
the processor's vendor and instruction set, and the last bit it returns differs
between machines. A gain that differs in its last bit rescales a reference
latent that differs in its last bit, whose fixed-point form then differs by one,
which selects another entropy table: the rANS decoder desynchronises.

So everything a decoder computes before it reads bits is built here from basic
operations on float64 (numpy ufuncs, one operation at a time: nothing a
compiler could contract into a fused multiply-add):

* :func:`exp` is range reduction by ``ln 2`` (split in two parts, as in fdlibm)
  and a Taylor polynomial by Horner's rule, then an exact power-of-two scaling;
  a few ulp of float64 from the true value, and the same few ulp everywhere.
* :func:`gains` interpolates the trained log-gains between quality levels and
  takes :func:`exp` of them.
* :func:`check_value` is a 32-bit CRC of a latent's float64 bytes: what a
  predicted frame carries so that a decoder whose state differs stops instead of
  showing garbage.
"""

from __future__ import annotations

import zlib

import numpy as np

# fdlibm's split of ln 2: LN2_HI has 32 trailing zero bits, so k * LN2_HI is exact for |k| < 2**20.
LN2_HI = 6.93147180369123816490e-01
LN2_LO = 1.90821492927058770002e-10
INV_LN2 = 1.44269504088896338700e00
#: 1/n! for the Taylor polynomial of exp on [-ln2/2, ln2/2]: the first omitted term is below 2**-60.
_TAYLOR = [1.0]
for _n in range(1, 15):
    _TAYLOR.append(_TAYLOR[-1] / _n)
_TAYLOR = tuple(_TAYLOR)
#: Arguments of :func:`exp` are checked to lie in this range (gains are a few units of log at most).
EXP_RANGE = 700.0


def exp(x) -> np.ndarray:
    """``e**x`` in float64 from basic operations only: bit for bit the same on every machine."""
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.abs(x) <= EXP_RANGE):
        raise ValueError(f"exact exp takes arguments within +-{EXP_RANGE:g}")
    k = np.rint(np.multiply(x, INV_LN2))
    r = np.subtract(np.subtract(x, np.multiply(k, LN2_HI)), np.multiply(k, LN2_LO))
    p = np.full_like(r, _TAYLOR[-1])
    for c in _TAYLOR[-2::-1]:
        p = np.add(np.multiply(p, r), c)
    return np.ldexp(p, k.astype(np.int64))


def interpolate_levels(table: np.ndarray, qualities, dtype=np.float64) -> np.ndarray:
    """Rows of ``table`` ([levels, M], one per trained quality level 1..levels) interpolated linearly at
    ``qualities`` (clamped to the trained range), in ``dtype``'s basic arithmetic: [len(qualities), M]."""
    table = np.asarray(table, dtype=dtype)
    levels = table.shape[0]
    q = np.asarray(qualities, dtype=dtype).reshape(-1)
    t = np.clip(np.subtract(q, dtype(1.0)), dtype(0.0), dtype(levels - 1))
    lo = np.minimum(np.floor(t), dtype(levels - 2)).astype(np.int64)
    frac = np.subtract(t, lo.astype(dtype))[:, None]
    return np.add(np.multiply(np.subtract(dtype(1.0), frac), table[lo]), np.multiply(frac, table[lo + 1]))


def gains(log_gain: np.ndarray, log_inv_gain: np.ndarray, qualities) -> tuple[np.ndarray, np.ndarray]:
    """Gains and inverse gains (float64, [len(qualities), M]) at ``qualities``: the trained log-gains
    interpolated in float64, then :func:`exp`. The rule of streams written from this version on."""
    return exp(interpolate_levels(log_gain, qualities)), exp(interpolate_levels(log_inv_gain, qualities))


#: References live on this fixed-point grid (2**-GRID_BITS): a rescaled reference is rounded onto it.
GRID_BITS = 16


def to_grid(x: np.ndarray) -> np.ndarray:
    """``x`` rounded to the nearest multiple of 2**-GRID_BITS (ties to even), in float64."""
    return np.ldexp(np.rint(np.ldexp(np.asarray(x, dtype=np.float64), GRID_BITS)), -GRID_BITS)


def check_value(*latents) -> int:
    """A 32-bit check value (CRC-32) of exact latents' float64 bytes in C order."""
    crc = 0
    for t in latents:
        a = np.ascontiguousarray(t.numpy() if hasattr(t, "numpy") else t, dtype=np.float64)
        crc = zlib.crc32(a.data, crc)
    return crc & 0xFFFFFFFF
