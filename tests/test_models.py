"""The variable-rate hyperprior's own parts (codec/models.py)."""

import pytest
import torch
import torch.nn.functional as F
from compressai.layers import GDN
from vidsieve.codec.fixed_point import ExactHyperSynthesis, IntegerConv
from vidsieve.codec.layers import FrozenGDN, PolyphaseDeconv
from vidsieve.codec.models import GainedMeanScaleHyperprior
from vidsieve.codec.registry import load_codec
from vidsieve.codec.zoo import load_shipped


def test_scale_indexes_equal_compressais_build_indexes():
    model = load_codec().model
    gc = model.gaussian_conditional
    table = gc.scale_table.float()
    g = torch.Generator().manual_seed(0)
    # Everywhere a scale can land: below the lower bound, between and exactly on the
    # table's entries, one float step either side of them, far above the last.
    spread = torch.exp(torch.empty(96 * 9 * 13).uniform_(-4.0, 5.0, generator=g))
    on = table.repeat(12)
    below, above = torch.nextafter(on, torch.zeros(())), torch.nextafter(on, torch.full((), 1e9))
    scales = torch.cat([spread, on, below, above, torch.tensor([0.0, 1e-12, 1e6])])
    scales = scales[torch.randperm(len(scales), generator=g)][None, None]
    ours, theirs = model.scale_indexes(scales), gc.build_indexes(scales)
    assert ours.dtype == theirs.dtype == torch.int32
    assert torch.equal(ours, theirs)
    # Not a vacuous agreement: every index of the table is used.
    assert set(ours.unique().tolist()) == set(range(len(table)))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_frozen_gdn_is_compressais_gdn_bit_for_bit(layout):
    trained = GainedMeanScaleHyperprior.from_state_dict(load_shipped("vidsieve-hyperprior")[0]).eval()
    gdns = [m for m in [*trained.g_a, *trained.g_s] if isinstance(m, GDN)]
    assert {g.inverse for g in gdns} == {False, True}
    g = torch.Generator().manual_seed(1)
    for gdn in gdns:
        frozen = FrozenGDN(gdn).to(memory_format=layout)
        # One tile, and several with a ragged last one (channels-last inputs go tile by tile).
        for h, w in [(24, 40), (97, 101)]:
            x = (torch.randn(2, gdn.beta.numel(), h, w, generator=g) * 3).contiguous(memory_format=layout)
            with torch.inference_mode():
                want = gdn(x)
                got = frozen(x)
                assert torch.equal(got, want)
                assert got.is_contiguous(memory_format=layout)
                assert not torch.equal(want, x)  # the layer does something to compare
    assert 2 * 97 * 101 > 2 * FrozenGDN.TILE_ROWS


