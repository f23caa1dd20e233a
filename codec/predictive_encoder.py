"""The encoder of predicted streams: the float decisions of which block takes which mode.

What the decisions produce is coded by :mod:`.latent_codecs`, which alone says
how bits are written and read; here the encoder estimates, from its float models,
what each mode would cost and leave, and picks the cheapest by rate-distortion
cost (the quality level's lambda; distortion from the latent error through the
synthesis's measured energy per channel). It codes against exactly what the
decoder holds (:class:`~.predictive.References`: closed loop, nothing drifts).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from . import DEFAULT_BLOCK_PX
from .blocks import BLOCK
from .conditional import ConditionalEntropyModel
from .frame_codec import GainedCodec
from .incremental import IncrementalAnalysis, Picture
from .latent_codecs import (CODE_BG, CODE_PREV, INTRA, SKIP_BG, SKIP_PREV, IntraBlocks, Motion, code_intra_exact,
                             code_predicted, per_position)
from .motion import MAX_VECTOR, PIXELS, compensated, shifted
from .models import QUALITY_MAX, check_quality
from .payload import PREDICTED
from .pixels import as_rgb
from .predictive import PredictionStats, References
from .quality_map import QualityMap
from .stabilise import REANCHOR_S, aligned, find_shift, shown
from .stream import StreamFrame

#: A box's margin, in pixels, when deciding which blocks the background may take from a frame.
BOX_MARGIN = 16
#: The block decisions' distortion weight relative to the quality level's training lambda.
LAMBDA_SCALE = 1.0
#: Quality steps an intra frame that predicted frames copy from gets above theirs, up to quality
#: :data:`BOOST_KNEE`; above it, the least it gets (at the top of the range).
INTRA_BOOST, INTRA_BOOST_MIN = 3.0, 1.0
#: Where the asked quality stops mapping one to one onto predicted frames' (see :func:`coded_qualities`).
BOOST_KNEE = QUALITY_MAX - INTRA_BOOST - INTRA_BOOST_MIN
#: A block whose copy from the previous frame costs less distortion than this many bits' worth (at the
#: quality's lambda) is copied without asking any model: when all are, the frame costs no model time.
STILL_BITS = 8.0
#: What a block that codes its difference is charged for the difference's hyper latent, in bits. Charging
#: the hyper latent a block's parameters read (version 6 sends just that) made the encoder copy more, which
#: cost bits for the same PSNR on the car park (docs/RESULTS.md, "Predicted frames, lever by lever").
DIFF_HYPER_BITS = 2.0
#: What the encoder's decisions count a leaf's mode and a split flag at (the map is entropy coded; these
#: are its typical costs, not a bound).
MODE_BITS, SPLIT_BITS = 2.0, 1.0
#: Whether predicted frames zero small symbols where that pays (rate-distortion-optimised quantisation).
RDOQ = True
#: Whether predicted frames move the previous latent by a vector per block (and the background by one per
#: frame) where that pays. Off by default: no gain on the person clip and up to 80 % more bits on the car park,
#: whose moved blocks' costs the estimates get wrong (docs/RESULTS.md, "Predicted frames, lever by lever").
MOTION = False
#: What the decisions count a block's vector at when it is not its predictor, in bits.
VECTOR_BITS = 8.0
#: The share of the blocks whose vectors must agree (within a pixel) for the frame to count as moved
#: as a whole (a camera that shook or was bumped): its background is then moved too.
GLOBAL_SHARE = 0.6
#: Whether a frame that moved as a whole (a camera that shook or was bumped) is coded aligned with the
#: references and shown moved (:mod:`.stabilise`).
STABILISE = True
#: The smallest leaf of the mode quadtree the encoder chooses, in latent positions (4: 64 pixels). Finer
#: leaves cost more bits for the same PSNR with these decisions (docs/RESULTS.md, "Predicted frames, lever by
#: lever"): a latent position's choice moves pixels beyond its own 16 x 16, which its estimates do not see.
MIN_BLOCK = DEFAULT_BLOCK_PX // 16


@dataclass(frozen=True)
class CodedQualities:
    """The qualities a predicted stream codes its frames at, for one asked quality."""

    referenced: float  # an intra frame that predicted frames will copy from
    predicted: float
    alone: float  # an intra frame nothing refers to (a still image, a stream's last frame)


def coded_qualities(quality: float) -> CodedQualities:
    """The qualities a predicted stream codes at for ``quality``: strictly increasing, all three.

    An intra frame that predicted frames refer to is shown, through every block they copy, for up to
    the intra period, so it gets more quality than they do: :data:`INTRA_BOOST` steps up to
    :data:`BOOST_KNEE`, where both map one to one from the asked quality. Above the knee both are squeezed
    linearly into what is left of the range, so the top asks the top of the intra frame and
    :data:`INTRA_BOOST_MIN` less of predicted frames: no two asked qualities give the same stream, and the
    boost never reaches zero. A frame nothing refers to is coded at the asked quality.
    """
    q = check_quality(quality)
    if q <= BOOST_KNEE:
        return CodedQualities(q + INTRA_BOOST, q, q)
    t = (q - BOOST_KNEE) / (QUALITY_MAX - BOOST_KNEE)
    return CodedQualities(BOOST_KNEE + INTRA_BOOST + t * INTRA_BOOST_MIN,
                          BOOST_KNEE + t * (QUALITY_MAX - INTRA_BOOST_MIN - BOOST_KNEE), q)


def _added(roi: np.ndarray | None, reuse: np.ndarray) -> np.ndarray:
    """Two maps' quarter-step offsets added (int8)."""
    total = reuse.astype(np.int16) + (0 if roi is None else roi.astype(np.int16))
    return np.clip(total, -127, 127).astype(np.int8)


