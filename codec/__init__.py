"""Learned frame codecs, their weights and the container that holds their output.

This package's ``__init__`` imports nothing heavy, so the CLI and the pipeline can
name the default model without loading torch."""

#: The registry name ``compress``, ``ingest`` and the benchmarks use unless told otherwise:
#: the 64/192 model, 19 % fewer bits than the 64/96 on Kodak, 0.84 to 0.91 s for a 720p
#: frame on two cores (docs/TRAINING.md).
DEFAULT_MODEL = "vidsieve-hyperprior-wide"

#: Seconds between intra frames of predicted streams: seek points, and where a reader resumes after damage.
DEFAULT_INTRA_PERIOD = 10.0
