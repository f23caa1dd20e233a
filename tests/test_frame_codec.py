import numpy as np
import pytest

from vidsieve.codec.frame_codec import as_rgb, unpack
from vidsieve.datasets.synthetic import background
from vidsieve.errors import FormatError
from vidsieve.pipeline import psnr


def scene(h, w, seed=0):
    return background(w, h, seed).astype(np.uint8)


@pytest.mark.parametrize("h,w", [(1, 1), (17, 33), (64, 64), (65, 129), (120, 160)])
def test_round_trip_any_size_and_exact_reconstruction(codec, h, w):
    frame = scene(h, w)
    enc = codec.encode_batch([frame], [5.0])[0]
    dec = codec.decode(enc.data)
    assert dec.shape == (h, w, 3) and dec.dtype == np.uint8
    # The decoder gives back exactly what the encoder reported.
    assert np.array_equal(dec, enc.recon)
    p = unpack(enc.data)
    assert (p.width, p.height) == (w, h)


def test_4k_still(codec):
    frame = scene(2160, 3840, seed=3)
    data = codec.encode(frame, 3)
    dec = codec.decode(data)
    assert dec.shape == frame.shape
    # Garbage would be no closer to the input than to another scene.
    assert psnr(frame, dec) > psnr(scene(2160, 3840, seed=4), dec) + 3


def test_quality_orders_rate_and_distortion(codec):
    frame = scene(128, 192, seed=1)
    sizes, psnrs = [], []
    for q in (1, 2.5, 4, 6, 8):
        enc = codec.encode_batch([frame], [q])[0]
        sizes.append(len(enc.data))
        psnrs.append(psnr(frame, enc.recon))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert psnrs[-1] > psnrs[0] + 2


def test_fractional_quality_lands_between(codec):
    frame = scene(128, 128, seed=2)
    n = {q: len(codec.encode(frame, q)) for q in (3.0, 3.5, 4.0)}
    assert n[3.0] <= n[3.5] <= n[4.0]


def test_batch_equals_single(codec):
    frames = [scene(96, 96, s) for s in range(3)] + [scene(50, 70, 9)]
    batch = codec.encode_batch(frames, [2, 4, 6, 3])
    for f, q, e in zip(frames, [2, 4, 6, 3], batch):
        assert codec.decode(e.data).shape == f.shape
        assert np.array_equal(codec.decode(e.data), e.recon)
    assert codec.decode_batch([e.data for e in batch])[3].shape == (50, 70, 3)


@pytest.mark.parametrize("q", [0.5, 8.5, float("nan")])
def test_quality_out_of_range(codec, q):
    with pytest.raises(ValueError):
        codec.encode(scene(16, 16), q)


def test_gray_rgba_and_16bit_inputs(codec):
    g = scene(40, 40)[:, :, 0]
    assert codec.decode(codec.encode(g, 4)).shape == (40, 40, 3)
    rgba = np.dstack([scene(40, 40), np.full((40, 40), 255, np.uint8)])
    assert codec.decode(codec.encode(rgba, 4)).shape == (40, 40, 3)
    deep = scene(40, 40).astype(np.uint16) * 257
    assert np.array_equal(as_rgb(deep), scene(40, 40))


def test_corrupt_payload_is_a_format_error(codec):
    data = bytearray(codec.encode(scene(64, 64), 4))
    with pytest.raises(FormatError):
        codec.decode(bytes(data[:10]))
    data[1] ^= 0xFF  # width no longer matches the latent size
    with pytest.raises(FormatError):
        codec.decode(bytes(data))
    with pytest.raises(FormatError):
        codec.decode(bytes(data) + b"x")