def _spread(t: torch.Tensor, size: int) -> torch.Tensor:
    return t.repeat_interleave(size, -2).repeat_interleave(size, -1)


def quadtree_modes(costs: torch.Tensor, min_block: int = MIN_BLOCK) -> tuple[torch.Tensor, torch.Tensor]:
    """Modes per latent position from each mode's cost there (``costs`` [modes, H, W], bits), and each
    64-pixel block's cost [H / 4, W / 4]: each block takes one mode, or splits into 32-pixel quarters
    that take one each or split into 16-pixel cells, whichever costs least with :data:`MODE_BITS` a leaf
    and :data:`SPLIT_BITS` a split. ``min_block`` (4, 2 or 1 latent positions) stops the splitting at
    that size."""
    def quarters(t):  # sums over 2 x 2 cells
        return F.avg_pool2d(t[None], 2)[0] * 4

    level = costs  # each mode's cost over each cell of the current size
    best = level.min(0).values + MODE_BITS  # the cheapest coding of each cell, its flags included
    choice = level.argmin(0)
    size = 1
    while size < BLOCK:
        level, size = quarters(level), size * 2
        whole = level.min(0).values + MODE_BITS
        split = quarters(best[None])[0]
        # A cell's split flag is coded whether or not it splits; it tips its parent's choice, not its own.
        take = (whole <= split) | (size <= min_block)
        choice = torch.where(_spread(take, size), _spread(level.argmin(0), size), choice)
        best = torch.where(take, whole, split) + SPLIT_BITS
    return choice, best


#: The modes that read each hyper latent a predicted frame may send (the difference's, the intra model's).
_USERS = {"difference": (CODE_PREV, CODE_BG), "alone": (INTRA,)}


def choose_modes(costs: torch.Tensor, hyper: dict[str, torch.Tensor], min_block: int = MIN_BLOCK) -> torch.Tensor:
    """Modes per latent position: for each 64-pixel block, the cheapest quadtree (:func:`quadtree_modes`)
    over the modes of each set of hyper latents it may pay for (``hyper``: the bits a block pays for each
    one it uses). A hyper latent costs a block the same whether one of its cells
    reads it or all do, so the choice is made per block and set, not per cell."""
    best_cost = best_modes = None
    names = list(hyper)
    for k in range(1 << len(names)):
        paid = [n for i, n in enumerate(names) if k >> i & 1]
        c = costs.clone()
        for n in names:
            if n not in paid:
                c[list(_USERS[n])] = float("inf")
        modes, cost = quadtree_modes(c, min_block)
        for n in paid:
            cost = cost + hyper[n]
        if best_cost is None:
            best_cost, best_modes = cost, modes
        else:
            better = cost < best_cost
            best_cost = torch.where(better, cost, best_cost)
            best_modes = torch.where(_spread(better, BLOCK), modes, best_modes)
    return best_modes


