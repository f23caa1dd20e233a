"""vidsieve: detection-driven learned video compression for surveillance footage."""

__version__ = "0.1.0"
