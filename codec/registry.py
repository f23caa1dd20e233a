"""Model registry: a name maps to a factory ``(quality=None, pretrained=True, precision="float") -> FrameCodec``.

As in CompressAI, every factory has the same signature. ``quality`` is
accepted for symmetry with CompressAI's zoo; our variable-rate default ignores
it (one set of weights serves every quality), zoo codecs load the model of a
given quality lazily on first use.
"""

from __future__ import annotations

import weakref
from typing import Callable

from ..errors import ModelError
from . import DEFAULT_BLOCK_PX, DEFAULT_INTRA_PERIOD, DEFAULT_MODEL
from .frame_codec import FrameCodec, GainedCodec, ZooCodec
from .stream import (IntraStreamDecoder, IntraStreamEncoder, ScaledStreamDecoder, ScaledStreamEncoder, StreamDecoder,
                     StreamEncoder, coded_size, scaled_sizes)
from .models import GainedMeanScaleHyperprior
from .zoo import WEIGHTS_SUFFIXES, ZOO_ARCHS, load_shipped, load_weights, load_zoo

MODELS: dict[str, Callable[..., FrameCodec]] = {}


def register_model(name: str):
    def deco(fn):
        MODELS[name] = fn
        return fn
    return deco


def gained_from_state(state: dict, name: str, sha: str, precision: str = "float") -> GainedCodec:
    try:
        model = GainedMeanScaleHyperprior.from_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"weights for {name} do not fit its architecture: {str(exc).splitlines()[0]}") from None
    # CDF tables ship with the weights; only recompute when they were not saved (float work that may differ
    # between machines: such a codec codes no predicted stream, check_exact_tables).
    shipped = model.gaussian_conditional._quantized_cdf.numel() > 0
    if not shipped:
        model.update(force=True)
    codec = GainedCodec(model, name, sha, precision)
    codec.tables_shipped = shipped
    return codec


#: Weights shipped in ``codec/weights``: registry name -> the widths of the untrained model
#: (:class:`~.models.GainedMeanScaleHyperprior`'s arguments). "-wide" has the same transforms
#: as the 64/96 with a 192-channel latent: 19 % fewer bits on Kodak for about 1.5 times the
#: time (docs/TRAINING.md). "-slim" (the default, ``codec.DEFAULT_MODEL``) is "-wide" with its
#: hyper-synthesis pruned to two thirds of its channels and retrained: its latents are
#: "-wide"'s (docs/RESULTS.md, "Deep compression").
SHIPPED: dict[str, dict] = {"vidsieve-hyperprior": {"N": 64, "M": 96},
                            "vidsieve-hyperprior-wide": {"N": 64, "M": 192},
                            "vidsieve-hyperprior-slim": {"N": 64, "M": 192, "hyper": (128, 192)}}


def _normal(N: int, M: int, transform: int | None = None, hyper=None) -> tuple:
    return N, M, transform or N, tuple(hyper) if hyper else (M, M * 3 // 2)


def shipped_name(N: int, M: int, transform: int | None = None, hyper=None) -> str:
    """The registry name weights of these widths ship under; ``vidsieve-hyperprior``
    (the architecture's name) for widths no shipped model has."""
    want = _normal(N, M, transform, hyper)
    return next((name for name, w in SHIPPED.items() if _normal(**w) == want), "vidsieve-hyperprior")


def _shipped_factory(name: str, widths: dict):
    def factory(quality: float | None = None, pretrained: bool = True, precision: str = "float") -> FrameCodec:
        if not pretrained:
            if precision != "float":
                raise ModelError(f"an untrained {name} runs in float only")
            model = GainedMeanScaleHyperprior(**widths)
            model.update(force=True)
            codec = GainedCodec(model, name, "untrained")
            codec.tables_shipped = False
            return codec
        state, entry = load_shipped(name)
        return gained_from_state(state, name, entry["sha256"], precision)
    return factory


for _name, _widths in SHIPPED.items():
    register_model(_name)(_shipped_factory(_name, _widths))


def _zoo_factory(arch: str):
    def factory(quality: float | None = None, pretrained: bool = True, precision: str = "float") -> FrameCodec:
        if not pretrained:
            raise ModelError(f"{arch} is only useful pretrained")
        if precision != "float":
            raise ModelError(f"{arch} (CompressAI's zoo) runs in float only; int8 is for vidsieve's own models")
        codec = ZooCodec(arch, lambda q: load_zoo(arch, q))
        if quality is not None:
            codec.model(quality)  # fail now, not in the middle of a video
        return codec
    return factory


for _arch in ZOO_ARCHS:
    register_model(_arch)(_zoo_factory(_arch))


def load_codec(name: str = DEFAULT_MODEL, quality: float | None = None, pretrained: bool = True,
               precision: str = "float") -> FrameCodec:
    """A frame codec by registry name, or from a weights file path (``.pth``), its transforms
    at ``precision`` (``float`` or ``int8``; the int8 forms ship for shipped models)."""
    from .int8 import check_precision

    try:
        check_precision(precision)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    if name in MODELS:
        return MODELS[name](quality=quality, pretrained=pretrained, precision=precision)
    if name.endswith(WEIGHTS_SUFFIXES):
        from pathlib import Path

        if precision != "float":
            raise ModelError("int8 transforms ship for shipped models only; a weights file runs in float")
        state, sha = load_weights(name)
        codec = gained_from_state(state, f"file:{Path(name).name}", sha)
        codec.weights_path = str(Path(name).resolve())  # where its conditional model may sit beside it
        return codec
    raise ModelError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}")