def boxes_to_blocks(boxes, grid: tuple[int, int]) -> np.ndarray:
    """Which blocks (64-pixel cells) any box (x1, y1, x2, y2, pixels) touches, margin included."""
    cover = np.zeros(grid, bool)
    cell = 16 * BLOCK
    for x1, y1, x2, y2 in boxes:
        r0, r1 = int(max(0, (y1 - BOX_MARGIN) // cell)), int(min(grid[0] - 1, (y2 + BOX_MARGIN) // cell))
        c0, c1 = int(max(0, (x1 - BOX_MARGIN) // cell)), int(min(grid[1] - 1, (x2 + BOX_MARGIN) // cell))
        if r1 >= r0 and c1 >= c0:
            cover[r0 : r1 + 1, c0 : c1 + 1] = True
    return cover


class PredictiveStreamEncoder:
    """Codes a stream's frames as intra frames and predicted frames (a :class:`~.stream.StreamEncoder`),
    each at one quality or under a quality map.

    Args:
        codec: the intra codec (its model's analysis, synthesis and hyperprior).
        conditional: the entropy model of predicted frames, trained for ``codec``'s weights.
        time_base: of the pts it is given.
        intra_period: seconds between intra frames (0: only the first and scene cuts).
        qualities: maps an asked quality to the coded ones (an ablation may replace the rule).
        min_block: the smallest block a mode is chosen for, in latent positions (4: 64 pixels, 2: 32,
            1: 16); an ablation's knob, decoders read any.
        rdoq: zero a coded block's small symbols where the bits saved outweigh the distortion added
            (rate-distortion-optimised quantisation; :func:`~.latent_codecs.toward_zero`).
        motion: move the previous frame's latent by a vector per block, and the background's by one for
            the frame, where that pays (:mod:`.motion`).
        stabilise: code a frame that moved as a whole aligned with the references, and send the shift it
            is shown at (:mod:`.stabilise`).
    """

    maps = True

    def __init__(self, codec: GainedCodec, conditional: ConditionalEntropyModel, time_base: Fraction,
                 intra_period: float = 10.0, conditional_name: str = "", conditional_sha256: str = "",
                 qualities: Callable[[float], CodedQualities] = coded_qualities, min_block: int = MIN_BLOCK,
                 rdoq: bool = RDOQ, motion: bool = MOTION, stabilise: bool = STABILISE):
        self.codec, self.model = codec, codec.model
        self.conditional_name, self.conditional_sha256 = conditional_name, conditional_sha256
        self.name, self.weights_sha256 = codec.name, codec.weights_sha256
        self.cond = conditional
        self.exact = conditional.exact()
        self.tb = time_base
        self.intra_period = intra_period
        self.qualities = qualities
        if min_block not in (1, 2, BLOCK):
            raise ValueError(f"min_block must be 1, 2 or {BLOCK} latent positions")
        self.min_block = min_block
        self.rdoq = rdoq
        self.motion = motion
        self.stabilise = stabilise
        self.shift: tuple[int, int] = (0, 0)  # the last frame's picture shift
        self.shift_since: int | None = None  # pts of the first frame of the run of frames shifted by it
        self._flow = None
        self.refs = References()
        self.picture = Picture()
        self.analysed = IncrementalAnalysis()
        self.last_intra_pts: int | None = None
        self.stats = PredictionStats()

    def describe(self) -> dict:
        return {"coder": "predictive", "conditional": self.conditional_name,
                "conditional_sha256": self.conditional_sha256, "intra_period": self.intra_period}

    def reset(self) -> None:
        self.refs.clear()
        self.picture.clear()
        self.analysed.clear()
        self.shift = (0, 0)

    @torch.inference_mode()
    def encode(self, frame: np.ndarray, quality: float, pts: int, boxes=None, intra: bool = False,
               roi: np.ndarray | None = None, referenced: bool = True,
               reuse: np.ndarray | None = None) -> StreamFrame:
        """One frame; ``boxes`` (pixel boxes of what the detector saw, or None) keep moving objects out
        of the background; ``intra`` forces an intra frame (a scene cut); ``roi`` (int8 quarter-step
        offsets per 64 x 64 block, :mod:`.quality_map`) shifts each block's quality from the one
        :func:`coded_qualities` gives for ``quality``; ``referenced``: whether a predicted frame will
        follow this one (False: an intra frame is not boosted); ``reuse``: more offsets, added to
        ``roi``'s in a predicted frame, for the blocks later frames will copy (an intra frame has its
        own boost and leaves them out)."""
        qs = self.qualities(quality)
        rgb = as_rgb(frame)
        h, w = rgb.shape[:2]
        due = (self.intra_period > 0 and self.last_intra_pts is not None
               and float((pts - self.last_intra_pts) * self.tb) >= self.intra_period - 1e-9)
        alone = intra or due or self.refs.prev is None or self.analysed.shape(rgb) != self.refs.prev.shape[-2:]
        shift, luma = (0, 0), None
        if self.stabilise and not alone and self.analysed.luma is not None:
            luma = self.analysed.luma_of(rgb)
            shift = find_shift(luma, self.analysed.luma, searching=self.shift != (0, 0))
            if shift == (0, 0) or shift != self.shift:
                self.shift_since = pts
            elif float((pts - self.shift_since) * self.tb) >= REANCHOR_S - 1e-9:
                shift = (0, 0)  # the camera stays moved: code the new view, which later frames copy
        if shift != (0, 0):
            rgb, luma = aligned(rgb, shift, self.picture.rgb), None
            if boxes is not None:
                dy, dx = shift
                boxes = [(x1 - dx, y1 - dy, x2 - dx, y2 - dy) for x1, y1, x2, y2 in boxes]
        self.shift = shift
        self.stats.shifted += shift != (0, 0)
        g = self.analysed.run(self.model, rgb, whole=alone, luma=luma)
        q = (qs.referenced if referenced else qs.alone) if alone else qs.predicted
        objects = QualityMap(q, roi)
        qm = objects if alone or reuse is None else QualityMap(q, _added(roi, reuse))
        gain, _ = qm.gains(self.model, g.shape[-2:])
        y = g * gain.to(g.dtype)
        self.stats.mapped += not qm.uniform
        if alone:
            return self._intra(y, qm, pts, h, w)
        return self._predicted(y, qm, rgb, boxes, objects)

    def _intra(self, y, qm: QualityMap, pts, h, w) -> StreamFrame:
        data, y_hat = code_intra_exact(self.model, y, qm, h, w)
        self.refs.set_intra(y_hat, qm)
        self.shift = (0, 0)
        self.last_intra_pts = pts
        self.stats.intra += 1
        self.picture.clear()
        return StreamFrame(data, self.picture.synthesise(self.model, y_hat, qm, h, w))

    def _predicted(self, y: torch.Tensor, qm: QualityMap, rgb: np.ndarray, boxes, objects: QualityMap) -> StreamFrame:
        m, cond = self.model, self.cond
        h, w = rgb.shape[:2]
        prev, bg = self.refs.at_quality(m, qm, PREDICTED)
        y64 = y.double()
        H, W = y.shape[-2:]
        grid = (H // BLOCK, W // BLOCK)
        _, inv_gain = qm.gains(m, (H, W))
        weight = (cond.synthesis_energy.reshape(1, -1, 1, 1) * inv_gain ** 2).double()
        lam_blocks = LAMBDA_SCALE * qm.lambdas(grid) * 255**2 / 3  # per unit of pixel SSE (images in [0, 1])
        lam = (lam_blocks.repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1) if torch.is_tensor(lam_blocks)
               else lam_blocks)

        def total(t):  # summed over channels, per latent position [H, W]
            return t.sum(1)[0]

        # What copying the previous latent leaves is known in pixels: the previous picture against this one.
        # The other modes' distortions are estimated from their latent errors, scaled by how the latent
        # estimate of copying compares with those pixels (the synthesis is not linear).
        held = self.picture.rgb.astype(np.float64) - rgb
        pix = np.zeros((H * 16, W * 16))
        pix[:h, :w] = (held * held).sum(2) / 255**2
        d_held = torch.from_numpy(pix.reshape(H, 16, W, 16).sum((1, 3)))
        held_blocks = lam * d_held
        held_blocks = held_blocks.reshape(grid[0], BLOCK, grid[1], BLOCK).sum((1, 3))
        if not bool((held_blocks > STILL_BITS).any()):
            # Nothing moved more than a few bits' worth anywhere: every block copies the previous frame,
            # and no model needs to run.
            modes = torch.full((H, W), SKIP_PREV, dtype=torch.int64)
            return self._finish(y64, qm, h, w, prev, bg, modes, boxes, grid, None, None)

        def ref_costs(ref, d_skip=None):
            """What copying ``ref`` and coding the difference from it would cost and leave, per position,
            from the float model (the encoder's guess)."""
            diff = y64 - ref
            if d_skip is None:
                d_skip = total(weight * diff.square())
            z_hat = torch.round(cond.h_a(diff.float()))
            v, mu = cond.params(z_hat, ref.float(), diff.float())
            mu = mu.double()
            sym = torch.round(diff - mu)
            lik = cond.likelihood._likelihood((sym + mu).float(), cond.grid.scale(v), mu.float())
            bits = total(-torch.log2(cond.likelihood.likelihood_lower_bound(lik)).double())
            d_code = total(weight * (diff - mu - sym).square())
            return torch.stack([lam * d_skip, lam * d_code + bits])

        d_latent = total(weight * (y64 - prev).square())
        scale = float(d_held.sum() / d_latent.sum().clamp_min(1e-9)) if float(d_held.sum()) > 0 else 1.0
        weight = weight * min(max(scale, 0.25), 16.0)
        found = self._find_motion(rgb, grid, held_blocks) if self.motion else None
        from_prev = ref_costs(prev, d_held)
        from_bg = ref_costs(shifted(bg, *found.background) if found is not None else bg)
        # Coding the block alone, with the intra model's entropy model (its hyper latent's bits for the whole
        # frame, shared among the blocks).
        alone = IntraBlocks.measure(m, y64)
        sym = torch.round(y64 - alone.means)
        lik = m.gaussian_conditional._likelihood(sym.float(), alone.scales.float())
        bits = total(-torch.log2(m.gaussian_conditional.likelihood_lower_bound(lik)).double())
        d_alone = total(weight * (y64 - alone.means - sym).square())
        cost_alone = lam * d_alone + bits
        motion = None
        if found is not None:
            from_prev, motion = self._choose_vectors(found, prev, from_prev, torch.cat([from_bg, cost_alone[None]]),
                                                     ref_costs, grid)
        hyper = {"difference": torch.full(grid, DIFF_HYPER_BITS, dtype=torch.float64),
                 "alone": torch.full(grid, 8.0 * len(alone.z_string) / (grid[0] * grid[1]), dtype=torch.float64)}
        costs = torch.cat([from_prev, from_bg, cost_alone[None]])  # [modes, H, W], in the order of the modes' numbers
        # An object the map raises is never copied from a reference while it moves: it is what the map is for
        # (the blocks the look-ahead raises for their reuse are not objects: they may be copied).
        moving = torch.from_numpy(per_position((objects.raised(grid) & (held_blocks > STILL_BITS)).numpy()))
        costs[SKIP_PREV][moving] = costs[SKIP_BG][moving] = float("inf")
        modes = choose_modes(costs, hyper, self.min_block)
        return self._finish(y64, qm, h, w, prev, bg, modes, boxes, grid, alone, lam * weight if self.rdoq else None,
                            motion)

    def _find_motion(self, rgb: np.ndarray, grid: tuple[int, int], held_blocks: torch.Tensor) -> Motion | None:
        """Candidate vectors: each changed block's median optical flow from this frame to the previous
        decoded picture (DIS, Kroeger et al., ECCV 2016), in whole pixels; the background's, their median when
        most blocks agree on it (the camera moved). None when nothing moved."""
        import cv2

        if self._flow is None:
            self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        h, w = rgb.shape[:2]
        cur = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        before = cv2.cvtColor(np.ascontiguousarray(self.picture.rgb[:h, :w]), cv2.COLOR_RGB2GRAY)
        flow = self._flow.calc(cur, before, None)  # cur(x) ~ before(x + flow(x)), (dx, dy)
        cell = PIXELS * BLOCK
        vectors = np.zeros((*grid, 2), dtype=np.int64)
        for r in range(min(grid[0], -(-h // cell))):
            for c in range(min(grid[1], -(-w // cell))):
                f = flow[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].reshape(-1, 2)
                moved = f[np.abs(f).max(-1) >= 1]  # a block's moving part, not the still scene around it
                vectors[r, c] = np.round(np.median((moved if len(moved) * 8 >= len(f) else f)[:, ::-1], axis=0))
        vectors = np.clip(vectors, -MAX_VECTOR, MAX_VECTOR)
        background = (0, 0)
        med = np.median(vectors.reshape(-1, 2), axis=0).round().astype(np.int64)
        if med.any() and (np.abs(vectors - med).max(-1) <= 1).mean() >= GLOBAL_SHARE:
            background = (int(med[0]), int(med[1]))
        vectors[~(held_blocks > STILL_BITS).numpy()] = background
        found = Motion(vectors, background)
        return None if found.still else found

    def _choose_vectors(self, found: Motion, prev: torch.Tensor, from_prev: torch.Tensor, others: torch.Tensor,
                        ref_costs, grid) -> tuple[torch.Tensor, Motion]:
        """Per block, the previous latent moved by its candidate vector where that makes the block cheaper
        (its best mode's cost, :data:`VECTOR_BITS` for the vector): the previous-frame modes' costs with the
        vectors chosen, and the motion."""
        if not found.vectors.any():
            return from_prev, found
        moved = ref_costs(compensated(prev, found.vectors))

        def block_best(c):  # the cheapest mode at each position, summed over each block
            return c.min(0).values.reshape(grid[0], BLOCK, grid[1], BLOCK).sum((1, 3))

        rest = others.min(0).values[None]
        gain = block_best(torch.cat([from_prev, rest])) - block_best(torch.cat([moved, rest])) - VECTOR_BITS
        take = (gain > 0).numpy() & found.vectors.any(-1)
        per_pos = torch.from_numpy(per_position(take))
        return torch.where(per_pos, moved, from_prev), Motion(np.where(take[..., None], found.vectors, 0),
                                                               found.background)

    def _finish(self, y64, qm, h, w, prev, bg, modes, boxes, grid, alone, rdoq, motion=None) -> StreamFrame:
        m = self.model
        updates = self._bg_updates(modes, boxes, grid, motion)
        data, y_hat, bg_after = code_predicted(m, self.cond, y64, qm, h, w, prev, bg, modes, updates, alone, rdoq,
                                               motion, self.shift)
        self._count(modes)
        self.refs.set_predicted(y_hat, bg_after)
        return StreamFrame(data, shown(self.picture.synthesise(m, y_hat, qm, h, w), self.shift), intra=False)

    def _bg_updates(self, modes, boxes, grid, motion: Motion | None = None) -> np.ndarray:
        """Blocks whose decoded latent becomes the background: still (every position copied from the
        previous frame, moved as the background is, if at all) and, when the detector's boxes are known,
        clear of them."""
        upd = (modes == SKIP_PREV).reshape(grid[0], BLOCK, grid[1], BLOCK).all(3).all(1).numpy()
        if motion is not None:
            upd &= (motion.vectors == np.array(motion.background)).all(-1)
        if boxes is not None:
            upd &= ~boxes_to_blocks(boxes, grid)
        return upd

    def _count(self, modes) -> None:
        s = self.stats
        s.predicted += 1
        s.blocks += modes.numel()
        s.skipped += int(((modes == SKIP_PREV) | (modes == SKIP_BG)).sum())
        s.from_background += int(((modes == SKIP_BG) | (modes == CODE_BG)).sum())
        s.alone += int((modes == INTRA).sum())
