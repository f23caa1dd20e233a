"""Entropy coding: the rANS coder of latents and of small symbol maps.

:class:`LatentCoder` codes a latent's integer symbols, each under the Gaussian
table its index names; the indexes come from scales by exact comparisons (one
binary search per element), the scales and means from the fixed-point nets of
:mod:`.fixed_point`. The intra model uses it with parameters from its hyper
latent; a conditional (predicted-frame) model uses the same coder with
parameters computed from its references. :func:`encode_symbols` codes block
modes and flags under their own frequencies; :class:`SymbolWriter` and
:class:`SymbolReader` code several such groups in one string and one rANS
stream, where a group's size may depend on what an earlier group held (a
quadtree's splits, then its leaves). Which strings a payload carries,
and in what order they are read, is :mod:`.latent_codecs`'.
"""

from __future__ import annotations

import numpy as np
import torch
from compressai.entropy_models import GaussianConditional

from ..errors import FormatError


def encode_symbols(symbols, alphabet: int) -> bytes:
    """Small integers in ``[0, alphabet)`` (block modes, flags) under their own frequencies.

    The frequencies travel first, one byte per value (scaled to at most 255; zero only for
    values absent from ``symbols``), then the rANS string; a few bytes for a frame's flags."""
    from compressai._CXX import pmf_to_quantized_cdf
    from compressai.ans import RansEncoder

    sym, freq = _frequencies(symbols, alphabet)
    if np.count_nonzero(freq) <= 1:
        return bytes(freq)  # one value throughout (or none): the frequencies say it all
    cdf = _symbol_cdf(freq, pmf_to_quantized_cdf)
    string = RansEncoder().encode_with_indexes(sym.tolist(), [0] * sym.size, [cdf], [len(cdf)], [0])
    return bytes(freq) + string


def decode_symbols(data: bytes, count: int, alphabet: int) -> np.ndarray:
    """The ``count`` symbols :func:`encode_symbols` wrote; :class:`FormatError` for data that cannot hold
    them."""
    from compressai.ans import RansDecoder

    if len(data) < alphabet:
        raise FormatError("frame payload's symbol string is too short")
    freq = np.frombuffer(data[:alphabet], dtype=np.uint8)
    if not count:
        return np.zeros(0, dtype=np.int64)
    if np.count_nonzero(freq) == 1 and len(data) != alphabet:
        raise FormatError("frame payload's symbol string is longer than its one value needs")
    rest = bytes(data[alphabet:])
    return _group(freq, count, alphabet,
                  lambda cdf: RansDecoder().decode_with_indexes(rest, [0] * count, [cdf], [len(cdf)], [0]))


def _group(freq: np.ndarray, count: int, alphabet: int, decode) -> np.ndarray:
    """``count`` symbols under the frequencies ``freq``: one value throughout when only one is present,
    else what ``decode(cdf)`` reads, checked against the alphabet."""
    from compressai._CXX import pmf_to_quantized_cdf

    nonzero = np.count_nonzero(freq)
    if nonzero == 0:
        raise FormatError("frame payload's symbol string has no frequencies")
    if nonzero == 1:
        return np.full(count, int(np.flatnonzero(freq)[0]), dtype=np.int64)
    out = np.array(decode(_symbol_cdf(freq, pmf_to_quantized_cdf)), dtype=np.int64)
    if out.size != count or out.min() < 0 or out.max() >= alphabet or not freq[out].all():
        raise FormatError("frame payload's symbol string decodes outside its alphabet")
    return out


def _frequencies(symbols, alphabet: int) -> tuple[np.ndarray, np.ndarray]:
    """The symbols (int64, flat) and their frequencies, one byte a value (scaled to at most 255; zero only
    for values absent)."""
    sym = np.asarray(symbols, dtype=np.int64).reshape(-1)
    if alphabet > 255 or (sym.size and (sym.min() < 0 or sym.max() >= alphabet)):
        raise ValueError("symbols out of their alphabet")
    counts = np.bincount(sym, minlength=alphabet).astype(np.float64)
    freq = np.where(counts > 0, np.maximum(1, np.round(255 * counts / max(counts.max(), 1))), 0).astype(np.uint8)
    return sym, freq


