"""The bytes of one coded frame: a versioned header and the entropy coder's strings.

Layout (little-endian; docs/FORMAT.md)::

    u8  version (1 to 8)  u16 width   u16 height   f32 quality
    u16 latent_h          u16 latent_w              u8  n_strings
    u32 length * n_strings (versions 6 to 8: each an unsigned LEB128 varint), then the strings themselves

Versions: 2, the latent's scales come from the exact, machine-independent
hyper-synthesis (:class:`~.entropy.ExactHyperSynthesis`); 1, from the float one
(CompressAI zoo models, and a fallback for hyper latents out of the exact
range; still read); 3, an intra frame of a predicted stream, whose means are
exact too (its latent is a reference); 4, a predicted frame (strings: block
modes, the coded difference, its hyper latent, background updates, the
intra hyper latent and symbols of blocks coded alone; its references rescaled with
float32 gains); 5, a predicted frame whose references are rescaled with exact gains onto
a fixed-point grid, with a seventh string: the check value of the latents it leaves; 6, a
predicted frame whose modes are chosen per 64, 32 or 16 pixels (a quadtree, its splits, modes and
background updates in the first string) and whose string lengths are varints (a still frame's
header was most of its size); 7, a version 6 frame whose fourth string holds motion: a vector per
64-pixel block for the previous frame's latent and one for the background's; 8, a version 7 frame with
two strings more: the symbols of the difference's second checkerboard pass (a conditional model with
context codes it in two) and the shift of the picture shown (a camera that shook). Versions 3 to 8 may
carry one more string, the frame's quality map (:mod:`.quality_map`).
What each string holds and how it is read: :mod:`.latent_codecs`. Every length is checked
against the bytes present before anything is sliced.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Sequence

from ..errors import FormatError

#: The hyperprior's total down-sampling (16 in ``g_a`` times 4 in ``h_a``): the stored latent shape is the
#: frame's size divided by it, rounded up.
HYPER_STRIDE = 64
_HEAD = struct.Struct("<BHHfHHB")
PAYLOAD_VERSION = 2
#: An intra frame with exact means; a predicted frame as first written (float32 gains) and as written now
#: (exact gains, references on a fixed-point grid, a check value): :mod:`.latent_codecs`.
#: Then a predicted frame whose modes are a quadtree down to 16 pixels, with varint string lengths, the
#: same with motion, and the same with a second checkerboard pass and a picture shift.
INTRA_EXACT, PREDICTED_F32_GAINS, PREDICTED_WHOLE_BLOCKS, PREDICTED_QUADTREE, PREDICTED_MOTION = 3, 4, 5, 6, 7
PREDICTED = 8
PREDICTED_VERSIONS = (PREDICTED_F32_GAINS, PREDICTED_WHOLE_BLOCKS, PREDICTED_QUADTREE, PREDICTED_MOTION, PREDICTED)
PAYLOAD_VERSIONS = (1, 2, INTRA_EXACT, *PREDICTED_VERSIONS)
#: A predicted frame's nine strings (version 8) and its quality map.
MAX_STRINGS = 10
#: Versions whose string lengths are varints.
VARINT_LENGTHS = (PREDICTED_QUADTREE, PREDICTED_MOTION, PREDICTED)


def varint(n: int) -> bytes:
    """``n`` (unsigned) as a LEB128 varint: 7 bits a byte, low first."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read_varint(data: bytes, off: int) -> tuple[int, int]:
    """The varint at ``off`` and the offset after it; :class:`FormatError` when it runs off the end."""
    n = shift = 0
    while True:
        if off >= len(data) or shift > 28:
            raise FormatError("frame payload's varint runs off its end (damaged data?)")
        byte = data[off]
        n |= (byte & 0x7F) << shift
        off += 1
        if not byte & 0x80:
            return n, off
        shift += 7


def pack(width: int, height: int, quality: float, latent_hw: tuple[int, int], strings: Sequence[bytes],
         version: int = PAYLOAD_VERSION) -> bytes:
    head = _HEAD.pack(version, width, height, float(quality), latent_hw[0], latent_hw[1], len(strings))
    if version in VARINT_LENGTHS:
        return head + b"".join(varint(len(s)) for s in strings) + b"".join(strings)
    return head + struct.pack(f"<{len(strings)}I", *map(len, strings)) + b"".join(strings)


@dataclass
class Payload:
    version: int
    width: int
    height: int
    quality: float
    latent_hw: tuple[int, int]
    strings: list[bytes]


def unpack(data: bytes, latent_stride: int = HYPER_STRIDE) -> Payload:
    if len(data) < _HEAD.size:
        raise FormatError("frame payload too short")
    ver, w, h, q, lh, lw, n = _HEAD.unpack_from(data)
    if ver not in PAYLOAD_VERSIONS:
        raise FormatError(f"unknown frame payload version {ver}")
    if not (w and h) or n == 0 or n > MAX_STRINGS:
        raise FormatError("frame payload header is invalid")
    if (lh, lw) != (-(-h // latent_stride), -(-w // latent_stride)):
        raise FormatError("frame payload latent size does not match the frame size")
    if ver in VARINT_LENGTHS:
        lens, off = [], _HEAD.size
        for _ in range(n):
            ln, off = read_varint(data, off)
            lens.append(ln)
    else:
        off = _HEAD.size + 4 * n
        if len(data) < off:
            raise FormatError("frame payload too short")
        lens = struct.unpack_from(f"<{n}I", data, _HEAD.size)
    if off + sum(lens) != len(data):
        raise FormatError("frame payload lengths do not add up")
    strings = []
    for ln in lens:
        strings.append(bytes(data[off : off + ln]))
        off += ln
    return Payload(ver, w, h, q, (lh, lw), strings)