def conditional_weights(name: str) -> tuple[dict, str]:
    """State dict and sha256 of a conditional entropy model: a shipped one by name, or a ``.pth`` /
    training checkpoint."""
    from .zoo import load_shipped

    if name.endswith(WEIGHTS_SUFFIXES):
        return load_weights(name)
    state, entry = load_shipped(name, section="conditional")
    return state, entry["sha256"]


def load_conditional(codec: FrameCodec, name: str | None = None):
    """``(model, name, sha256)`` of the conditional entropy model that codes predicted frames for
    ``codec``: ``name`` (a shipped name or a weights file), else the one shipped for its weights;
    None when there is none."""
    from .zoo import shipped_conditional_for

    beside = _beside(codec, name)
    path = name
    if beside is not None:
        name, path = beside
    elif name is None:
        name = path = shipped_conditional_for(codec.weights_sha256, getattr(codec, "analysis_sha256", None))
        if name is None:
            return None
    # Every stream a codec codes (each segment of each camera of an ingester) reads the same model: load
    # it once per codec, its fixed-point form built before any thread can ask for it.
    cache = _CONDITIONALS.setdefault(codec, {})
    key = _file_key(path)
    if key not in cache:
        model, _, sha = _load_conditional(codec, path)
        model.exact()
        cache[key] = (model, name, sha)
    return cache[key]


def _beside(codec: FrameCodec, name: str | None) -> tuple[str, str] | None:
    """``(name, file)`` of a conditional model listed in the ``manifest.json`` beside the weights file
    ``codec`` was loaded from (what ``vidsieve train --joint --export`` writes): ``name``, or the one trained
    for its weights; None when there is no such manifest or entry."""
    from pathlib import Path

    from .zoo import MANIFEST, read_manifest, sha256_file, shipped_conditional_for

    where = getattr(codec, "weights_path", None)
    if where is None or (name is not None and name.endswith(WEIGHTS_SUFFIXES)):
        return None
    mpath = Path(where).parent / "manifest.json"
    if not mpath.is_file() or mpath.resolve() == MANIFEST.resolve():
        return None
    entries = read_manifest(mpath).get("conditional", {})
    if name is None:
        name = shipped_conditional_for(codec.weights_sha256, getattr(codec, "analysis_sha256", None), str(mpath))
    entry = entries.get(name) if name else None
    if not isinstance(entry, dict) or "file" not in entry:
        return None
    path = mpath.parent / str(entry["file"])
    if not path.is_file():
        raise ModelError(f"weights file missing: {path} (listed in {mpath})")
    if sha256_file(path) != entry.get("sha256"):
        raise ModelError(f"weights file {path} does not match its sha256 in {mpath}")
    return name, str(path)


def _file_key(name: str):
    """A shipped name, or a weights file as it is now (a file written again is another model)."""
    import os

    try:
        st = os.stat(name)
    except OSError:
        return name
    return (os.path.abspath(name), st.st_mtime_ns, st.st_size)


