"""The compress and decompress roads, as a Python API.

One frame's road, module by module: :mod:`.options` (what to do) ->
:mod:`.encoder` (:class:`Compressor`: selector, stream encoder, container
writer; :func:`compress` drives it over a file) with :mod:`.plan` (the first
pass of ``--target-kbps``) and :mod:`.lookahead` (more quality for the blocks
later frames copy) -> :mod:`.decoder` (:func:`decompress`: container
reader, stream decoder, hold-fill, writer) and :mod:`.info`. ``ingest`` and
``bench`` drive the same :class:`Compressor`; the CLI only parses arguments and
calls these functions.
"""

from .decoder import DecodedFrame, DecompressSummary, codec_for, decoded_frames, decompress, iter_decoded
from .encoder import CompressSummary, Compressor, compress, load_codec
from .info import info
from .options import CompressOptions, make_selector

__all__ = ["CompressOptions", "CompressSummary", "Compressor", "DecodedFrame", "DecompressSummary", "codec_for",
           "compress", "decoded_frames", "decompress", "info", "iter_decoded", "load_codec", "make_selector"]
