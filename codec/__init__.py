"""Learned frame codecs, their weights and the container that holds their output.

This package's ``__init__`` imports nothing heavy, so the CLI and the pipeline can
name the default model without loading torch."""

#: The registry name ``compress``, ``ingest`` and the benchmarks use unless told otherwise:
#: the 64/192 model with its hyper-synthesis pruned to two thirds of its channels (0.3 % more
#: bits than the unpruned 64/192 on Kodak, 0.9 to 2.1 % on the shared clips, 0.51 to 0.54 s
#: for a 720p frame on two cores against 0.56 to 0.62 s; docs/RESULTS.md, "Deep compression").
DEFAULT_MODEL = "vidsieve-hyperprior-slim"

#: What the analysis and synthesis transforms compute in: ``float``, or ``int8`` (:mod:`.int8`,
#: ONNX Runtime's integer kernels). Streams decode with either. The default follows the
#: measurements (docs/RESULTS.md, "Deep compression").
PRECISIONS = ("float", "int8")
DEFAULT_PRECISION = "float"

#: Seconds between intra frames of predicted streams: seek points, and where a reader resumes after damage.
DEFAULT_INTRA_PERIOD = 10.0

#: The smallest block, in pixels, the encoder chooses a predicted frame's modes for (64, 32 or 16: the
#: format's quadtree goes down to 16). 64: finer blocks measured more bits for the same PSNR with the
#: encoder's estimates (docs/RESULTS.md, "Predicted frames, lever by lever").
DEFAULT_BLOCK_PX = 64
#: The least fraction of a source's size a stream may be coded at (``--scale``; the decoder scales back up).
SCALE_MIN = 0.125
#: Frames a file's encoder looks ahead to raise the quality of the blocks later frames copy
#: (:mod:`vidsieve.pipeline.lookahead`; 0: off). Live ingest codes at once.
DEFAULT_LOOKAHEAD = 20