class SymbolWriter:
    """Groups of small integers in one string: a varint, the groups' frequencies (one byte a value, as
    :func:`encode_symbols` writes them; none for an empty group), then one rANS stream holding every group
    that has more than one value. A reader must know each group's size and alphabet before it reads it,
    from what it read before."""

    def __init__(self):
        self.freqs = bytearray()
        self.groups: list[tuple[np.ndarray, list[int]]] = []

    def add(self, symbols, alphabet: int) -> None:
        from compressai._CXX import pmf_to_quantized_cdf

        sym, freq = _frequencies(symbols, alphabet)
        if not sym.size:
            return
        self.freqs += bytes(freq)
        if np.count_nonzero(freq) > 1:
            self.groups.append((sym, _symbol_cdf(freq, pmf_to_quantized_cdf)))

    def add_fixed(self, symbols, freq: np.ndarray) -> None:
        """Symbols under frequencies both sides know (``freq``, uint8, every value present): nothing but
        the symbols is written. For groups whose alphabet is too large to send its frequencies."""
        from compressai._CXX import pmf_to_quantized_cdf

        sym = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if sym.size and (sym.min() < 0 or sym.max() >= len(freq)):
            raise ValueError("symbols out of their alphabet")
        if sym.size:
            self.groups.append((sym, _symbol_cdf(np.asarray(freq), pmf_to_quantized_cdf)))

    def finish(self) -> bytes:
        """The string (empty when every group was)."""
        from compressai.ans import BufferedRansEncoder

        from .payload import varint

        if not self.freqs and not self.groups:
            return b""
        rans = b""
        if self.groups:
            enc = BufferedRansEncoder()
            for sym, cdf in self.groups:
                enc.encode_with_indexes(sym.tolist(), [0] * sym.size, [cdf], [len(cdf)], [0])
            rans = enc.flush()
        return varint(len(self.freqs)) + bytes(self.freqs) + rans


