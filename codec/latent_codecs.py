"""How the bits of an exact frame payload are written and read, version by version.

This module is the one place that says what each string of an intra-exact or
predicted payload (:mod:`.payload`) holds, in which order a decoder reads them,
and with which arithmetic it computes everything that decides how it reads them
(docs/FORMAT.md gives the same per field). A decoder on any machine must
compute, before it reads a symbol, exactly what the encoder computed: the
entropy tables' indexes and means come from fixed-point nets
(:mod:`.fixed_point`), and those nets' inputs (the reference latents) from
integer symbols, exact means and gains built from basic operations
(:mod:`.exact`). Nothing here calls a transcendental function of a math library.

Versions (strings in order; a quality map, :mod:`.quality_map`, may follow the last):

* 3, intra-exact: ``y`` symbols, hyper latent ``z``. Means exact (fixed point):
  the latent ``symbols + means`` can be a reference.
* 4, predicted with float32 gains: block modes, the coded difference's symbols,
  its hyper latent, background updates, the intra hyper latent of blocks coded
  alone, their symbols. A quality change rescales the references by the ratio of
  float32 gains (:mod:`.legacy` computes them as they were written).
* 5, predicted: version 4's six strings, then the 32-bit check value
  (:func:`.exact.check_value`) of the previous-frame and background latents the
  frame leaves. A quality change rescales the references by the ratio of exact
  float64 gains (:func:`.exact.gains`) and rounds them onto the 2**-16 grid
  (:func:`.exact.to_grid`).

Block modes (one per 64 x 64 block, :mod:`.blocks`): copy the previous frame's
latent, code the difference from it, copy the background's, code the difference
from it, code the block alone with the intra model's entropy model.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from ..errors import FormatError
from . import exact
from .blocks import BLOCK, block_mask
from .conditional import ConditionalEntropyModel, ExactConditional
from .entropy import decode_symbols, encode_symbols
from .fixed_point import exact_in_blocks
from .payload import INTRA_EXACT, PREDICTED, PREDICTED_F32_GAINS, Payload, pack, unpack
from .quality_map import QualityMap, payload_quality

SKIP_PREV, CODE_PREV, SKIP_BG, CODE_BG, INTRA = 0, 1, 2, 3, 4
MODES = 5

#: Indexes of a predicted payload's strings.
S_MODES, S_DIFF, S_DIFF_Z, S_UPDATES, S_ALONE_Z, S_ALONE_Y, S_CHECK = range(7)
#: The gains each predicted version rescales its references with
#: (:meth:`~.models.GainedMeanScaleHyperprior.coding_gains`).
GAIN_RULES = {PREDICTED_F32_GAINS: "f32", PREDICTED: "exact"}


class DivergenceError(FormatError):
    """A predicted frame's check value does not match the latents its decoder computed: this decoder's
    state differs from the encoder's, and every frame until the next intra frame would be garbage."""


def rescaled(refs: tuple[torch.Tensor, ...], old: QualityMap, new: QualityMap, model,
             version: int) -> tuple[torch.Tensor, ...]:
    """Reference latents coded at quality ``old`` brought to quality ``new`` (per position with maps) by
    the ratio of their gains, under the rule of payload ``version``."""
    rule = GAIN_RULES[version]
    shape = refs[0].shape[-2:]
    ratio = new.gains(model, shape, rule)[0] / old.gains(model, shape, rule)[0]
    if version == PREDICTED_F32_GAINS:
        return tuple(r * ratio for r in refs)
    return tuple(torch.from_numpy(exact.to_grid((r * ratio).numpy())) for r in refs)


# -- intra-exact frames (version 3) -------------------------------------------------------------------------

def code_intra_exact(model, y: torch.Tensor, qm: QualityMap, h: int, w: int) -> tuple[bytes, torch.Tensor]:
    """An intra frame whose latent (exact float64, means included) can be a reference; its quality map,
    when it has one, in a third string."""
    z = model.h_a(y)
    z_strings = model.entropy_bottleneck.compress(z)
    zhw = tuple(z.shape[-2:])
    z_hat = model.entropy_bottleneck.decompress(z_strings, zhw)
    scales, means = model.hyper_synthesis(z_hat, exact=True, exact_means=True)
    coder = model.latent_coder()
    symbols = torch.round(y.double() - means)
    y_string = coder.encode_indexed(symbols.to(torch.int32), coder.indexes(scales))
    strings = [y_string, z_strings[0]] + ([] if qm.uniform else [qm.to_bytes()])
    return pack(w, h, qm.base, zhw, strings, INTRA_EXACT), symbols + means