#: Conditional models loaded for each live codec, by name.
_CONDITIONALS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _load_conditional(codec: FrameCodec, name: str):
    from .conditional import ConditionalEntropyModel

    state, sha = conditional_weights(name)
    try:
        model = ConditionalEntropyModel.from_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        raise ModelError(f"{name} is not a conditional entropy model's weights: {str(exc).splitlines()[0]}") from None
    if isinstance(codec, GainedCodec):
        try:
            model.use_scale_table(codec.model.gaussian_conditional.scale_table)
        except ValueError as exc:
            raise ModelError(f"{name} cannot serve {codec.name}: {exc}") from None
    return model, name, sha


def check_exact_tables(codec: GainedCodec, conditional, name: str) -> None:
    """Refuse a predicted stream whose entropy tables were computed here rather than shipped with the
    weights: computing them is float work that may differ between machines, so such a stream might not
    decode on another."""
    if not getattr(codec, "tables_shipped", True):
        raise ModelError(f"{codec.name}'s weights carry no entropy-coding tables, so its predicted streams would "
                         "not decode the same on every machine; export them with vidsieve.training.export")
    if not conditional.tables_shipped:
        raise ModelError(f"the conditional model {name} carries no entropy-coding tables; export it with "
                         "python -m vidsieve.training.inter (its export writes them)")


def stream_encoder(codec: FrameCodec, time_base, intra_period: float = DEFAULT_INTRA_PERIOD,
                   predict: bool = True, conditional: str | None = None,
                   block_px: int = DEFAULT_BLOCK_PX, scale: float = 1.0,
                   size: tuple[int, int] | None = None, motion: bool = False,
                   stabilise: bool = True) -> StreamEncoder:
    """The stream encoder for ``codec``: predicted frames where a conditional entropy model exists for
    its weights (``conditional`` names another: a shipped name or a weights file), else intra only.
    ``block_px``: the smallest block predicted frames choose a mode for (64, 32 or 16 pixels); ``scale``:
    code frames of ``size`` (width, height) at this fraction of it, the decoder scaling them back up;
    ``motion``: predicted frames move their references by vectors where that pays (:mod:`.motion`);
    ``stabilise``: a predicted frame that moved as a whole is coded aligned and shown moved (:mod:`.stabilise`)."""

    if block_px not in (16, 32, 64):
        raise ValueError(f"block_px must be 16, 32 or 64, not {block_px}")
    if scale != 1 and size is None:
        raise ValueError("a scaled stream needs the source's size")
    coded = coded_size(size[0], size[1], scale) if scale != 1 else None  # checks scale before any loading
    enc: StreamEncoder = IntraStreamEncoder(codec)
    if predict and isinstance(codec, GainedCodec):
        found = load_conditional(codec, conditional)
        if found is not None:
            from .predictive_encoder import PredictiveStreamEncoder

            model, name, sha = found
            check_exact_tables(codec, model, name)
            enc = PredictiveStreamEncoder(codec, model, time_base, intra_period, name, sha,
                                          min_block=block_px // 16, motion=motion, stabilise=stabilise)
    if coded is not None and coded != tuple(size):
        enc = ScaledStreamEncoder(enc, size[0], size[1], scale)
    return enc


def stream_decoder(codec: FrameCodec, description: dict | None = None, conditional: str | None = None) -> StreamDecoder:
    """The decoder of a stream that ``description`` (its header's) says ``codec`` coded; ``conditional``
    names the conditional model's weights when the file's are not the shipped ones."""

    description = dict(description or {})
    if "scale" in description:  # coded smaller than shown: the inner stream's pictures, scaled back up
        coded, shown = scaled_sizes(description.pop("scale"))
        return ScaledStreamDecoder(stream_decoder(codec, description, conditional), coded, shown)
    if description.get("coder") != "predictive":
        return IntraStreamDecoder(codec)
    if not isinstance(codec, GainedCodec):
        raise ModelError(f"{codec.name} cannot decode predicted frames")
    found = load_conditional(codec, conditional or description.get("conditional"))
    want = description.get("conditional_sha256", "")
    if found is None or (conditional is None and found[2] != want):
        raise ModelError(f"this file's predicted frames need the conditional model {description.get('conditional')} "
                         f"(sha256 {want[:12]}...), which is not installed")
    from .predictive import PredictiveStreamDecoder

    check_exact_tables(codec, found[0], found[1])
    return PredictiveStreamDecoder(codec, found[0])
