"""Pixels in and out of the codec: uint8 frames of any layout to padded tensors, and back."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .payload import HYPER_STRIDE

#: Frames are padded to a multiple of this: the hyperprior's total down-sampling.
PAD = HYPER_STRIDE
MAX_SIDE = 65535


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    frame = np.ascontiguousarray(as_rgb(frame))
    if not frame.flags.writeable:
        frame = frame.copy()  # torch.from_numpy wants memory it may write
    return torch.from_numpy(frame).permute(2, 0, 1).float().div_(255)[None]


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """HxWx3 uint8 from uint8/uint16 gray, RGB or RGBA arrays."""
    a = np.asarray(frame)
    if a.dtype == np.uint16:
        a = (a.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 or uint16, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
        raise ValueError(f"frames must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] == 4:
        a = a[:, :, :3]
    if a.shape[0] < 1 or a.shape[1] < 1 or max(a.shape[:2]) > MAX_SIDE:
        raise ValueError(f"frame size {a.shape[1]}x{a.shape[0]} is outside 1..{MAX_SIDE}")
    return a


def to_uint8(x: torch.Tensor, h: int, w: int) -> np.ndarray:
    return x[0, :, :h, :w].clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def pad(x: torch.Tensor, multiple: int = PAD) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x
