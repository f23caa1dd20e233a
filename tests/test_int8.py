"""The int8 transforms (codec.int8): shipped graphs, streams that decode at either precision, the build."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import assert_clean_error, run_cli, source_frame
from vidsieve.codec import DEFAULT_MODEL, int8
from vidsieve.codec.registry import load_codec
from vidsieve.errors import ModelError
from vidsieve.metrics import psnr


@pytest.fixture(scope="module")
def codec8():
    return load_codec(precision="int8")


def test_the_default_model_ships_int8_transforms_for_its_weights(codec, codec8):
    assert codec.precision == "float" and codec8.precision == "int8"
    assert codec8.weights_sha256 == codec.weights_sha256
    # Float and int8 analyses of one picture agree closely, and are not the same computation.
    x = torch.from_numpy(source_frame(256, 192, 3)).permute(2, 0, 1)[None].float() / 255
    a, b = codec.model.analysis_transform(x), codec8.model.analysis_transform(x)
    assert a.shape == b.shape
    rel = float((a - b).abs().mean() / a.abs().mean())
    assert 0 < rel < 0.25, rel  # most latent values are near 0: see the coding tests for what it costs


def test_a_float_stream_decodes_at_int8_from_the_same_latent(codec, codec8):
    frame = source_frame(320, 192, 5)
    data = codec.encode(frame, 5.0)
    # Precision is not part of the entropy coding: the exact latent is the same.
    assert torch.equal(codec.decode_symbols(data), codec8.decode_symbols(data))
    f, i = codec.decode(data), codec8.decode(data)
    assert psnr(frame, i) > psnr(frame, f) - 1.5
    assert psnr(f, i) > 35


def test_an_int8_stream_decodes_in_float_and_codes_about_as_many_bytes(codec, codec8):
    frame = source_frame(320, 192, 6)
    data8, dataf = codec8.encode(frame, 4.0), codec.encode(frame, 4.0)
    assert abs(len(data8) - len(dataf)) < 0.1 * len(dataf)
    assert psnr(frame, codec.decode(data8)) > psnr(frame, codec.decode(dataf)) - 1.5
    # The encoder's reconstruction is what an int8 decoder gives back, bit for bit on one machine.
    enc = codec8.encode_batch([frame], [4.0])[0]
    assert np.array_equal(enc.recon, codec8.decode(enc.data))


def test_entropy_coding_of_a_latent_does_not_depend_on_the_precision(codec, codec8):
    y = codec.model.gained_latent(torch.from_numpy(source_frame(256, 256, 7)).permute(2, 0, 1)[None].float() / 255, [3.0])
    assert codec.model.code_latent(y)[0] == codec8.model.code_latent(y)[0]


def test_predicted_streams_at_int8_decode_at_either_precision(tmp_path, small_clip):
    from conftest import read_frames
    from vidsieve.pipeline import CompressOptions, compress, decoded_frames

    out = tmp_path / "c.vsv"
    s = compress(small_clip, out, CompressOptions(quality=4, keep_all=True, precision="int8", max_frames=12),
                 progress=False)
    assert s.frames == 12
    frames = read_frames(small_clip)[0][:12]
    got_f = [d.rgb for d in decoded_frames(out)]
    got_i = [d.rgb for d in decoded_frames(out, precision="int8")]
    assert len(got_f) == len(got_i) == 12
    for a, f, i in zip(frames, got_f, got_i):
        assert psnr(a, i) > psnr(a, f) - 1.5 and psnr(a, f) > 28


def test_damaged_or_missing_int8_graphs_are_refused(tmp_path, codec):
    folder = tmp_path / "weights"
    folder.mkdir()
    from vidsieve.codec.zoo import MANIFEST

    manifest = json.loads(MANIFEST.read_text())
    entry = manifest["int8"][DEFAULT_MODEL]
    for part in ("analysis", "synthesis"):
        shutil.copy(MANIFEST.parent / entry[part]["file"], folder)
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "int8": {DEFAULT_MODEL: entry}}))
    assert isinstance(int8.load(DEFAULT_MODEL, codec.weights_sha256, folder), int8.Int8Transforms)
    with pytest.raises(ModelError, match="no int8 transforms ship"):
        int8.load(DEFAULT_MODEL, "0" * 64, folder)
    path = folder / entry["synthesis"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match its manifest"):
        int8.load(DEFAULT_MODEL, codec.weights_sha256, folder)
    path.unlink()
    with pytest.raises(ModelError, match="unreadable"):
        int8.load(DEFAULT_MODEL, codec.weights_sha256, folder)


def test_precision_errors_are_one_line(tmp_path):
    with pytest.raises(ModelError, match="precision must be one of"):
        load_codec(precision="int4")
    with pytest.raises(ModelError, match="float only"):
        load_codec("bmshj2018-hyperprior", precision="int8")
    r = run_cli("compress", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.vsv"), "--precision", "int2")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "argument --precision: invalid choice" in r.stderr.strip().splitlines()[-1]
    # A zoo model asked for at int8 from the CLI: one line, before any input is read.
    r = run_cli("compress", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.vsv"), "--model",
                "bmshj2018-hyperprior", "--precision", "int8", "--quality", "3")
    assert_clean_error(r)


def test_equalization_keeps_the_function_and_evens_the_ranges():
    from vidsieve.codec.models import GainedMeanScaleHyperprior

    torch.manual_seed(0)
    model = GainedMeanScaleHyperprior(16, 24).eval()
    with torch.no_grad():
        # Trained GDNs leave channels at very different scales; give the random one some.
        model.g_a[2].weight.mul_(torch.logspace(-1, 1, 16)[:, None, None, None])
    seq = int8.inference_copy(model.g_a)
    x = torch.rand(2, 3, 64, 64)
    before = seq(x)
    ranges = {}
    h = seq[3].register_forward_hook(lambda m, i, o: ranges.__setitem__("r", o.abs().amax((0, 2, 3))))
    seq(x)
    r0 = ranges["r"]
    int8.equalize(seq, [x], alpha=1.0)
    after = seq(x)
    r1 = ranges["r"]
    h.remove()
    assert torch.allclose(before, after, rtol=1e-4, atol=1e-5)
    assert float(r1.max() / r1.min()) < 1.01 < float(r0.max() / r0.min())


def test_build_quantizes_the_middle_convolutions_and_keeps_the_ends_float():
    onnx = pytest.importorskip("onnx", reason="building int8 graphs needs the onnx package")
    from vidsieve.codec.models import GainedMeanScaleHyperprior

    torch.manual_seed(0)
    model = GainedMeanScaleHyperprior(16, 24).eval()
    xs = [torch.rand(1, 3, 64, 96) for _ in range(4)]
    analysis, synthesis = int8.build(model, xs, qualities=(2, 6))
    for graph in (analysis, synthesis):
        g = onnx.load_from_string(graph).graph
        convs = [n for n in g.node if n.op_type == "Conv"]
        dq_out = {n.output[0] for n in g.node if n.op_type == "DequantizeLinear"}
        quantized = [c.name for c in convs if c.input[0] in dq_out]
        # 7 convolutions: 4 layers and 3 GDN pools; the two middle layers are int8, the rest float.
        assert len(convs) == 7 and len(quantized) == 2, quantized
    t = int8.Int8Transforms(analysis, synthesis)
    x = torch.rand(1, 3, 128, 64)
    with torch.no_grad():
        want = int8.inference_copy(model.g_a)(x)
    got = t.analysis(x)
    assert got.shape == want.shape
    assert float((got - want).abs().mean() / want.abs().mean()) < 0.1
