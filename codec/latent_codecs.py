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

* 6, predicted: version 5's strings with the block modes chosen per 64, 32 or 16
  pixels. Its first string holds, in one rANS stream (:class:`.entropy.SymbolWriter`),
  a quadtree's splits of each 64-pixel block, the splits of each split block's four
  32-pixel quarters, the mode of every leaf, and the background updates; its fourth
  string is empty. String lengths are varints (:mod:`.payload`).
* 7, predicted with motion: version 6's strings, its fourth holding the motion
  (:func:`write_motion`; empty: none). Each 64-pixel block that reads the
  previous frame's latent reads it moved by the block's vector, and every
  position that reads the background latent reads it moved by the frame's
  background vector (:mod:`.motion`, exact); the background the frame leaves is
  the moved one, so a camera that was bumped re-anchors it.
* 8: version 7's strings, then two more. With a conditional model with context
  (the stream's header names it) the coded difference is read in two
  checkerboard passes (:func:`~.conditional.anchors`): the second string holds
  the symbols at the anchors of coded positions, read with the first pass's
  parameters; the eighth those at the other coded positions, read with the
  second pass's, which see the first's decoded differences (zero where a
  position is not an anchor or not coded). With a model without context the
  second string holds them all and the eighth is empty. The ninth is the
  **picture shift** (empty: none; else dy, dx as signed bytes, pixels): the
  picture a frame decodes to is shown moved by it, so a camera that shook is
  coded aligned with the references and shown where it looked
  (:func:`picture_shift`).

Block modes (one per 64 x 64 block, :mod:`.blocks`, in versions 4 and 5; one per
leaf of a quadtree down to 16 x 16, a latent position, in versions 6 and 7): copy the
previous frame's latent, code the difference from it, copy the background's,
code the difference from it, code the block alone with the intra model's entropy
model.
"""

from __future__ import annotations

import struct

import numpy as np
import torch

from ..errors import FormatError
from . import exact
from .blocks import BLOCK, block_mask
from .conditional import ConditionalEntropyModel, ExactConditional, anchors
from .entropy import SymbolReader, SymbolWriter, decode_symbols
from .fixed_point import exact_in_blocks, inputs_read
from .motion import MAX_VECTOR, compensated, predictor, shifted
from .payload import (INTRA_EXACT, PREDICTED, PREDICTED_F32_GAINS, PREDICTED_MOTION, PREDICTED_QUADTREE,
                      PREDICTED_WHOLE_BLOCKS, Payload, pack, unpack)
from .quality_map import QualityMap, payload_quality

SKIP_PREV, CODE_PREV, SKIP_BG, CODE_BG, INTRA = 0, 1, 2, 3, 4
MODES = 5

#: Indexes of a predicted payload's strings.
S_MODES, S_DIFF, S_DIFF_Z, S_UPDATES, S_ALONE_Z, S_ALONE_Y, S_CHECK, S_DIFF_SECOND, S_SHIFT = range(9)
#: The largest picture shift a frame may carry, in pixels per axis.
MAX_SHIFT = 64
#: Version 7's motion, in the string versions 4 and 5 held their background updates in.
S_MOTION = S_UPDATES
#: The gains each predicted version rescales its references with
#: (:meth:`~.models.GainedMeanScaleHyperprior.coding_gains`).
GAIN_RULES = {PREDICTED_F32_GAINS: "f32", PREDICTED_WHOLE_BLOCKS: "exact", PREDICTED_QUADTREE: "exact",
              PREDICTED_MOTION: "exact", PREDICTED: "exact"}
#: Versions that carry a check value of the latents they leave.
CHECKED = (PREDICTED_WHOLE_BLOCKS, PREDICTED_QUADTREE, PREDICTED_MOTION, PREDICTED)
#: Versions whose modes are a quadtree and whose hyper latents are sent only where read.
QUADTREE = (PREDICTED_QUADTREE, PREDICTED_MOTION, PREDICTED)
#: Versions that carry motion.
MOVED = (PREDICTED_MOTION, PREDICTED)
#: The quarters of a 64-pixel block (and of a 32-pixel one) in the order a quadtree lists them, in latent
#: positions from its corner.
_QUARTERS = ((0, 0), (0, 2), (2, 0), (2, 2))


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

    def __init__(self, z_string: bytes, z_hat: torch.Tensor, scales: torch.Tensor, means: torch.Tensor,
                 z: torch.Tensor | None = None):
        self.z_string, self.z_hat, self.scales, self.means, self.z = z_string, z_hat, scales, means, z

    @classmethod
    def measure(cls, model, y64: torch.Tensor) -> IntraBlocks:
        """The float estimate, its hyper latent coded whole (what coding every block alone would send)."""
        z = model.h_a(y64.float())
        z_string = model.entropy_bottleneck.compress(z)[0]
        z_hat = model.entropy_bottleneck.decompress([z_string], tuple(z.shape[-2:]))
        scales, means = model.hyper_synthesis(z_hat, exact=False)
        return cls(z_string, z_hat, scales, means, z)

    @staticmethod
    def reads(model, needed: np.ndarray) -> np.ndarray:
        """The hyper latent's positions the blocks ``needed`` marks read (versions 6 and 7 send only those)."""
        net = model.exact_hyper_synthesis()
        return inputs_read(needed, lambda w: net.input_window(w, needed.shape), needed.shape, net.windowed)

    @classmethod
    def decode(cls, model, z_string: bytes, needed: np.ndarray, version: int = PREDICTED) -> IntraBlocks:
        if version in QUADTREE:
            z_hat = decode_hyper(model.entropy_bottleneck, z_string, cls.reads(model, needed))
        else:
            z_hat = model.entropy_bottleneck.decompress([z_string], needed.shape)
        return cls.exact(model, z_string, z_hat, needed)

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


def code_hyper(bottleneck, z: torch.Tensor, read: np.ndarray) -> tuple[bytes, torch.Tensor]:
    """A hyper latent sent at the positions ``read`` marks only (its bottleneck's model is the same at
    every position): the string, and the decoded hyper latent, zero where nothing reads it."""
    sel = torch.from_numpy(read)
    part = z[..., sel][..., None, :]  # [1, C, 1, K]
    string = bottleneck.compress(part)[0]
    return string, _scatter(bottleneck.decompress([string], (1, part.shape[-1])), sel, bottleneck.channels)


def decode_hyper(bottleneck, string: bytes, read: np.ndarray) -> torch.Tensor:
    """What :func:`code_hyper` sent, from the positions ``read`` marks (which the decoder knows from the
    block modes)."""
    sel = torch.from_numpy(read)
    return _scatter(bottleneck.decompress([string], (1, int(sel.sum()))), sel, bottleneck.channels)


def _scatter(part: torch.Tensor, sel: torch.Tensor, channels: int) -> torch.Tensor:
    if part.shape[1] != channels:
        raise FormatError("hyper latent has the wrong number of channels")
    out = part.new_zeros(1, channels, *sel.shape)
    out[..., sel] = part[:, :, 0, :]
    return out


def conditional_in_blocks(exact_model: ExactConditional, needed: np.ndarray, z_hat: torch.Tensor,
                          ref: torch.Tensor, seen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditional model's exact table indexes and means at the blocks ``needed`` marks (with
    ``seen``, the second checkerboard pass's: :class:`~.conditional.ExactConditional`);
    :class:`FormatError` when a damaged hyper latent is out of the range they can be computed in."""
    try:
        return exact_in_blocks(needed, lambda window: exact_model(z_hat, ref, window=window, seen=seen),
                               exact_model.windowed)
    except OverflowError:
        raise FormatError("predicted payload's hyper latent is out of range (damaged data?)") from None


def coded_difference(exact_model: ExactConditional, needed: np.ndarray, z_hat: torch.Tensor, ref: torch.Tensor,
                     coded: torch.Tensor, symbols, two_pass: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The means and the integer symbols of the difference at the ``coded`` positions ([1, M, H, W] mask;
    zeros elsewhere), whose latent is ``ref + means + symbols`` (in that order: older versions' references
    are not on a grid where float64 sums are exact in any order): in one pass, or (``two_pass``: version 8
    with a model with context) in two checkerboard passes, the second seeing the first's decoded values.
    ``symbols(i, indexes, mu, where)`` gives pass ``i``'s integer symbols (float64) at the positions ``where``
    marks, from the table indexes and means there (full-size tensors): an encoder rounds them (and may
    zero some), a decoder reads them."""
    indexes, mu = conditional_in_blocks(exact_model, needed, z_hat, ref)
    means, sym = torch.zeros_like(ref), torch.zeros_like(ref)
    if not two_pass:
        means[coded], sym[coded] = mu[coded], symbols(0, indexes, mu, coded)
        return means, sym
    first = anchors(coded.shape[-2:])
    where = coded & first
    means[where], sym[where] = mu[where], symbols(0, indexes, mu, where)
    indexes, mu = conditional_in_blocks(exact_model, needed, z_hat, ref, seen=means + sym)
    where = coded & ~first
    means[where], sym[where] = mu[where], symbols(1, indexes, mu, where)
    return means, sym


def conditional_reads(exact_model: ExactConditional, needed: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The positions of the difference's hyper latent the blocks ``needed`` marks read."""
    return inputs_read(needed, lambda w: exact_model.hyper_window(w, size, needed.shape), needed.shape,
                       exact_model.windowed)


class BlockMaps:
    """A predicted frame's modes per latent position (16 x 16 pixels), named once: which reference each
    position reads, which are coded against it, which are coded alone."""

    def __init__(self, modes: torch.Tensor):
        self.modes = modes
        self.from_bg = (modes == SKIP_BG) | (modes == CODE_BG)
        self.coded = (modes == CODE_PREV) | (modes == CODE_BG)
        self.fresh = modes == INTRA

    def reference(self, prev: torch.Tensor, bg: torch.Tensor) -> torch.Tensor:
        return torch.where(self.from_bg[None, None], bg, prev)

    def mask(self, where: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return where[None, None].expand_as(like)

    @staticmethod
    def blocks(where: torch.Tensor) -> np.ndarray:
        """The 64-pixel blocks any of whose positions ``where`` marks: what the exact nets compute."""
        h, w = where.shape
        return where.reshape(h // BLOCK, BLOCK, w // BLOCK, BLOCK).any(3).any(1).numpy()


def per_position(block_modes: np.ndarray) -> np.ndarray:
    """A map per 64-pixel block as a map per latent position."""
    return np.repeat(np.repeat(block_modes, BLOCK, 0), BLOCK, 1)


def write_modes(modes: np.ndarray, updates: np.ndarray) -> bytes:
    """Version 6's first string: the quadtree of ``modes`` (per latent position; each leaf as large as its
    positions agree) and the background ``updates`` (per 64-pixel block)."""
    gh, gw = updates.shape
    s64, s32, leaves = [], [], []
    for r in range(gh):
        for c in range(gw):
            b = modes[r * BLOCK : (r + 1) * BLOCK, c * BLOCK : (c + 1) * BLOCK]
            if (b == b[0, 0]).all():
                s64.append(0)
                leaves.append(b[0, 0])
                continue
            s64.append(1)
            for qr, qc in _QUARTERS:
                q = b[qr : qr + 2, qc : qc + 2]
                if (q == q[0, 0]).all():
                    s32.append(0)
                    leaves.append(q[0, 0])
                else:
                    s32.append(1)
                    leaves.extend(q.reshape(-1))
    w = SymbolWriter()
    w.add(s64, 2)
    w.add(s32, 2)
    w.add(leaves, MODES)
    w.add(updates.astype(np.int64), 2)
    return w.finish()


def read_modes(data: bytes, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`write_modes` wrote: modes per latent position, updates per block; :class:`FormatError`
    for data that cannot hold them."""
    gh, gw = grid
    n = gh * gw
    r = SymbolReader(data, 22 * n)  # splits (5 a block at most), leaves (16), updates (1)
    s64 = r.read(n, 2)
    s32 = r.read(4 * int(s64.sum()), 2)
    leaves = r.read(n - int(s64.sum()) + len(s32) + 3 * int(s32.sum()), MODES)
    updates = r.read(n, 2).astype(bool)
    r.done()
    if s64.size != n or updates.size != n:
        raise FormatError("predicted payload holds no modes")
    modes = np.empty((gh * BLOCK, gw * BLOCK), dtype=np.int64)
    li = qi = 0
    for k in range(n):
        r0, c0 = (k // gw) * BLOCK, (k % gw) * BLOCK
        if not s64[k]:
            modes[r0 : r0 + BLOCK, c0 : c0 + BLOCK] = leaves[li]
            li += 1
            continue
        for qr, qc in _QUARTERS:
            if s32[qi]:
                modes[r0 + qr : r0 + qr + 2, c0 + qc : c0 + qc + 2] = leaves[li : li + 4].reshape(2, 2)
                li += 4
            else:
                modes[r0 + qr : r0 + qr + 2, c0 + qc : c0 + qc + 2] = leaves[li]
                li += 1
            qi += 1
    return modes, updates.reshape(grid)


#: A vector component's difference from its predictor lies in [-2 MAX_VECTOR, 2 MAX_VECTOR]; it is coded
#: under this fixed table (small differences likelier; sending a table this long would cost more than the
#: vectors), built from integers alone so both sides hold the same one.
_RESIDUALS = np.maximum(1, 255 >> np.minimum(np.abs(np.arange(-2 * MAX_VECTOR, 2 * MAX_VECTOR + 1)) // 2, 8)
                        ).astype(np.uint8)


class Motion:
    """A predicted frame's motion (version 7): ``vectors`` [blocks high, blocks wide, 2] (pixels, (dy, dx))
    by which each 64-pixel block reads the previous frame's latent, and ``background`` (dy, dx), by which
    every position reads the background latent."""

    def __init__(self, vectors: np.ndarray, background: tuple[int, int] = (0, 0)):
        self.vectors = np.asarray(vectors, dtype=np.int64)
        self.background = (int(background[0]), int(background[1]))
        if np.abs(self.vectors).max(initial=0) > MAX_VECTOR or max(map(abs, self.background)) > MAX_VECTOR:
            raise ValueError(f"motion vectors are at most {MAX_VECTOR} pixels a component")

    @classmethod
    def none(cls, grid: tuple[int, int]) -> Motion:
        return cls(np.zeros((*grid, 2), dtype=np.int64))

    @property
    def still(self) -> bool:
        return not self.vectors.any() and self.background == (0, 0)

    def references(self, prev: torch.Tensor, bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The previous-frame and background latents as the frame's blocks read them."""
        return compensated(prev, self.vectors), shifted(bg, *self.background)


def _readers(modes: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """The 64-pixel blocks any of whose positions read the previous frame's latent: those a vector is sent for."""
    m = np.asarray(modes)
    reads = (m == SKIP_PREV) | (m == CODE_PREV)
    return reads.reshape(grid[0], BLOCK, grid[1], BLOCK).any(3).any(1)


def write_motion(motion: Motion, modes: np.ndarray) -> bytes:
    """Version 7's fourth string (empty when nothing moves): the background vector, then, in raster order
    over the blocks that read the previous frame's latent, a flag for each whose vector differs from its
    predictor (:func:`.motion.predictor`; blocks that send none count as zero), then those differences."""
    if motion.still:
        return b""
    grid = motion.vectors.shape[:2]
    readers = _readers(modes, grid)
    v = np.where(readers[..., None], motion.vectors, 0)
    flags, diffs = [], []
    for r, c in zip(*np.nonzero(readers)):
        d = v[r, c] - np.array(predictor(v, r, c))
        flags.append(int(d.any()))
        if d.any():
            diffs.extend(d.tolist())
    w = SymbolWriter()
    w.add_fixed(np.array(motion.background) + 2 * MAX_VECTOR, _RESIDUALS)
    w.add(flags, 2)
    w.add_fixed(np.array(diffs, dtype=np.int64) + 2 * MAX_VECTOR, _RESIDUALS)
    return w.finish()


def read_motion(data: bytes, modes: np.ndarray, grid: tuple[int, int]) -> Motion:
    """What :func:`write_motion` wrote; :class:`FormatError` for data that cannot hold it."""
    if not data:
        return Motion.none(grid)
    readers = _readers(modes, grid)
    n = int(readers.sum())
    r = SymbolReader(data, 2 + 3 * n)
    background = r.read_fixed(2, _RESIDUALS) - 2 * MAX_VECTOR
    flags = r.read(n, 2)
    diffs = r.read_fixed(2 * int(flags.sum()), _RESIDUALS).reshape(-1, 2) - 2 * MAX_VECTOR
    r.done()
    vectors = np.zeros((*grid, 2), dtype=np.int64)
    k = 0
    for (rr, cc), flag in zip(zip(*np.nonzero(readers)), flags):
        vectors[rr, cc] = predictor(vectors, rr, cc)
        if flag:
            vectors[rr, cc] += diffs[k]
            k += 1
    try:
        return Motion(vectors, tuple(background))
    except ValueError:
        raise FormatError("predicted payload's motion vectors are out of range") from None


def background_after(y_hat: torch.Tensor, bg: torch.Tensor, updates: np.ndarray) -> torch.Tensor:
    """The background latent after a predicted frame: its blocks flagged in ``updates`` take ``y_hat``."""
    return torch.where(block_mask(torch.from_numpy(updates), y_hat.shape[-2:]), y_hat, bg)


def _check(p: Payload, y_hat: torch.Tensor, bg_after: torch.Tensor) -> None:
    check = p.strings[S_CHECK]
    if len(check) != 4:
        raise FormatError("predicted payload's check value is not 4 bytes")
    if struct.unpack("<I", check)[0] != exact.check_value(y_hat, bg_after):
        raise DivergenceError("its decoded latents differ from the encoder's (check value mismatch): the "
                              "references it was decoded from are not the ones it was coded against")


def toward_zero(r: torch.Tensor, sym: torch.Tensor, table_scales: torch.Tensor, cost: torch.Tensor) -> torch.Tensor:
    """Rate-distortion-optimised quantisation: ``sym`` (``round(r)``) with each symbol moved one step
    towards zero where the bits that saves, under a zero-mean Gaussian of the symbol's table scale, exceed
    the distortion it adds (``cost``: bits per unit of squared latent error, broadcast against ``r``).

    An encoder's choice only: the decoder reads whatever symbols it is given, so this changes no format."""
    step = torch.sign(sym)
    cand = sym - step

    def bits(k):
        s = table_scales.double()
        p = torch.special.ndtr((k.abs() + 0.5) / s) - torch.special.ndtr((k.abs() - 0.5) / s)
        return -torch.log2(p.clamp_min(1e-9))

    gain = bits(sym) - bits(cand) - cost * ((r - cand).square() - (r - sym).square())
    return torch.where((step != 0) & (gain > 0), cand, sym)


def code_predicted(model, cond: ConditionalEntropyModel, y64: torch.Tensor, qm: QualityMap, h: int, w: int,
                   prev: torch.Tensor, bg: torch.Tensor, modes: torch.Tensor, bg_updates: np.ndarray,
                   alone: IntraBlocks | None, rdoq: torch.Tensor | None = None,
                   motion: Motion | None = None, shift: tuple[int, int] = (0, 0),
                   ) -> tuple[bytes, torch.Tensor, torch.Tensor]:
    """A predicted frame (version 8) against references already at ``qm``'s quality, with ``modes`` per
    latent position, ``bg_updates`` per 64-pixel block, ``motion`` (None: none) and the picture ``shift``
    (dy, dx pixels; :func:`picture_shift`): the payload, and the
    previous-frame and background latents it leaves (what the decoder will hold). ``rdoq`` (bits per unit of
    squared latent error, [1, M, H, W]): zero small symbols where that pays (:func:`toward_zero`)."""
    H, W = y64.shape[-2:]
    grid = (H // BLOCK, W // BLOCK)
    maps = BlockMaps(modes)
    motion = motion or Motion.none(grid)
    # A block that reads no previous latent sends no vector: the decoder takes it as zero.
    motion = Motion(np.where(_readers(modes.numpy(), grid)[..., None], motion.vectors, 0), motion.background)
    prev, bg = motion.references(prev, bg)
    ref = maps.reference(prev, bg)
    strings = [write_modes(modes.numpy(), bg_updates), b"", b"", write_motion(motion, modes.numpy()), b"", b""]
    y_hat = ref.clone()
    fresh = maps.mask(maps.fresh, ref)
    if fresh.any():
        needed = maps.blocks(maps.fresh)
        z_string, z_hat = code_hyper(model.entropy_bottleneck, alone.z, IntraBlocks.reads(model, needed))
        alone = IntraBlocks.exact(model, z_string, z_hat, needed)
        means = alone.means[fresh]
        sym = torch.round(y64[fresh] - means)
        coder = model.latent_coder()
        idx = coder.indexes(alone.scales[fresh])
        if rdoq is not None:
            sym = toward_zero(y64[fresh] - means, sym, model.gaussian_conditional.scale_table[idx.long()],
                              rdoq.expand_as(fresh)[fresh])
        strings[S_ALONE_Z] = alone.z_string
        strings[S_ALONE_Y] = coder.encode_indexed(sym.to(torch.int32), idx)
        y_hat[fresh] = sym + means
    coded = maps.mask(maps.coded, ref)
    two_pass = cond.context
    sent = []
    if coded.any():
        diff = torch.where(coded, y64 - ref, torch.zeros_like(ref))
        needed = maps.blocks(maps.coded)
        z_string, z_hat = code_hyper(cond.entropy_bottleneck, cond.h_a(diff.float()),
                                     conditional_reads(cond.exact(), needed, (H, W)))
        coder, table = model.latent_coder(), model.gaussian_conditional.scale_table

        def symbols(i, indexes, mu, where):
            sym = torch.round(diff - mu)
            if rdoq is not None:
                sym = toward_zero(diff - mu, sym, table[indexes.long()], rdoq)
            sent.append(coder.encode_indexed(sym[where].to(torch.int32), indexes[where]))
            return sym[where]

        means, sym = coded_difference(cond.exact(), needed, z_hat, ref, coded, symbols, two_pass)
        strings[S_DIFF] = sent[0]
        strings[S_DIFF_Z] = z_string
        y_hat[coded] = (ref + means + sym)[coded]
    bg_after = background_after(y_hat, bg, bg_updates)
    strings.append(struct.pack("<I", exact.check_value(y_hat, bg_after)))
    strings.append(sent[1] if two_pass and sent else b"")
    strings.append(_shift_bytes(shift))
    if not qm.uniform:
        strings.append(qm.to_bytes())
    return pack(w, h, qm.base, (H // BLOCK, W // BLOCK), strings, PREDICTED), y_hat, bg_after


def _shift_bytes(shift: tuple[int, int]) -> bytes:
    dy, dx = (int(v) for v in shift)
    if max(abs(dy), abs(dx)) > MAX_SHIFT:
        raise ValueError(f"a picture shift is at most {MAX_SHIFT} pixels per axis, not {shift}")
    return b"" if dy == dx == 0 else struct.pack("<bb", dy, dx)


def picture_shift(p: Payload) -> tuple[int, int]:
    """How far the picture a predicted payload decodes to is shown moved, (dy, dx) pixels: version 8's
    ninth string; (0, 0) for older versions. :class:`FormatError` for a damaged one."""
    if p.version != PREDICTED or not p.strings[S_SHIFT]:
        return 0, 0
    if len(p.strings[S_SHIFT]) != 2:
        raise FormatError("predicted payload's picture shift is damaged")
    dy, dx = struct.unpack("<bb", p.strings[S_SHIFT])
    if max(abs(dy), abs(dx)) > MAX_SHIFT:
        raise FormatError("predicted payload's picture shift is out of range (damaged data?)")
    return dy, dx


def _modes(p: Payload, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A predicted payload's modes per latent position and background updates per block."""
    n = grid[0] * grid[1]
    if p.version in QUADTREE:
        if p.version == PREDICTED_QUADTREE and p.strings[S_UPDATES]:
            raise FormatError("predicted payload: its background updates belong in its first string")
        return read_modes(p.strings[S_MODES], grid)
    modes = decode_symbols(p.strings[S_MODES], n, MODES).reshape(grid)
    return per_position(modes), decode_symbols(p.strings[S_UPDATES], n, 2).reshape(grid).astype(bool)


def decode_predicted(model, cond: ConditionalEntropyModel, exact_model: ExactConditional, p: Payload,
                     prev: torch.Tensor, bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The previous-frame and background latents a predicted payload leaves, from references already at
    its quality (:func:`rescaled`), and its modes per latent position. Raises :class:`DivergenceError`
    when a checked frame's check value differs from what was computed."""
    H, W = prev.shape[-2:]
    grid = (H // BLOCK, W // BLOCK)
    if p.latent_hw != grid:
        raise FormatError("predicted frame's size does not match its reference")
    modes, upd = _modes(p, grid)
    maps = BlockMaps(torch.from_numpy(modes))
    if p.version in MOVED:
        prev, bg = read_motion(p.strings[S_MOTION], modes, grid).references(prev, bg)
    ref = maps.reference(prev, bg)
    y_hat = ref.clone()
    fresh = maps.mask(maps.fresh, ref)
    if fresh.any():
        if not (p.strings[S_ALONE_Z] and p.strings[S_ALONE_Y]):
            raise FormatError("predicted payload codes blocks alone but carries no symbols for them")
        alone = IntraBlocks.decode(model, p.strings[S_ALONE_Z], maps.blocks(maps.fresh), p.version)
        coder = model.latent_coder()
        sym = coder.decode_indexed(p.strings[S_ALONE_Y], coder.indexes(alone.scales[fresh]))
        y_hat[fresh] = sym.double() + alone.means[fresh]
    coded = maps.mask(maps.coded, ref)
    if coded.any():
        second = p.version == PREDICTED and p.strings[S_DIFF_SECOND]
        if not (p.strings[S_DIFF_Z] and (p.strings[S_DIFF] or second)):
            raise FormatError("predicted payload codes blocks but carries no difference")
        needed = maps.blocks(maps.coded)
        if p.version in QUADTREE:
            z_hat = decode_hyper(cond.entropy_bottleneck, p.strings[S_DIFF_Z],
                                 conditional_reads(exact_model, needed, (H, W)))
        else:
            z_hat = cond.entropy_bottleneck.decompress([p.strings[S_DIFF_Z]], grid)
        coder = model.latent_coder()
        two_pass = p.version == PREDICTED and exact_model.context
        reads = [p.strings[S_DIFF]] + ([p.strings[S_DIFF_SECOND]] if two_pass else [])

        def read(i, indexes, mu, where):
            return coder.decode_indexed(reads[i], indexes[where]).double()

        means, sym = coded_difference(exact_model, needed, z_hat, ref, coded, read, two_pass)
        y_hat[coded] = (ref + means + sym)[coded]
    if p.version == PREDICTED and p.strings[S_DIFF_SECOND] and not (coded.any() and exact_model.context):
        raise FormatError("predicted payload carries a second pass that nothing reads (damaged data, or "
                          "another conditional model than the one it was coded with?)")
    bg_after = background_after(y_hat, bg, upd)
    if p.version in CHECKED:
        _check(p, y_hat, bg_after)
    return y_hat, bg_after, maps.modes


def block_modes(data: bytes) -> np.ndarray | None:
    """The modes of a predicted frame's payload per latent position (16 x 16 pixels; None for a frame
    coded alone), without a model."""
    p = unpack(data)
    if p.version not in GAIN_RULES:
        return None
    payload_quality(p)
    return _modes(p, p.latent_hw)[0]
