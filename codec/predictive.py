"""Predicted frames: each frame coded against the latents the decoder already holds.

The stream coder keeps two references in the latent domain, exactly as the
decoder keeps them: the previous decoded frame's latent and a long-term
**background latent** (the scene without what moves: in the spirit of the
background pictures of AVS2 / IEEE 1857, which surveillance coding uses to
predict what a moving object uncovers). Every frame is cut into blocks of 4 x 4
latent positions (64 x 64 pixels); each block copies one reference (*skip*, no
bits but its mode), codes its difference from one reference with the
:class:`~.conditional.ConditionalEntropyModel`, or is coded alone with the intra
model's entropy model (new content no reference holds). The encoder picks each
block's mode by rate-distortion cost (the quality level's lambda; distortion
from the latent error through the synthesis's measured energy per channel),
so it uses exactly what the decoder has (closed loop: nothing drifts).

Exactness: every latent a reference holds is computed the same on every machine
(intra frames with exact means, payload version 3; predicted frames from exact
means and integer symbols), and the conditional model runs in fixed point, so a
stream made on one machine decodes on any other. A quality change rescales the
references by the ratio of the gains (elementwise IEEE arithmetic, the same
everywhere) instead of forcing an intra frame.

Intra frames come at the start, at scene cuts, on :meth:`PredictiveStreamEncoder.reset`
and every ``intra_period`` seconds, so a file can be cut and seeked and a reader
that meets damage resumes at the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from .. import metrics
from ..errors import FormatError
from .conditional import ConditionalEntropyModel, ExactConditional, scale_of_level
from .entropy import decode_symbols, encode_symbols
from .frame_codec import GainedCodec, as_rgb, pad, to_tensor, to_uint8
from .models import QUALITY_MAX, check_quality
from .payload import INTRA_EXACT, PREDICTED, pack, unpack
from .quality_map import BLOCK, QualityMap, payload_quality
from .stream import StreamFrame

#: A block is BLOCK x BLOCK latent positions (quality_map.BLOCK): the hyper latent's grid, 64 x 64 pixels.
#: Block modes: copy the previous frame's latent, code the difference from it, copy the background's,
#: code the difference from it, code the block alone (the intra model's own entropy model: what is new in
#: the picture, which no reference holds).
SKIP_PREV, CODE_PREV, SKIP_BG, CODE_BG, INTRA = 0, 1, 2, 3, 4
MODES = 5
#: A box's margin, in pixels, when deciding which blocks the background may take from a frame.
BOX_MARGIN = 16
#: The block decisions' distortion weight relative to the quality level's training lambda.
LAMBDA_SCALE = 1.0
#: Quality steps an intra frame gets above the stream's quality.
INTRA_BOOST = 3.0
#: A block whose copy from the previous frame costs less distortion than this many bits' worth (at the
#: quality's lambda) is copied without asking any model: when all are, the frame costs no model time.
STILL_BITS = 8.0


@dataclass
class PredictionStats:
    """What the stream coder did, for ``vidsieve info`` and the benchmarks."""

    intra: int = 0
    predicted: int = 0
    mapped: int = 0  # frames coded with a quality map
    blocks: int = 0  # blocks of predicted frames
    skipped: int = 0  # of them, copied from a reference
    from_background: int = 0  # of them, predicted from (or copied from) the background
    alone: int = 0  # of them, coded with the intra model (new content)


class _References:
    """What both sides hold: the previous latent, the background latent, their quality (all exact float64)."""

    def __init__(self):
        self.prev: torch.Tensor | None = None
        self.bg: torch.Tensor | None = None
        self.quality: QualityMap | None = None

    def at_quality(self, model, quality: QualityMap) -> tuple[torch.Tensor, torch.Tensor]:
        """Both references at ``quality``: a latent at another quality (per position, with maps) is
        rescaled by the gains' ratio."""
        if not quality.same(self.quality):
            shape = self.prev.shape[-2:]
            g_old = self.quality.gains(model, shape)[0].double()
            g_new = quality.gains(model, shape)[0].double()
            ratio = g_new / g_old
            self.prev, self.bg, self.quality = self.prev * ratio, self.bg * ratio, quality
        return self.prev, self.bg

    def set_intra(self, y_hat: torch.Tensor, quality: QualityMap) -> None:
        self.prev, self.bg, self.quality = y_hat, y_hat.clone(), quality

    def clear(self) -> None:
        self.prev = self.bg = self.quality = None