def decode_intra_exact(model, p: Payload) -> torch.Tensor:
    """The exact latent of an intra payload whose strings :func:`.quality_map.payload_quality` checked."""
    try:
        symbols, means = model.decode_symbols(p.strings[:2], p.latent_hw, exact=True, exact_means=True)
    except OverflowError:
        raise FormatError("frame payload's hyper latent is out of range (damaged data?)") from None
    return symbols.double() + means


# -- predicted frames (versions 4 and 5) --------------------------------------------------------------------

class IntraBlocks:
    """The intra model's entropy model of a frame: for blocks coded alone in a predicted frame. The
    encoder's decision reads the float hyper-synthesis (a guess, fast); what is coded and decoded reads
    the exact one."""

    def __init__(self, z_string: bytes, z_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor):
        self.z_string, self.z_hat, self.scales, self.means = z_string, z_hat, scales, means

    @classmethod
    def measure(cls, model, y64: torch.Tensor) -> IntraBlocks:
        z = model.h_a(y64.float())
        z_string = model.entropy_bottleneck.compress(z)[0]
        z_hat = model.entropy_bottleneck.decompress([z_string], tuple(z.shape[-2:]))
        scales, means = model.hyper_synthesis(z_hat, exact=False)
        return cls(z_string, z_hat, scales, means)

    @classmethod
    def decode(cls, model, z_string: bytes, needed: np.ndarray) -> IntraBlocks:
        return cls.exact(model, z_string, model.entropy_bottleneck.decompress([z_string], needed.shape), needed)

    @classmethod
    def exact(cls, model, z_string: bytes, z_hat: torch.Tensor, needed: np.ndarray) -> IntraBlocks:
        """Exact scales and means at the blocks ``needed`` marks (zeros elsewhere)."""
        net = model.exact_hyper_synthesis()
        try:
            scales, means = exact_in_blocks(needed, lambda window: net(z_hat, exact_means=True, window=window),
                                            net.windowed)
        except OverflowError:
            raise FormatError("frame payload's hyper latent is out of range (damaged data?)") from None
        return cls(z_string, z_hat, scales, means)


