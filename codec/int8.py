"""Integer (int8) analysis and synthesis transforms, run by ONNX Runtime.

Only the two big transforms change with the precision: the entropy model's scales and
means are computed in fixed point whatever the transforms compute
(:class:`~.entropy.ExactHyperSynthesis`), so a stream coded with either precision decodes
with either; an int8 analysis codes slightly different latents, an int8 synthesis makes
slightly different pixels from the same latent.

The int8 forms are static post-training quantisations (Jacob et al., "Quantization and
Training of Neural Networks for Efficient Integer-Arithmetic-Only Inference", CVPR 2018):
weights per output channel, activations per tensor with ranges calibrated on frames, in
ONNX Runtime's QDQ form, whose CPU kernels multiply 8-bit integers (VNNI where the CPU has
it). Two things keep the rate-distortion loss small:

- cross-layer equalisation (Nagel et al., "Data-Free Quantization Through Weight
  Equalization and Bias Correction", ICCV 2019): after a GDN the channels' ranges differ by
  orders of magnitude, and one per-tensor scale for all of them leaves the small ones a
  few levels. Each channel is divided by ``s_c`` where it is made and the next layer's
  weights that read it are multiplied by ``s_c``; the division folds exactly into the
  GDN (its output ``x_c / sqrt(beta_c + sum_j gamma_cj x_j^2)`` scales by ``1 / s_c`` when
  row ``c`` of ``beta`` and ``gamma`` scales by ``s_c^2``; by ``s_c^-2`` for an inverse GDN);
- layers that stay float: the GDNs' normalisation pools (squares with a range no 8-bit
  scale covers) and, by default, the first and last convolution of each transform (the
  ones that touch pixels and the latent), where quantisation error is not spread over
  later layers (measured in docs/RESULTS.md).

The quantised graphs are built once from the float weights (:func:`build`, which needs the
``onnx`` package) and ship beside them (:func:`vidsieve.training.quantize.write_graphs`); at run
time only ``onnxruntime`` is needed.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..errors import ModelError
from . import PRECISIONS
from .layers import FrozenGDN, PolyphaseDeconv, freeze_gdn

#: Which convolutions of a transform stay float besides the GDN pools: the first and the last.
KEEP_FLOAT_ENDS = True
#: Equalisation strength: ``s_c = (range_c / mean range) ** alpha`` (0: none; 1: equal ranges).
EQUALIZE_ALPHA = 0.5


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def inference_copy(seq: nn.Sequential) -> nn.Sequential:
    """A copy of a trained transform in the form that is exported: GDNs frozen, every transposed
    convolution as a convolution and a pixel shuffle (ONNX Runtime quantises convolutions)."""
    seq = freeze_gdn(copy.deepcopy(seq)).eval().requires_grad_(False)
    for i, layer in enumerate(seq):
        if isinstance(layer, nn.ConvTranspose2d):
            seq[i] = PolyphaseDeconv(layer)
    return seq


@torch.no_grad()
def equalize(seq: nn.Sequential, inputs: Sequence[torch.Tensor], alpha: float = EQUALIZE_ALPHA) -> nn.Sequential:
    """Cross-layer equalisation of an :func:`inference_copy`, in place: each GDN's output channels
    brought towards one range (ranges measured on ``inputs``), the next layer compensating."""
    ranges: dict[int, torch.Tensor] = {}
    gdns = [i for i, m in enumerate(seq) if isinstance(m, FrozenGDN) and i + 1 < len(seq)]

    def keep(i):
        def hook(_m, _inp, out):
            r = out.abs().amax((0, 2, 3))
            ranges[i] = torch.maximum(ranges[i], r) if i in ranges else r
        return hook

    handles = [seq[i].register_forward_hook(keep(i)) for i in gdns]
    try:
        for x in inputs:
            seq(x.contiguous())
    finally:
        for h in handles:
            h.remove()
    for i in gdns:
        r = ranges[i].clamp_min(1e-6)
        s = (r / r.mean()) ** alpha
        gdn, nxt = seq[i], seq[i + 1]
        f = s**-2 if gdn.inverse else s**2
        gdn.beta.mul_(f)
        gdn.gamma.mul_(f[:, None, None, None])
        nxt.weight.mul_(s[None, :, None, None])  # both Conv2d and PolyphaseDeconv hold [out, in, k, k]
    return seq


def export_onnx(seq: nn.Sequential, channels: int) -> bytes:
    """The transform as an ONNX graph taking any batch and size ([B, channels, H, W] float32)."""
    buf = io.BytesIO()
    example = torch.zeros(1, channels, 64, 64)
    torch.onnx.export(seq, (example,), buf, dynamo=False, input_names=["x"], output_names=["y"], opset_version=17,
                      dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"},
                                    "y": {0: "batch", 2: "out_height", 3: "out_width"}})
    return buf.getvalue()


def quantize(graph: bytes, samples: Sequence[torch.Tensor], keep_float_ends: bool = KEEP_FLOAT_ENDS) -> bytes:
    """Static int8 quantisation (QDQ) of an exported transform, calibrated on ``samples``."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise ModelError(
            f"building int8 transforms needs the quantiser's packages ({exc}): pip install 'vidsieve[quantize]'"
        ) from None

    model = onnx.load_from_string(graph)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # A GDN's pool is the convolution whose input is a square (x * x).
    squares = {n.output[0] for n in model.graph.node if n.op_type == "Mul" and n.input[0] == n.input[1]}
    exclude = [n.name for n in convs if n.input[0] in squares]
    if keep_float_ends:
        exclude += [convs[0].name, convs[-1].name]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"x": x.contiguous().numpy()}

    root = logging.getLogger()
    level = root.level
    # The quantiser logs advice about its pre-processing tool (for classifiers) at warning level.
    root.setLevel(max(level, logging.ERROR))
    with tempfile.TemporaryDirectory(prefix="vidsieve-int8-") as d:
        src, dst = os.path.join(d, "float.onnx"), os.path.join(d, "int8.onnx")
        Path(src).write_bytes(graph)
        try:
            quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            op_types_to_quantize=["Conv"], nodes_to_exclude=exclude)
        finally:
            root.setLevel(level)
        return Path(dst).read_bytes()