def block_mask(blocks: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """A [1, 1, h, w] latent-resolution mask from a [hb, wb] block map."""
    m = blocks[None, None].to(torch.float32)
    return F.interpolate(m, scale_factor=BLOCK, mode="nearest")[..., : shape[0], : shape[1]] > 0


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
    """

    maps = True

    def __init__(self, codec: GainedCodec, conditional: ConditionalEntropyModel, time_base: Fraction,
                 intra_period: float = 10.0, conditional_name: str = "", conditional_sha256: str = ""):
        self.codec, self.model = codec, codec.model
        self.conditional_name, self.conditional_sha256 = conditional_name, conditional_sha256
        self.name, self.weights_sha256 = codec.name, codec.weights_sha256
        self.cond = conditional
        self.exact = conditional.exact()
        self.tb = time_base
        self.intra_period = intra_period
        self.refs = _References()
        self.picture = Picture()
        self.analysed = Analysis()
        self.last_intra_pts: int | None = None
        self.stats = PredictionStats()

    def describe(self) -> dict:
        return {"coder": "predictive", "conditional": self.conditional_name,
                "conditional_sha256": self.conditional_sha256, "intra_period": self.intra_period}

    def reset(self) -> None:
        self.refs.clear()
        self.picture.clear()
        self.analysed.clear()

    @torch.inference_mode()
    def encode(self, frame: np.ndarray, quality: float, pts: int, boxes=None, intra: bool = False,
               roi: np.ndarray | None = None) -> StreamFrame:
        """One frame; ``boxes`` (pixel boxes of what the detector saw, or None) keep moving objects out
        of the background; ``intra`` forces an intra frame (a scene cut); ``roi`` (int8 quarter-step
        offsets per 64 x 64 block, :mod:`.quality_map`) shifts each block's quality from ``quality``."""
        q = check_quality(quality)
        rgb = as_rgb(frame)
        h, w = rgb.shape[:2]
        due = (self.intra_period > 0 and self.last_intra_pts is not None
               and float((pts - self.last_intra_pts) * self.tb) >= self.intra_period - 1e-9)
        alone = intra or due or self.refs.prev is None or self.analysed.shape(rgb) != self.refs.prev.shape[-2:]
        g = self.analysed.analyse(self.model, rgb, whole=alone)
        if alone:
            # The frame every predicted one copies from (most blocks, for seconds): worth more bits.
            q = min(QUALITY_MAX, q + INTRA_BOOST)
        qm = QualityMap(q, roi)
        gain, _ = qm.gains(self.model, g.shape[-2:])
        y = g * gain
        self.stats.mapped += not qm.uniform
        if alone:
            return self._intra(y, qm, pts, h, w)
        return self._predicted(y, qm, rgb, boxes)

    def _intra(self, y, qm: QualityMap, pts, h, w) -> StreamFrame:
        data, y_hat = code_intra_exact(self.model, y, qm, h, w)
        self.refs.set_intra(y_hat, qm)
        self.last_intra_pts = pts
        self.stats.intra += 1
        self.picture.clear()
        return StreamFrame(data, self.picture.synthesise(self.model, y_hat, qm, h, w))

    def _predicted(self, y: torch.Tensor, qm: QualityMap, rgb: np.ndarray, boxes) -> StreamFrame:
        m, cond = self.model, self.cond
        h, w = rgb.shape[:2]
        prev, bg = self.refs.at_quality(m, qm)
        y64 = y.double()
        H, W = y.shape[-2:]
        grid = (H // BLOCK, W // BLOCK)
        _, inv_gain = qm.gains(m, (H, W))
        weight = (cond.synthesis_energy.reshape(1, -1, 1, 1) * inv_gain ** 2).double()
        lam = LAMBDA_SCALE * qm.lambdas(grid) * 255**2 / 3  # per unit of pixel SSE (images in [0, 1], 3 colours)

        def pool(t):  # per-position sums -> per-block sums [hb, wb]
            return F.avg_pool2d(t, BLOCK)[0, 0] * BLOCK * BLOCK

        # What copying the previous latent leaves is known in pixels: the previous picture against this one.
        # The other modes' distortions are estimated from their latent errors, scaled by how the latent
        # estimate of copying compares with those pixels (the synthesis is not linear).
        held = self.picture.rgb.astype(np.float64) - rgb
        pix = np.zeros((grid[0] * BLOCK * 16, grid[1] * BLOCK * 16))
        pix[:h, :w] = (held * held).sum(2) / 255**2
        d_held = torch.from_numpy(pix.reshape(grid[0], BLOCK * 16, grid[1], BLOCK * 16).sum((1, 3)))
        if not bool((lam * d_held > STILL_BITS).any()):
            # Nothing moved more than a few bits' worth anywhere: every block copies the previous frame,
            # and no model needs to run.
            modes = torch.full(grid, SKIP_PREV, dtype=torch.int64)
            return self._finish(y64, qm, h, w, prev, bg, modes, boxes, grid, None)
        costs = []
        scale = 1.0
        for ref in (prev, bg):
            diff = y64 - ref
            d_skip = pool((weight * diff.square()).sum(1, keepdim=True))
            if ref is prev:
                scale = float(d_held.sum() / d_skip.sum().clamp_min(1e-9)) if float(d_held.sum()) > 0 else 1.0
                scale = min(max(scale, 0.25), 16.0)
                weight = weight * scale
                d_skip = d_held
            # What coding the difference would cost and leave, from the float model (the encoder's guess).
            z_hat = torch.round(cond.h_a(diff.float()))
            v, mu = cond.params(z_hat, ref.float())
            mu = mu.double()
            sym = torch.round(diff - mu)
            lik = cond.likelihood._likelihood((sym + mu).float(), scale_of_level(v), mu.float())
            bits = pool(-torch.log2(cond.likelihood.likelihood_lower_bound(lik)).sum(1, keepdim=True).double())
            d_code = pool((weight * (diff - mu - sym).square()).sum(1, keepdim=True))
            costs += [lam * d_skip, lam * d_code + bits + 2.0]  # ~2 bits of hyper latent a block
        # Coding the block alone, with the intra model's entropy model (its hyper latent is coded for the
        # whole frame when any block is: its bits shared among the blocks).
        alone = IntraBlocks.measure(m, y64)
        sym = torch.round(y64 - alone.means)
        lik = m.gaussian_conditional._likelihood(sym.float(), alone.scales.float())
        bits = pool(-torch.log2(m.gaussian_conditional.likelihood_lower_bound(lik)).sum(1, keepdim=True).double())
        d_alone = pool((weight * (y64 - alone.means - sym).square()).sum(1, keepdim=True))
        costs.append(lam * d_alone + bits + 8.0 * len(alone.z_string) / (grid[0] * grid[1]))
        costs = torch.stack(costs)
        # An object the map raises is never copied from a reference while it moves: it is what the map is for.
        moving = qm.raised(grid) & (lam * d_held > STILL_BITS)
        costs[SKIP_PREV][moving] = costs[SKIP_BG][moving] = float("inf")
        modes = costs.argmin(0)  # [hb, wb], in the order of the modes' numbers
        return self._finish(y64, qm, h, w, prev, bg, modes, boxes, grid, alone)

    def _finish(self, y64, qm, h, w, prev, bg, modes, boxes, grid, alone) -> StreamFrame:
        m = self.model
        updates = self._bg_updates(modes, boxes, grid)
        data, y_hat = code_predicted(m, self.cond, y64, qm, h, w, prev, bg, modes, updates, alone)
        self._count(modes)
        self.refs.prev = y_hat
        self.refs.bg = torch.where(block_mask(torch.from_numpy(updates), y_hat.shape[-2:]), y_hat, self.refs.bg)
        return StreamFrame(data, self.picture.synthesise(m, y_hat, qm, h, w), intra=False)

    def _bg_updates(self, modes, boxes, grid) -> np.ndarray:
        """Blocks whose decoded latent becomes the background: still (copied from the previous frame)
        and, when the detector's boxes are known, clear of them."""
        upd = modes.numpy() == SKIP_PREV
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


class Analysis:
    """The analysis transform run only where the source picture changed since the last frame analysed.

    Blocks (64 x 64 pixels) whose blurred luma moved by less than ``THRESHOLD`` levels
    everywhere keep their latent from before (sensor noise moves pixels by a few
    levels; an object, far more); the rest are analysed as tiles with a one-block
    margin, the analysis's receptive field (about 30 pixels)."""

    THRESHOLD = 6.0
    MARGIN = 64
    MAX_SHARE = 0.5

    def __init__(self):
        self.g: torch.Tensor | None = None  # g_a of the frame analysed last (before the gains)
        self.luma: np.ndarray | None = None

    @staticmethod
    def shape(rgb: np.ndarray) -> tuple[int, int]:
        return (-(-rgb.shape[0] // 64) * 4, -(-rgb.shape[1] // 64) * 4)

    def analyse(self, model, rgb: np.ndarray, whole: bool = False) -> torch.Tensor:
        import cv2

        luma = cv2.blur(metrics.luma(rgb), (5, 5))
        changed = None
        if not whole and self.g is not None and self.luma.shape == luma.shape:
            d = np.abs(luma - self.luma)
            hb, wb = self.g.shape[-2] // BLOCK, self.g.shape[-1] // BLOCK
            pad_d = np.zeros((hb * 64, wb * 64), np.float32)
            pad_d[: d.shape[0], : d.shape[1]] = d
            changed = pad_d.reshape(hb, 64, wb, 64).max(axis=(1, 3)) > self.THRESHOLD
        x = pad(to_tensor(rgb))
        if changed is None or changed.mean() > self.MAX_SHARE:
            g = model.analyse(x)
        else:
            g = self.g.clone()
            H, W = g.shape[-2:]
            grown = changed.copy()
            grown[1:] |= changed[:-1]
            grown[:-1] |= changed[1:]
            grown[:, 1:] |= grown[:, :-1].copy()
            grown[:, :-1] |= grown[:, 1:].copy()
            for r0, r1, c0, c1 in tiles(grown):
                # Latent rows r0*4 .. r1*4 need pixels r0*64 - margin .. r1*64 + margin.
                p0, p1 = max(r0 * 64 - self.MARGIN, 0), min(r1 * 64 + self.MARGIN, x.shape[-2])
                q0, q1 = max(c0 * 64 - self.MARGIN, 0), min(c1 * 64 + self.MARGIN, x.shape[-1])
                t = model.analyse(x[..., p0:p1, q0:q1])
                a, b = (r0 * 64 - p0) // 16, (c0 * 64 - q0) // 16
                g[..., r0 * BLOCK : r1 * BLOCK, c0 * BLOCK : c1 * BLOCK] = \
                    t[..., a : a + (r1 - r0) * BLOCK, b : b + (c1 - c0) * BLOCK]
        self.g, self.luma = g, luma
        return g

    def clear(self) -> None:
        self.g = self.luma = None


class Picture:
    """The last decoded picture and the latent it was made from, so that a predicted frame synthesises
    only the tiles whose latent changed and pastes them into it (both sides do the same, so the encoder
    still knows the decoder's output to the bit)."""

    #: Latent positions the synthesis reads around an output pixel (its receptive field's radius is
    #: about 3.75 positions): a tile computed with this margin matches the whole frame's synthesis.
    MARGIN = BLOCK
    #: Above this share of blocks changed, the whole frame is synthesised at once.
    MAX_SHARE = 0.5

    def __init__(self):
        self.y: torch.Tensor | None = None
        self.rgb: np.ndarray | None = None
        self.quality: QualityMap | None = None

    def synthesise(self, model, y_hat: torch.Tensor, qm: QualityMap, h: int, w: int) -> np.ndarray:
        H, W = y_hat.shape[-2:]
        q = qm.base
        inv = None if qm.uniform else qm.gains(model, (H, W))[1]
        changed = None
        if self.y is not None and self.y.shape == y_hat.shape and (
                qm.same(self.quality) or not (qm.uniform and self.quality.uniform)):
            diff = (y_hat != self.y).any(1)[0]
            changed = F.max_pool2d(diff[None, None].float(), BLOCK, ceil_mode=True)[0, 0] > 0
            if not qm.same(self.quality):  # maps: blocks whose quality changed change their pixels too
                grid = changed.shape
                changed |= qm.qualities(grid) != self.quality.qualities(grid)
        if changed is None or changed.float().mean() > self.MAX_SHARE:
            rgb = to_uint8(model.synthesis(y_hat.float(), q, inv), h, w)
        else:
            rgb = self.rgb.copy()
            for r0, r1, c0, c1 in tiles(changed.numpy()):
                # Pixels whose output changed: the changed blocks and one block around them.
                pr0, pr1, pc0, pc1 = max(r0 - 1, 0), min(r1 + 1, changed.shape[0]), max(c0 - 1, 0), \
                    min(c1 + 1, changed.shape[1])
                lr0, lr1 = max(pr0 * BLOCK - self.MARGIN, 0), min(pr1 * BLOCK + self.MARGIN, H)
                lc0, lc1 = max(pc0 * BLOCK - self.MARGIN, 0), min(pc1 * BLOCK + self.MARGIN, W)
                tile = model.synthesis(y_hat[..., lr0:lr1, lc0:lc1].float(), q,
                                       None if inv is None else inv[..., lr0:lr1, lc0:lc1])
                u = 16
                y0, x0 = (pr0 * BLOCK - lr0) * u, (pc0 * BLOCK - lc0) * u
                ph, pw = min(pr1 * BLOCK * u, h) - pr0 * BLOCK * u, min(pc1 * BLOCK * u, w) - pc0 * BLOCK * u
                if ph > 0 and pw > 0:
                    rgb[pr0 * BLOCK * u : pr0 * BLOCK * u + ph, pc0 * BLOCK * u : pc0 * BLOCK * u + pw] = \
                        to_uint8(tile[..., y0 : y0 + ph, x0 : x0 + pw], ph, pw)
        self.y, self.rgb, self.quality = y_hat, rgb, qm
        return rgb

    def clear(self) -> None:
        self.y = self.rgb = self.quality = None


def tiles(changed: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Rectangles of blocks ``(r0, r1, c0, c1)`` covering every changed block: the bounding boxes of the
    groups of changed blocks that touch (diagonals and one-block gaps included)."""
    import cv2

    grown = cv2.dilate(changed.astype(np.uint8), np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(grown, connectivity=8)
    out = []
    for k in range(1, n):
        rows, cols = np.nonzero((labels == k) & changed)
        if rows.size:
            out.append((int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1))
    return out


#: Above this share of a frame's blocks, entropy parameters are computed for the whole frame at once.
WINDOWS_MAX_SHARE = 0.5


def exact_in_blocks(needed: np.ndarray, compute, windowed: bool = True) -> tuple[torch.Tensor, ...]:
    """The outputs of an exact entropy-model net at the blocks ``needed`` marks (zeros elsewhere):
    ``compute(window)`` gives them for a window of latent positions (None: the whole frame, what a
    net that is not ``windowed`` always computes).

    The nets' sums are exact, so each window, computed with just the positions around it that its
    layers read (:meth:`~.entropy.FixedPointNet.run`), holds the whole frame's values bit for bit: the
    few blocks of a predicted frame that use an entropy model cost about their own area, on both
    sides."""
    rects = tiles(needed)
    area = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in rects)
    if not windowed or not rects or area > WINDOWS_MAX_SHARE * needed.size:
        return compute(None)
    B = BLOCK
    outs = None
    for r0, r1, c0, c1 in rects:
        part = compute(((r0 * B, r1 * B), (c0 * B, c1 * B)))
        if outs is None:
            outs = tuple(p.new_zeros(*p.shape[:2], needed.shape[0] * B, needed.shape[1] * B) for p in part)
        for out, p in zip(outs, part):
            out[..., r0 * B : r1 * B, c0 * B : c1 * B] = p
    return outs


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


def conditional_in_blocks(exact: ExactConditional, needed: np.ndarray, z_hat: torch.Tensor,
                          ref: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditional model's exact table indexes and means at the blocks ``needed`` marks."""
    return exact_in_blocks(needed, lambda window: exact(z_hat, ref, window=window), exact.windowed)


def code_predicted(model, cond: ConditionalEntropyModel, y64, qm: QualityMap, h, w, prev, bg, modes, bg_updates,
                   alone: IntraBlocks) -> tuple[bytes, torch.Tensor]:
    """A predicted frame: block modes, the coded difference in coded blocks, background updates, the
    blocks coded alone, and the quality map when there is one."""
    H, W = y64.shape[-2:]
    ref = torch.where(block_mask(((modes == SKIP_BG) | (modes == CODE_BG)), (H, W)), bg, prev)
    coded_blocks, fresh_blocks = (modes == CODE_PREV) | (modes == CODE_BG), modes == INTRA
    coded = block_mask(coded_blocks, (H, W))
    strings = [encode_symbols(modes.numpy(), MODES), b"", b"", encode_symbols(bg_updates.astype(np.int64), 2),
               b"", b""]
    y_hat = ref.clone()
    fresh = block_mask(fresh_blocks, (H, W)).expand_as(ref)
    if fresh.any():
        alone = IntraBlocks.exact(model, alone.z_string, alone.z_hat, fresh_blocks.numpy())
        means = alone.means[fresh]
        sym = torch.round(y64[fresh] - means)
        coder = model.latent_coder()
        strings[4] = alone.z_string
        strings[5] = coder.encode_indexed(sym.to(torch.int32), coder.indexes(alone.scales[fresh]))
        y_hat[fresh] = sym + means
    if coded.any():
        diff = torch.where(coded, y64 - ref, torch.zeros_like(ref))
        z = cond.h_a(diff.float())
        z_strings = cond.entropy_bottleneck.compress(z)
        z_hat = cond.entropy_bottleneck.decompress(z_strings, tuple(z.shape[-2:]))
        indexes, mu = conditional_in_blocks(cond.exact(), coded_blocks.numpy(), z_hat, ref)
        sym = torch.round(diff - mu)
        sel = coded.expand_as(sym)
        strings[1] = model.latent_coder().encode_indexed(sym[sel].to(torch.int32), indexes[sel])
        strings[2] = z_strings[0]
        y_hat[sel] = (ref + mu + sym)[sel]
    if not qm.uniform:
        strings.append(qm.to_bytes())
    return pack(w, h, qm.base, (H // BLOCK, W // BLOCK), strings, PREDICTED), y_hat


class PredictiveStreamDecoder:
    """Decodes what :class:`PredictiveStreamEncoder` writes (a :class:`~.stream.StreamDecoder`); reads
    intra-only streams too."""

    def __init__(self, codec: GainedCodec, conditional: ConditionalEntropyModel | None):
        self.codec, self.model = codec, codec.model
        self.cond = conditional
        self.exact = conditional.exact() if conditional is not None else None
        self.refs = _References()
        self.picture = Picture()
        self.last_pts: int | None = None

    @property
    def latent(self) -> torch.Tensor | None:
        """The last decoded frame's latent (exact float64): what the next predicted frame refers to."""
        return self.refs.prev

    def reset(self) -> None:
        self.refs.clear()
        self.picture.clear()

    @torch.inference_mode()
    def decode(self, data: bytes, pts: int, intra: bool = True, ref_pts: int | None = None) -> np.ndarray:
        p = unpack(data)
        if p.version not in (INTRA_EXACT, PREDICTED):
            self.reset()  # a frame of an intra-only stream: nothing to predict from
            return self.codec.decode(data)
        qm = payload_quality(p)
        if p.version == INTRA_EXACT:
            y_hat = decode_intra_exact(self.model, p)
            self.refs.set_intra(y_hat, qm)
            self.picture.clear()
        else:
            if self.refs.prev is None or (ref_pts is not None and ref_pts != self.last_pts):
                raise FormatError(f"predicted frame at pts {pts} has no reference (the frame it refers to, "
                                  f"pts {ref_pts}, was not decoded before it)")
            if self.exact is None:
                raise FormatError("this stream has predicted frames, and no conditional model is loaded for it")
            y_hat, modes, upd = decode_predicted(self.model, self.cond, self.exact, p, qm, self.refs)
            self.refs.prev = y_hat
            self.refs.bg = torch.where(block_mask(torch.from_numpy(upd), y_hat.shape[-2:]), y_hat, self.refs.bg)
        self.last_pts = pts
        return self.picture.synthesise(self.model, y_hat, qm, p.height, p.width)


def decode_intra_exact(model, p) -> torch.Tensor:
    """The exact latent of an intra payload whose strings :func:`.quality_map.payload_quality` checked."""
    try:
        symbols, means = model.decode_symbols(p.strings[:2], p.latent_hw, exact=True, exact_means=True)
    except OverflowError:
        raise FormatError("frame payload's hyper latent is out of range (damaged data?)") from None
    return symbols.double() + means


def decode_predicted(model, cond, exact, p, qm: QualityMap, refs: _References):
    prev, bg = refs.at_quality(model, qm)
    H, W = prev.shape[-2:]
    grid = (H // BLOCK, W // BLOCK)
    if p.latent_hw != grid:
        raise FormatError("predicted frame's size does not match its reference")
    try:
        modes = torch.from_numpy(decode_symbols(p.strings[0], grid[0] * grid[1], MODES).reshape(grid))
        upd = decode_symbols(p.strings[3], grid[0] * grid[1], 2).reshape(grid).astype(bool)
    except ValueError as exc:
        raise FormatError(f"predicted payload: {exc}") from None
    ref = torch.where(block_mask((modes == SKIP_BG) | (modes == CODE_BG), (H, W)), bg, prev)
    coded_blocks, fresh_blocks = (modes == CODE_PREV) | (modes == CODE_BG), modes == INTRA
    coded = block_mask(coded_blocks, (H, W))
    y_hat = ref.clone()
    fresh = block_mask(fresh_blocks, (H, W)).expand_as(ref)
    if fresh.any():
        if not (p.strings[4] and p.strings[5]):
            raise FormatError("predicted payload codes blocks alone but carries no symbols for them")
        alone = IntraBlocks.decode(model, p.strings[4], fresh_blocks.numpy())
        coder = model.latent_coder()
        sym = coder.decode_indexed(p.strings[5], coder.indexes(alone.scales[fresh]))
        y_hat[fresh] = sym.double() + alone.means[fresh]
    if coded.any():
        if not (p.strings[1] and p.strings[2]):
            raise FormatError("predicted payload codes blocks but carries no difference")
        z_hat = cond.entropy_bottleneck.decompress([p.strings[2]], ((H + 3) // 4, (W + 3) // 4))
        indexes, mu = conditional_in_blocks(exact, coded_blocks.numpy(), z_hat, ref)
        sel = coded.expand_as(ref)
        sym = model.latent_coder().decode_indexed(p.strings[1], indexes[sel])
        y_hat[sel] = ref[sel] + mu[sel] + sym.double()
    return y_hat, modes, upd


def block_modes(data: bytes) -> np.ndarray | None:
    """The block modes of a predicted frame's payload (None for a frame coded alone), without a model."""
    p = unpack(data)
    if p.version != PREDICTED:
        return None
    payload_quality(p)
    try:
        return decode_symbols(p.strings[0], p.latent_hw[0] * p.latent_hw[1], MODES).reshape(p.latent_hw)
    except ValueError as exc:
        raise FormatError(f"predicted payload: {exc}") from None
