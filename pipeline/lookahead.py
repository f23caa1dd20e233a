"""More quality for the blocks later frames reuse: a look-ahead in the spirit of x264's macroblock-tree.

A block that a predicted frame codes and the following frames copy is shown in each of
them, so its quality is worth more than that of a block the next frame overwrites
(Garrett-Glaser, "A novel macroblock-tree algorithm for high-performance optimization of
dependent video coding in H.264/AVC", 2009; x265's cuTree). vidsieve's predicted frames
copy an unchanged block for nothing, so the reuse of a block is how long its source stays
as it is: :class:`ReuseTree` looks at the next frames of a file (the compress road holds
them back, :class:`~.encoder.Compressor`), counts for every 64 x 64 block that changes
now the frames it then stays still for, and raises its quality by ``STRENGTH`` steps per
doubling of that count. A block keeps its raise while it stays still (copies keep the
quality they were coded at) and gets a new one when it changes again.

Live ingest codes every frame at once: it has no look-ahead and no raise; neither has a
file coded to a ``--target-kbps``, whose feedback needs each segment's bits when the next
one starts. Intra frames have their own boost
(:func:`~vidsieve.codec.predictive_encoder.coded_qualities`), and the stream coder leaves
the raise out of them. Measured: docs/RESULTS.md, "Predicted frames, lever by lever".
"""

from __future__ import annotations

import cv2
import numpy as np

from .. import metrics
from ..codec.quality_map import offsets_from_steps

#: Quality steps per doubling of the frames that reuse a block. An intra frame reused for a 10-second
#: period at 10 fps gets 3 steps (:data:`~vidsieve.codec.predictive_encoder.INTRA_BOOST`), about 0.45 per
#: doubling of its 100 reusing frames; a block of a predicted frame gets the same rate (twice that measured
#: no better than none).
STRENGTH = 0.45
#: Blocks are compared on luma at a quarter of the size (area averages: sensor noise mostly averages away);
#: a block whose pixels all moved by less than this many levels counts as unchanged, the rule of the
#: encoder's incremental analysis.
THRESHOLD = 6.0
_SHRINK = 4
_CELL = 64 // _SHRINK


def block_luma(rgb: np.ndarray) -> np.ndarray:
    """Luma at a quarter of the size, padded (edges repeated) to whole 64-pixel blocks."""
    h, w = rgb.shape[:2]
    small = cv2.resize(metrics.luma(rgb), (max(1, w // _SHRINK), max(1, h // _SHRINK)), interpolation=cv2.INTER_AREA)
    hb, wb = -(-h // 64), -(-w // 64)
    return np.pad(small, ((0, hb * _CELL - small.shape[0]), (0, wb * _CELL - small.shape[1])), mode="edge")


def _moved(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per 64-pixel block: whether any of its pixels moved by more than :data:`THRESHOLD` between a and b."""
    hb, wb = a.shape[0] // _CELL, a.shape[1] // _CELL
    return np.abs(a - b).reshape(hb, _CELL, wb, _CELL).max(axis=(1, 3)) > THRESHOLD


class ReuseTree:
    """Per-block quality offsets (int8 quarter steps, :mod:`~vidsieve.codec.quality_map`) from how long
    each block, once coded, stays unchanged in the frames ahead.

    Args:
        strength: quality steps per doubling of the frames that reuse a block.
    """

    def __init__(self, strength: float = STRENGTH):
        self.strength = strength
        self.last: np.ndarray | None = None  # the block_luma of the frame coded last
        self.held: np.ndarray | None = None  # each block's offset, kept while it stays unchanged

    def offsets(self, now: np.ndarray, ahead: list[np.ndarray]) -> np.ndarray | None:
        """The offsets of the frame whose block_luma is ``now``, given those of the frames after it
        (``ahead``, in order); None where no block is raised."""
        hb, wb = now.shape[0] // _CELL, now.shape[1] // _CELL
        if self.last is None or self.last.shape != now.shape:
            changed, held = np.ones((hb, wb), bool), np.zeros((hb, wb), np.int8)
        else:
            changed, held = _moved(now, self.last), self.held
        life = np.zeros((hb, wb))
        alive = np.ones((hb, wb), bool)
        for later in ahead:
            alive &= ~_moved(later, now)
            if not alive.any():
                break
            life += alive
        fresh = offsets_from_steps(self.strength * np.log2(1.0 + life))
        self.held = np.where(changed, fresh, held).astype(np.int8)
        self.last = now
        return self.held if self.held.any() else None

    def restart(self) -> None:
        """After a frame coded alone: every block was coded anew at that frame's quality."""
        if self.held is not None:
            self.held[:] = 0
