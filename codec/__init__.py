"""Learned frame codecs, their weights and the container that holds their output.

This package's ``__init__`` imports nothing heavy, so the CLI and the pipeline can
name the default model without loading torch."""

#: The registry name ``compress``, ``ingest`` and the benchmarks use unless told otherwise.
DEFAULT_MODEL = "vidsieve-hyperprior"
