"""The variable-rate hyperprior's own parts (codec/models.py)."""

import pytest
import torch
from compressai.layers import GDN
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
        x = (torch.randn(2, gdn.beta.numel(), 24, 40, generator=g) * 3).contiguous(memory_format=layout)
        frozen = FrozenGDN(gdn).to(memory_format=layout)
        with torch.inference_mode():
            want = gdn(x)
            assert torch.equal(frozen(x), want)
            assert not torch.equal(want, x)  # the layer does something to compare


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