class SymbolReader:
    """Reads what :class:`SymbolWriter` wrote, group by group; :class:`FormatError` for data that cannot
    hold it.

    ``max_symbols`` bounds what all the reads together ask for: the rANS stream is padded with zeros for
    that many symbols, so a damaged string decodes garbage (caught by its checks) instead of reading past
    its end."""

    def __init__(self, data: bytes, max_symbols: int):
        from compressai.ans import RansDecoder

        from .payload import read_varint

        self.freqs, self.used = b"", 0
        self.decoder = None
        if data:
            n, off = read_varint(data, 0)
            if off + n > len(data):
                raise FormatError("frame payload's symbol string is too short for its frequencies")
            self.freqs = data[off : off + n]
            if off + n < len(data):
                self.decoder = RansDecoder()
                # rANS reads two words to start and at most one more per symbol.
                self.decoder.set_stream(bytes(data[off + n :]) + bytes(8 + 4 * max_symbols))
        self.left = max_symbols

    def read(self, count: int, alphabet: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if count > self.left:
            raise FormatError("frame payload's symbol string asks for more symbols than its frame holds")
        self.left -= count
        if self.used + alphabet > len(self.freqs):
            raise FormatError("frame payload's symbol string has too few frequencies")
        freq = np.frombuffer(self.freqs[self.used : self.used + alphabet], dtype=np.uint8)
        self.used += alphabet
        return _group(freq, count, alphabet, self._decode(count))

    def read_fixed(self, count: int, freq: np.ndarray) -> np.ndarray:
        """What :meth:`SymbolWriter.add_fixed` wrote under the same ``freq``."""
        from compressai._CXX import pmf_to_quantized_cdf

        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if count > self.left:
            raise FormatError("frame payload's symbol string asks for more symbols than its frame holds")
        self.left -= count
        out = np.array(self._decode(count)(_symbol_cdf(np.asarray(freq), pmf_to_quantized_cdf)), dtype=np.int64)
        if out.size != count or out.min() < 0 or out.max() >= len(freq):
            raise FormatError("frame payload's symbol string decodes outside its alphabet")
        return out

    def _decode(self, count: int):
        def decode(cdf):
            if self.decoder is None:
                raise FormatError("frame payload's symbol string has no coded symbols")
            return self.decoder.decode_stream([0] * count, [cdf], [len(cdf)], [0])
        return decode

    def done(self) -> None:
        """:class:`FormatError` when frequencies are left over (the string holds other groups than were
        read)."""
        if self.used != len(self.freqs):
            raise FormatError("frame payload's symbol string holds more groups than its frame reads")


def _symbol_cdf(freq: np.ndarray, to_cdf) -> list[int]:
    # A tail entry after the alphabet, as CompressAI's coder expects; it is never coded.
    pmf = np.append(freq.astype(np.float64), 0.5)
    return to_cdf((pmf / pmf.sum()).tolist(), 16)


class LatentCoder:
    """rANS coding of a latent's symbols, each under the Gaussian entropy model its scale selects.

    Args:
        gc: a CompressAI ``GaussianConditional`` with its tables built (``update``); its tables
            are converted once, so the model must not be trained while this coder is in use.
    """

    def __init__(self, gc: GaussianConditional):
        self.gc = gc
        self.tables = (gc._quantized_cdf.tolist(), gc._cdf_length.reshape(-1).int().tolist(),
                       gc._offset.reshape(-1).int().tolist())
        self.scale_table = gc.scale_table[:-1]

    def indexes(self, scales: torch.Tensor) -> torch.Tensor:
        """The entropy coder's table index for every predicted scale: the same integers as
        ``GaussianConditional.build_indexes``, which walks the whole tensor once per table
        entry (63 passes: 0.1 to 0.2 s for a 720p frame's 192-channel latent on two
        cores); one binary search per element costs a tenth of that. Exact comparisons
        either way, so streams coded with either decode with the other."""
        table = self.scale_table.to(scales.dtype)
        # bucketize counts the table entries strictly below each scale; build_indexes
        # starts at the last index and subtracts one for each entry at or above it.
        return torch.bucketize(self.gc.lower_bound_scale(scales), table).to(torch.int32)

    def encode(self, y: torch.Tensor, scales: torch.Tensor, means: torch.Tensor) -> tuple[bytes, torch.Tensor]:
        """The rANS string of ``round(y - means)``, and the latent the decoder will rebuild from it."""
        symbols = self.gc.quantize(y, "symbols", means)
        return self.encode_indexed(symbols, self.indexes(scales)), self.gc.dequantize(symbols, means)

    def encode_indexed(self, symbols: torch.Tensor, indexes: torch.Tensor) -> bytes:
        """The rANS string of integer ``symbols``, each under the table its index names (empty for none:
        CompressAI's coder crashes the process on an empty list)."""
        if indexes.numel() == 0:
            return b""
        # numpy's tolist is ~1.5x torch's for a 720p frame's 0.7 M elements.
        return self.gc.entropy_coder.encode_with_indexes(symbols.reshape(-1).numpy(force=True).tolist(),
                                                        indexes.reshape(-1).numpy(force=True).tolist(), *self.tables)

    def decode_symbols(self, string: bytes, scales: torch.Tensor) -> torch.Tensor:
        """The integer symbols (``round(y - means)``) of a string, shaped like ``scales``."""
        return self.decode_indexed(string, self.indexes(scales))

    def decode_indexed(self, string: bytes, indexes: torch.Tensor) -> torch.Tensor:
        """The integer symbols of a string whose table indexes are ``indexes`` (shaped like them)."""
        if indexes.numel() == 0:
            return torch.zeros(indexes.shape, dtype=torch.int32)
        values = self.gc.entropy_coder.decode_with_indexes(string, indexes.reshape(-1).numpy(force=True).tolist(),
                                                           *self.tables)
        # torch.tensor(list) of a 720p frame's 0.7 M symbols takes 65 ms, np.array 20, np.fromiter 15.
        return torch.from_numpy(np.fromiter(values, dtype=np.int32, count=len(values))).reshape(indexes.shape)

    def decode(self, string: bytes, scales: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
        return self.gc.dequantize(self.decode_symbols(string, scales), means)