@pytest.mark.parametrize("k,s,p,op", [(5, 2, 2, 1), (3, 2, 1, 1), (4, 2, 1, 0), (5, 3, 1, 0)])
def test_polyphase_deconv_computes_the_transposed_convolution(k, s, p, op):
    g = torch.Generator().manual_seed(2)
    deconv = torch.nn.ConvTranspose2d(16, 3, k, stride=s, padding=p, output_padding=op)
    with torch.no_grad():
        deconv.weight.copy_(torch.randn(deconv.weight.shape, generator=g))
    x = torch.randn(2, 16, 11, 14, generator=g)
    with torch.inference_mode():
        want = deconv(x)
        got = PolyphaseDeconv(deconv)(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == want.shape == (2, 3, 11 * s, 14 * s)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_polyphase_deconv_refuses_what_it_cannot_compute():
    with pytest.raises(ValueError, match="exactly stride"):
        PolyphaseDeconv(torch.nn.ConvTranspose2d(4, 3, 5, stride=2, padding=2))  # output 2n - 1


@pytest.mark.parametrize("layer", [
    torch.nn.ConvTranspose2d(12, 20, 5, stride=2, padding=2, output_padding=1),  # the hyper-synthesis's
    torch.nn.ConvTranspose2d(12, 20, 4, stride=2, padding=1),
    torch.nn.Conv2d(12, 20, 3, padding=1),
    torch.nn.Conv2d(12, 20, 5, padding=2),
    torch.nn.Conv2d(12, 20, 5, stride=2, padding=2),  # not its geometry: torch's own
    torch.nn.ConvTranspose2d(12, 20, 5, stride=2, padding=2),
], ids=lambda m: f"{type(m).__name__}-k{m.kernel_size[0]}-s{m.stride[0]}-p{m.padding[0]}")
@pytest.mark.parametrize("hw", [(1, 1), (5, 9)])
def test_integer_conv_is_torchs_convolution_bit_for_bit(layer, hw):
    g = torch.Generator().manual_seed(4)
    # Integers as ExactHyperSynthesis makes them: products and sums far past float32's
    # 2**24, below float64's 2**53.
    weight = torch.randint(-2**16, 2**16, layer.weight.shape, generator=g).double()
    bias = torch.randint(-2**36, 2**36, (20,), generator=g).double()
    x = torch.randint(-2**22, 2**22, (2, 12, *hw), generator=g).double()
    conv = IntegerConv(layer, weight, bias)
    if isinstance(layer, torch.nn.ConvTranspose2d):
        want = F.conv_transpose2d(x, weight, bias, layer.stride, layer.padding, layer.output_padding)
    else:
        want = F.conv2d(x, weight, bias, layer.stride, layer.padding)
    got = conv(x)
    assert got.shape == want.shape
    assert torch.equal(got, want)
    if isinstance(layer, torch.nn.ConvTranspose2d):
        assert conv.fast == (want.shape[-2:] == (2 * hw[0], 2 * hw[1]))
    else:
        assert conv.fast == (layer.stride == (1, 1))
    # The layer's integers are its own: a second call gives the same.
    assert torch.equal(conv(x), want)


def _hyper_latent(model, seed):
    """A decoded hyper latent as the decoder sees it: integers plus the bottleneck's medians."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(1, model.N, 12, 20, generator=g) * 4
    with torch.inference_mode():
        return model.entropy_bottleneck.decompress(model.entropy_bottleneck.compress(z), z.shape[-2:])


def test_latent_coding_is_compressais_bit_for_bit():
    """code_latent / decode_latent call the rANS coder themselves (tables converted once,
    symbols through numpy): the strings and the latent must be CompressAI's own."""
    model = load_codec().model
    gc = model.gaussian_conditional
    g = torch.Generator().manual_seed(5)
    y = torch.randn(1, model.M, 8, 12, generator=g) * torch.linspace(0.05, 6.0, model.M)[None, :, None, None]
    with torch.inference_mode():
        strings, shape, y_hat = model.code_latent(y)
        scales, means = model.hyper_synthesis(model.entropy_bottleneck.decompress([strings[1]], shape))
        indexes = model.scale_indexes(scales)
        assert strings[0] == gc.compress(y, indexes, means=means)[0]
        theirs = gc.decompress([strings[0]], indexes, means=means)
        ours = model.decode_latent(strings, shape)
    assert ours.dtype == theirs.dtype == torch.float32
    assert torch.equal(ours, theirs) and torch.equal(ours, y_hat)
    assert (y_hat != means).float().mean() > 0.1  # symbols other than zero were coded


@pytest.mark.parametrize("name", ["vidsieve-hyperprior", "vidsieve-hyperprior-wide", "vidsieve-hyperprior-slim"])
def test_exact_hyper_synthesis_does_not_depend_on_summation_order(name):
    import copy

    model = GainedMeanScaleHyperprior.from_state_dict(load_shipped(name)[0]).eval()
    z_hat = _hyper_latent(model, 3)
    exact = ExactHyperSynthesis(model.h_s, model.M)
    # The same sums in another order: the hyper latent's channels reversed, and the first
    # layer's weights with them; and another thread count.
    flipped = copy.deepcopy(model.h_s)
    with torch.no_grad():
        flipped[0].weight.copy_(flipped[0].weight.flip(0))
    z_flipped = z_hat.flip(1)
    with torch.inference_mode():
        scales, means = exact(z_hat)
        threads = torch.get_num_threads()
        torch.set_num_threads(1 if threads > 1 else 2)
        try:
            scales_threads, _ = exact(z_hat)
        finally:
            torch.set_num_threads(threads)
        scales_flipped, _ = ExactHyperSynthesis(flipped, model.M)(z_flipped)
        assert scales.dtype == torch.float64
        assert torch.equal(scales, scales_threads) and torch.equal(scales, scales_flipped)
        # Float arithmetic does depend on it: what the exact form is for.
        assert not torch.equal(model.h_s(z_hat), flipped(z_flipped))
        # And it is the trained transform, to fixed-point precision.
        want_scales, want_means = model.h_s(z_hat).chunk(2, 1)
        torch.testing.assert_close(scales.float(), want_scales, rtol=1e-2, atol=1e-3)
        torch.testing.assert_close(means, want_means, rtol=1e-2, atol=1e-2)
        agree = (model.scale_indexes(scales) == model.scale_indexes(want_scales)).float().mean()
        assert agree > 0.99
