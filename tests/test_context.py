"""The conditional model with context: predicted differences coded in two checkerboard passes
(codec/conditional.py, payload version 8 in codec/latent_codecs.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import source_frame
from vidsieve.codec.blocks import BLOCK
from vidsieve.codec.conditional import ConditionalEntropyModel, anchors
from vidsieve.codec.latent_codecs import S_DIFF, S_DIFF_SECOND, conditional_in_blocks, coded_difference
from vidsieve.codec.payload import PREDICTED, unpack
from vidsieve.codec.pixels import pad, to_tensor
from vidsieve.codec.predictive import PredictiveStreamDecoder
from vidsieve.codec.predictive_encoder import PredictiveStreamEncoder
from vidsieve.codec.registry import conditional_weights, load_conditional
from vidsieve.datasets.synthetic import Mover, Scene, render
from vidsieve.errors import FormatError

TB = Fraction(1, 10)


def with_context(codec, seed: int = 0) -> ConditionalEntropyModel:
    """The shipped model without context, given a context branch of small random weights (a trained
    branch starts at zero, which would make both passes the same)."""
    model = ConditionalEntropyModel(codec.model.M, context=True)
    state = conditional_weights("vidsieve-inter-wide")[0]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith(("ctx.", "refine.")) for k in missing)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in list(model.ctx.parameters()) + list(model.refine.parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        model.refine[-1].bias.zero_()
    model.tables_shipped = True  # the bottleneck's tables are the shipped model's
    return model.use_scale_table(codec.model.gaussian_conditional.scale_table)


@pytest.fixture(scope="module")
def context_model(codec):
    return with_context(codec)


@pytest.fixture(scope="module")
def plain(codec):
    return load_conditional(codec, "vidsieve-inter-wide")[0]


def scene_frames(frames=8):
    """A mover and a light that brightens at frame 3: blocks coded against a reference, not only alone."""
    scene = Scene(width=256, height=192, frames=frames, noise=1.0, movers=[Mover(0, 8, (300, 140), 0.5)],
                  light_change_at=3, light_gain=1.1)
    return [rgb for _, rgb in render(scene)]


def code(codec, model, frames, **kw):
    enc = PredictiveStreamEncoder(codec, model, TB, 10.0, "test", "0" * 64, **kw)
    return enc, [enc.encode(f, 4.0, i) for i, f in enumerate(frames)]


def test_anchors_are_a_checkerboard_on_the_frames_grid():
    a = anchors((4, 6))[0, 0]
    assert a.sum() == 12 and a[0, 0] and not a[0, 1] and a[1, 1]
    # A window's anchors are the frame's there, wherever it starts.
    assert torch.equal(anchors((2, 3), (1, 2))[0, 0], a[1:3, 2:5])


def test_the_second_pass_starts_as_the_first_and_reads_only_decoded_anchors(codec, plain):
    """A fresh branch (zero output) leaves every parameter as the model without context gives it; a trained
    one changes the second pass's, and only from what the first pass decoded."""
    fresh = ConditionalEntropyModel(codec.model.M, context=True)
    fresh.load_state_dict(conditional_weights("vidsieve-inter-wide")[0], strict=False)
    g = torch.Generator().manual_seed(1)
    diff, ref = torch.randn(1, 192, 8, 8, generator=g) * 3, torch.randn(1, 192, 8, 8, generator=g) * 5
    with torch.no_grad():
        z = torch.round(plain.h_a(diff))
        for got, want in zip(fresh.eval().params(z, ref, diff), plain.params(z, ref)):
            assert torch.equal(got, want)
        model = with_context(codec)
        v1, mu1 = model.params(z, ref)
        v2, mu2 = model.params(z, ref, diff)
        first = anchors(diff.shape[-2:]).expand_as(v1)
        assert torch.equal(v2[first], v1[first]) and not torch.equal(v2[~first], v1[~first])
        other = diff.clone()
        other[~first] += 5.0  # what the second pass codes is not its own context
        assert torch.equal(model.params(z, ref, other)[0], v2)