@torch.no_grad()
def build(model, xs: Sequence[torch.Tensor], qualities: Sequence[float] = (1, 2, 3, 4, 5, 6, 7, 8),
          keep_float_ends: bool = KEEP_FLOAT_ENDS, alpha: float = EQUALIZE_ALPHA) -> tuple[bytes, bytes]:
    """The int8 analysis and synthesis graphs of a trained
    :class:`~.models.GainedMeanScaleHyperprior`, calibrated on images ``xs`` ([B, 3, H, W] in
    [0, 1], sides multiples of 16; the synthesis on their quantised latents at ``qualities``, in turn)."""
    g_a, g_s = inference_copy(model.g_a), inference_copy(model.g_s)
    latents = []
    for i, x in enumerate(xs):
        gain, inv_gain = model.gains(torch.tensor([float(qualities[i % len(qualities)])]))
        latents.append(torch.round(g_a(x) * gain) * inv_gain)
    if alpha:
        equalize(g_a, xs, alpha)
        equalize(g_s, latents, alpha)
    analysis = quantize(export_onnx(g_a, 3), xs, keep_float_ends)
    synthesis = quantize(export_onnx(g_s, model.M), latents, keep_float_ends)
    return analysis, synthesis


class OnnxTransform:
    """One transform's ONNX graph in an ONNX Runtime session on the CPU, made on first use with
    as many threads as torch has then (an executor that codes with one thread gets one)."""

    def __init__(self, graph: bytes):
        self.graph = graph
        self._session = None
        self._threads = 0

    def session(self):
        threads = torch.get_num_threads()
        if self._session is None or threads != self._threads:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            so.log_severity_level = 3
            # ONNX Runtime's workers spin-wait after each run by default, taking the cores from the
            # torch work that follows (the entropy path): measured slower than float without this.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            try:
                self._session = ort.InferenceSession(self.graph, so, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own types for a graph it cannot load
                raise ModelError(f"int8 transform does not load: {str(exc).splitlines()[0][:200]}") from None
            self._threads = threads
        return self._session

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session().run(None, {"x": x.detach().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)


class Int8Transforms:
    """The int8 analysis and synthesis of one set of weights."""

    def __init__(self, analysis: bytes, synthesis: bytes):
        self.analysis = OnnxTransform(analysis)
        self.synthesis = OnnxTransform(synthesis)


def load(name: str, float_sha256: str, folder: str | os.PathLike | None = None) -> Int8Transforms:
    """The shipped int8 transforms of the model ``name`` whose float weights are ``float_sha256``.

    Raises :class:`~vidsieve.errors.ModelError` when none ship for those weights or a file is
    missing or not what the manifest says."""
    import hashlib

    from .zoo import MANIFEST, read_manifest

    folder = Path(folder) if folder else MANIFEST.parent
    entry = read_manifest(folder / "manifest.json").get("int8", {}).get(name)
    if entry is None or entry.get("float_sha256") != float_sha256:
        raise ModelError(f"no int8 transforms ship for {name} with weights {float_sha256[:12]} "
                         "(build them: python -m vidsieve.training.quantize)")
    graphs = []
    for part in ("analysis", "synthesis"):
        path = folder / entry[part]["file"]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"int8 {part} of {name} unreadable: {exc.strerror or exc}") from None
        if hashlib.sha256(data).hexdigest() != entry[part]["sha256"]:
            raise ModelError(f"int8 {part} of {name} ({path.name}) does not match its manifest (damaged?)")
        graphs.append(data)
    return Int8Transforms(*graphs)
