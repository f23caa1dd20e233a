"""Quality maps: a quality for every 64 x 64 block of a frame, so the bits go where the objects are.

The gain units (Cui et al., "Asymmetric Gained Deep Image Compression With
Continuous Rate Adaptation", CVPR 2021) scale the latent by one gain vector per
quality, interpolated between the trained levels. A quality map gives each block
of 4 x 4 latent positions its own quality and so its own gains: the encoder
multiplies each position by its block's gains, the decoder by the matching
inverse gains, and the entropy coding in between is unchanged (region-adaptive
quantisation as in Song et al., "Variable-Rate Deep Image Compression through
Spatially-Adaptive Feature Transform", ICCV 2021, with the gains as the
modulation).

A map travels in its frame's payload as offsets from the frame's quality in
quarter steps, one per block: the distinct offsets, then each block's index
among them, rANS-coded (a handful of bytes). A frame with no map has no string
for it and is coded as before.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import FormatError
from .blocks import BLOCK
from .entropy import decode_symbols, encode_symbols
from .models import QUALITY_MAX, QUALITY_MIN, check_quality, quality_lambda
from .payload import INTRA_EXACT, PREDICTED_VERSIONS, Payload, unpack

#: Offsets are whole multiples of this many quality steps.
STEP = 0.25
#: Most distinct offsets one map may hold.
MAX_LEVELS = 64


class QualityMap:
    """A frame's quality: ``base`` everywhere, or ``base`` plus an offset per block.

    Args:
        base: the frame's quality (taken as float32: what a payload stores, and so what both sides use).
        offsets: int8 [hb, wb], quarter steps per block (None or all zero: uniform).
    """

    def __init__(self, base: float, offsets: np.ndarray | None = None):
        self.base = float(np.float32(base))
        if offsets is not None and not np.any(offsets):
            offsets = None
        self.offsets = None if offsets is None else np.asarray(offsets, dtype=np.int8)
        # A frame's map is asked for its gains by the analysis, the block decisions, the synthesis and the
        # next frame's reference rescaling: computed once per model and latent shape.
        self._gains: dict = {}

    @property
    def uniform(self) -> bool:
        return self.offsets is None

    def qualities(self, grid: tuple[int, int], dtype=torch.float32) -> torch.Tensor:
        """Each block's quality, [hb, wb], within the trained range; in float32 (what payload version 4
        computed them in) or float64 (exact: the base is a float32 and offsets are quarter steps)."""
        if self.offsets is None:
            return torch.full(grid, self.base, dtype=dtype)
        if self.offsets.shape != tuple(grid):
            raise ValueError(f"quality map of {self.offsets.shape} blocks for a frame of {tuple(grid)}")
        q = torch.tensor(self.base, dtype=dtype) + torch.from_numpy(self.offsets).to(dtype) * STEP
        return q.clamp(QUALITY_MIN, QUALITY_MAX)

    def gains(self, model, shape: tuple[int, int], rule: str = "exact") -> tuple[torch.Tensor, torch.Tensor]:
        """Gain and inverse gain (float64, the same bits on every machine; ``rule``:
        :meth:`~.models.GainedMeanScaleHyperprior.coding_gains`): [1, M, 1, 1] for a uniform quality
        (what a frame without a map uses), else per latent position [1, M, h, w] (``shape``: the latent's)."""
        key = (id(model), None if self.offsets is None else tuple(shape), rule)
        if key not in self._gains:
            if self.offsets is None:
                self._gains[key] = model.coding_gains([self.base], rule)
            else:
                self._gains[key] = self._spread_gains(model, shape, rule)
        return self._gains[key]

    def _spread_gains(self, model, shape: tuple[int, int], rule: str) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.qualities(self.offsets.shape, torch.float32 if rule == "f32" else torch.float64)
        levels, where = torch.unique(q, return_inverse=True)
        g, ig = model.coding_gains(levels.numpy(), rule)  # [k, M, 1, 1]: a uniform quality's arithmetic

        def spread(t):
            per_block = t[:, :, 0, 0][where].permute(2, 0, 1)[None]  # [1, M, hb, wb]
            return F.interpolate(per_block, scale_factor=BLOCK, mode="nearest")[..., : shape[0], : shape[1]]

        return spread(g), spread(ig)

    def lambdas(self, grid: tuple[int, int]) -> torch.Tensor | float:
        """The rate-distortion trade-off of each block's quality (a number when uniform)."""
        if self.offsets is None:
            return quality_lambda(self.base)
        q = self.qualities(grid).double()
        return torch.tensor([quality_lambda(float(v)) for v in q.reshape(-1)], dtype=torch.float64).reshape(grid)

    def raised(self, grid: tuple[int, int]) -> torch.Tensor:
        """Blocks above the map's lowest quality (the objects and their margins), [hb, wb] bool."""
        if self.offsets is None:
            return torch.zeros(grid, dtype=torch.bool)
        return torch.from_numpy(self.offsets > self.offsets.min())

    def same(self, other: "QualityMap | None") -> bool:
        if other is None or other.base != self.base:
            return False
        if self.offsets is None or other.offsets is None:
            return self.offsets is None and other.offsets is None
        return self.offsets.shape == other.offsets.shape and bool(np.array_equal(self.offsets, other.offsets))

    def to_bytes(self) -> bytes:
        """The offsets as a payload string (only for a map: a uniform frame carries none)."""
        assert self.offsets is not None
        levels = np.unique(self.offsets)
        index = np.searchsorted(levels, self.offsets).reshape(-1)
        return bytes([len(levels)]) + levels.astype(np.int8).tobytes() + encode_symbols(index, len(levels))

    @classmethod
    def from_bytes(cls, base: float, data: bytes, grid: tuple[int, int]) -> "QualityMap":
        """The map a payload string holds, for a frame of ``grid`` blocks; FormatError if it cannot be one."""
        if not data or not 1 <= data[0] <= MAX_LEVELS or len(data) < 1 + data[0]:
            raise FormatError("frame payload's quality map is invalid")
        k = data[0]
        levels = np.frombuffer(data[1 : 1 + k], dtype=np.int8)
        if k > 1 and not np.all(np.diff(levels.astype(np.int16)) > 0):
            raise FormatError("frame payload's quality map is invalid")
        index = decode_symbols(data[1 + k :], grid[0] * grid[1], k)
        return cls(base, levels[index].reshape(grid))

    def __repr__(self) -> str:
        if self.offsets is None:
            return f"QualityMap({self.base:g})"
        return f"QualityMap({self.base:g}, offsets {sorted(set(self.offsets.reshape(-1).tolist()))} x {STEP})"


def offsets_from_steps(steps: np.ndarray) -> np.ndarray:
    """Quality steps per block (floats) as the int8 quarter-step offsets a map stores."""
    return np.clip(np.round(np.asarray(steps, dtype=np.float64) / STEP), -127, 127).astype(np.int8)


#: Strings of a payload without and with a quality map.
_STRINGS = {INTRA_EXACT: (2, 3), **{v: (s, s + 1) for v, s in zip(PREDICTED_VERSIONS, (6, 7, 7, 7, 9))}}


def has_map(data: bytes) -> bool:
    """Whether a frame payload carries a quality map (without a model)."""
    p = unpack(data)
    return p.version in _STRINGS and len(p.strings) == _STRINGS[p.version][1]


def payload_quality(p: Payload) -> QualityMap:
    """The quality of an intra-exact or predicted payload: its number, and its map when it carries one."""
    q = check_quality(p.quality)
    plain, mapped = _STRINGS[p.version]
    if len(p.strings) not in (plain, mapped):
        raise FormatError(f"{'intra' if p.version == INTRA_EXACT else 'predicted'} payload has the wrong "
                          f"number of strings")
    if len(p.strings) == plain:
        return QualityMap(q)
    return QualityMap.from_bytes(q, p.strings[-1], p.latent_hw)