def test_second_pass_parameters_in_windows_are_the_whole_frames(codec, context_model):
    """The second pass's exact parameters at a window, computed with just the positions its layers read
    (the features and the decoded anchors around it), are the whole frame's, bit for bit."""
    exact = context_model.exact()
    assert exact.windowed
    m = codec.model
    with torch.inference_mode():
        y = m.gained_latent(pad(to_tensor(source_frame(512, 320, seed=5))), [4.0]).double()
        ref = torch.round(m.gained_latent(pad(to_tensor(source_frame(512, 320, seed=6))), [4.0])).double()
        cz = torch.round(context_model.h_a((y - ref).float()))
        seen = torch.where(anchors(y.shape[-2:]), torch.round(y - ref), torch.zeros_like(y))
        whole = exact(cz, ref, seen=seen)
        assert not torch.equal(whole[0], exact(cz, ref)[0])
        H, W = ref.shape[-2:]
        for window in [((0, 4), (0, 4)), ((8, 12), (28, 32)), ((5, 6), (9, 10)), ((0, H), (0, W))]:
            (r0, r1), (c0, c1) = window
            for got, want in zip(exact(cz, ref, window=window, seen=seen), whole):
                assert torch.equal(got, want[..., r0:r1, c0:c1]), window
        needed = np.zeros((H // BLOCK, W // BLOCK), bool)
        needed[0, 0] = needed[3, 5:7] = True
        sel = torch.from_numpy(needed).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
        for got, want in zip(conditional_in_blocks(exact, needed, cz, ref, seen=seen), whole):
            assert torch.equal(got[..., sel], want[..., sel]) and not got[..., ~sel].any()


def test_a_stream_with_context_is_version_8_decodes_exactly_and_spends_its_second_string(codec, context_model):
    frames = scene_frames()
    enc, coded = code(codec, context_model, frames)
    dec = PredictiveStreamDecoder(codec, context_model)
    seconds = 0
    for i, c in enumerate(coded):
        p = unpack(c.data)
        if not c.intra:
            assert p.version == PREDICTED
            seconds += len(p.strings[S_DIFF_SECOND])
            if p.strings[S_DIFF_SECOND]:
                assert p.strings[S_DIFF]  # both halves of the board
        assert np.array_equal(dec.decode(c.data, i, c.intra), c.recon)
    assert seconds > 0 and torch.equal(dec.latent, enc.refs.prev)


def test_a_model_without_context_codes_the_difference_in_one_pass(codec, plain):
    enc, coded = code(codec, plain, scene_frames(frames=5))
    predicted = [unpack(c.data) for c in coded if not c.intra]
    assert {p.version for p in predicted} == {PREDICTED}
    assert any(p.strings[S_DIFF] for p in predicted) and not any(p.strings[S_DIFF_SECOND] for p in predicted)
    dec = PredictiveStreamDecoder(codec, plain)
    for i, c in enumerate(coded):
        assert np.array_equal(dec.decode(c.data, i, c.intra), c.recon)


def test_a_second_pass_without_a_model_to_read_it_is_a_format_error(codec, context_model, plain):
    """Frames coded in two passes, read with a model without context (another model than the one they were
    coded with): an error of the file's format in one line, not a crash."""
    _, coded = code(codec, context_model, scene_frames(frames=5))
    dec = PredictiveStreamDecoder(codec, plain)
    dec.decode(coded[0].data, 0, True)
    with pytest.raises(FormatError, match="second pass"):
        for i, c in enumerate(coded[1:], 1):
            dec.decode(c.data, i, False)


def test_the_decoded_difference_is_the_encoders_pass_by_pass(codec, context_model):
    """:func:`coded_difference` gives the encoder and the decoder the same difference: the first pass's
    symbols at coded anchors, the second's elsewhere, each read with its own pass's tables."""
    exact = context_model.exact()
    m = codec.model
    with torch.inference_mode():
        y = m.gained_latent(pad(to_tensor(source_frame(256, 192, seed=2))), [4.0]).double()
        ref = torch.round(m.gained_latent(pad(to_tensor(source_frame(256, 192, seed=3))), [4.0])).double()
        diff = y - ref
        cz = torch.round(context_model.h_a(diff.float()))
        H, W = y.shape[-2:]
        needed = np.zeros((H // BLOCK, W // BLOCK), bool)
        needed[1, 1:3] = True
        coded = torch.from_numpy(needed).repeat_interleave(BLOCK, 0).repeat_interleave(BLOCK, 1)
        coded = coded[None, None].expand_as(y)
        calls = []

        def rounded(i, indexes, mu, where):
            calls.append((i, int(where.sum())))
            return torch.round(diff - mu)[where]

        means, sym = coded_difference(exact, needed, cz, ref, coded, rounded, two_pass=True)
        got = means + sym
        assert calls == [(0, int(coded.sum()) // 2), (1, int(coded.sum()) // 2)]
        assert not got[~coded].any() and torch.equal(sym, torch.round(sym))
        assert float((got - diff)[coded].abs().max()) <= 0.5 + 1e-9  # each value within half a step


_DECODE = r"""
import hashlib, sys, torch
sys.path.insert(0, sys.argv[1])
from test_context import with_context
from vidsieve.codec.registry import load_codec
from vidsieve.codec.predictive import PredictiveStreamDecoder
codec = load_codec()
dec = PredictiveStreamDecoder(codec, with_context(codec))
h = hashlib.sha256()
for i, path in enumerate(sys.argv[2:]):
    dec.decode(open(path, "rb").read(), i)
    h.update(dec.latent.numpy().tobytes())
print(h.hexdigest())
"""


def test_two_pass_references_are_the_same_with_any_thread_count(tmp_path, codec, context_model):
    frames = scene_frames(frames=5)
    _, coded = code(codec, context_model, frames)
    paths = []
    want = hashlib.sha256()
    dec = PredictiveStreamDecoder(codec, context_model)
    for i, c in enumerate(coded):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(c.data)
        dec.decode(c.data, i)
        want.update(dec.latent.numpy().tobytes())
    for threads in (1, 3):
        env = dict(os.environ, VIDSIEVE_THREADS=str(threads), PYTHONWARNINGS="ignore")
        got = subprocess.run([sys.executable, "-c", _DECODE, os.path.dirname(__file__), *map(str, paths)],
                             env=env, check=True, capture_output=True, text=True, timeout=300).stdout.strip()
        assert got == want.hexdigest(), threads


def test_compress_takes_another_conditional_model_by_name_and_refuses_an_unknown_one(tmp_path):
    from conftest import assert_clean_error, run_cli
    from vidsieve.datasets.synthetic import write_scene

    src = write_scene(Scene(width=192, height=128, frames=4, noise=1.0, movers=[Mover(0, 4, (300, 140), 0.5)]),
                      tmp_path / "s.mkv")
    out = tmp_path / "s.vsv"
    run_cli("compress", src, "-o", out, "--keep-all", "--conditional", "vidsieve-inter-wide", check=True)
    assert "predicted under the conditional model vidsieve-inter-wide\n" in run_cli("info", out, check=True).stdout
    run_cli("decompress", out, "-o", tmp_path / "s.mp4", check=True)
    assert_clean_error(run_cli("compress", src, "-o", tmp_path / "t.vsv", "--conditional", "no-such-model"),
                       "no-such-model")
    assert not (tmp_path / "t.vsv").exists()