def conditional_in_blocks(exact_model: ExactConditional, needed: np.ndarray, z_hat: torch.Tensor,
                          ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditional model's exact table indexes and means at the blocks ``needed`` marks."""
    return exact_in_blocks(needed, lambda window: exact_model(z_hat, ref, window=window), exact_model.windowed)


class BlockMaps:
    """A predicted frame's block modes, named once: which reference each block reads, which are coded
    against it, which are coded alone."""

    def __init__(self, modes: torch.Tensor, shape: tuple[int, int]):
        self.modes = modes
        self.from_bg = (modes == SKIP_BG) | (modes == CODE_BG)
        self.coded = (modes == CODE_PREV) | (modes == CODE_BG)
        self.fresh = modes == INTRA
        self.shape = shape

    def reference(self, prev: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
        return torch.where(block_mask(self.from_bg, self.shape), bg, prev)

    def mask(self, blocks: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return block_mask(blocks, self.shape).expand_as(like)


def background_after(y_hat: torch.Tensor, bg: torch.Tensor, updates: np.ndarray) -> torch.Tensor:
    """The background latent after a predicted frame: its blocks flagged in ``updates`` take ``y_hat``."""
    return torch.where(block_mask(torch.from_numpy(updates), y_hat.shape[-2:]), y_hat, bg)


def code_predicted(model, cond: ConditionalEntropyModel, y64: torch.Tensor, qm: QualityMap, h: int, w: int,
                   prev: torch.Tensor, bg: torch.Tensor, modes: torch.Tensor, bg_updates: np.ndarray,
                   alone: IntraBlocks | None) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """A predicted frame (version 5) against references already at ``qm``'s quality: the payload, and
    the previous-frame and background latents it leaves (what the decoder will hold)."""
    H, W = y64.shape[-2:]
    maps = BlockMaps(modes, (H, W))
    ref = maps.reference(prev, bg)
    strings = [encode_symbols(modes.numpy(), MODES), b"", b"", encode_symbols(bg_updates.astype(np.int64), 2),
               b"", b""]
    y_hat = ref.clone()
    fresh = maps.mask(maps.fresh, ref)
    if fresh.any():
        alone = IntraBlocks.exact(model, alone.z_string, alone.z_hat, maps.fresh.numpy())
        means = alone.means[fresh]
        sym = torch.round(y64[fresh] - means)
        coder = model.latent_coder()
        strings[S_ALONE_Z] = alone.z_string
        strings[S_ALONE_Y] = coder.encode_indexed(sym.to(torch.int32), coder.indexes(alone.scales[fresh]))
        y_hat[fresh] = sym + means
    coded = maps.mask(maps.coded, ref)
    if coded.any():
        diff = torch.where(coded, y64 - ref, torch.zeros_like(ref))
        z = cond.h_a(diff.float())
        z_strings = cond.entropy_bottleneck.compress(z)
        z_hat = cond.entropy_bottleneck.decompress(z_strings, tuple(z.shape[-2:]))
        indexes, mu = conditional_in_blocks(cond.exact(), maps.coded.numpy(), z_hat, ref)
        sym = torch.round(diff - mu)
        strings[S_DIFF] = model.latent_coder().encode_indexed(sym[coded].to(torch.int32), indexes[coded])
        strings[S_DIFF_Z] = z_strings[0]
        y_hat[coded] = (ref + mu + sym)[coded]
    bg_after = background_after(y_hat, bg, bg_updates)
    strings.append(struct.pack("<I", exact.check_value(y_hat, bg_after)))
    if not qm.uniform:
        strings.append(qm.to_bytes())
    return pack(w, h, qm.base, (H // BLOCK, W // BLOCK), strings, PREDICTED), y_hat, bg_after


def decode_predicted(model, cond: ConditionalEntropyModel, exact_model: ExactConditional, p: Payload,
                     prev: torch.Tensor, bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The previous-frame and background latents a predicted payload leaves, from references already at
    its quality (:func:`rescaled`), and its block modes. Raises :class:`DivergenceError` when a version 5
    frame's check value differs from what was computed."""
    H, W = prev.shape[-2:]
    grid = (H // BLOCK, W // BLOCK)
    if p.latent_hw != grid:
        raise FormatError("predicted frame's size does not match its reference")
    try:
        modes = torch.from_numpy(decode_symbols(p.strings[S_MODES], grid[0] * grid[1], MODES).reshape(grid))
        upd = decode_symbols(p.strings[S_UPDATES], grid[0] * grid[1], 2).reshape(grid).astype(bool)
    except ValueError as exc:
        raise FormatError(f"predicted payload: {exc}") from None
    maps = BlockMaps(modes, (H, W))
    ref = maps.reference(prev, bg)
    y_hat = ref.clone()
    fresh = maps.mask(maps.fresh, ref)
    if fresh.any():
        if not (p.strings[S_ALONE_Z] and p.strings[S_ALONE_Y]):
            raise FormatError("predicted payload codes blocks alone but carries no symbols for them")
        alone = IntraBlocks.decode(model, p.strings[S_ALONE_Z], maps.fresh.numpy())
        coder = model.latent_coder()
        sym = coder.decode_indexed(p.strings[S_ALONE_Y], coder.indexes(alone.scales[fresh]))
        y_hat[fresh] = sym.double() + alone.means[fresh]
    coded = maps.mask(maps.coded, ref)
    if coded.any():
        if not (p.strings[S_DIFF] and p.strings[S_DIFF_Z]):
            raise FormatError("predicted payload codes blocks but carries no difference")
        z_hat = cond.entropy_bottleneck.decompress([p.strings[S_DIFF_Z]], ((H + 3) // 4, (W + 3) // 4))
        indexes, mu = conditional_in_blocks(exact_model, maps.coded.numpy(), z_hat, ref)
        sym = model.latent_coder().decode_indexed(p.strings[S_DIFF], indexes[coded])
        y_hat[coded] = ref[coded] + mu[coded] + sym.double()
    bg_after = background_after(y_hat, bg, upd)
    if p.version == PREDICTED:
        check = p.strings[S_CHECK]
        if len(check) != 4:
            raise FormatError("predicted payload's check value is not 4 bytes")
        if struct.unpack("<I", check)[0] != exact.check_value(y_hat, bg_after):
            raise DivergenceError("its decoded latents differ from the encoder's (check value mismatch): the "
                                  "references it was decoded from are not the ones it was coded against")
    return y_hat, bg_after, modes


def block_modes(data: bytes) -> np.ndarray | None:
    """The block modes of a predicted frame's payload (None for a frame coded alone), without a model."""
    p = unpack(data)
    if p.version not in GAIN_RULES:
        return None
    payload_quality(p)
    try:
        return decode_symbols(p.strings[S_MODES], p.latent_hw[0] * p.latent_hw[1], MODES).reshape(p.latent_hw)
    except ValueError as exc:
        raise FormatError(f"predicted payload: {exc}") from None
