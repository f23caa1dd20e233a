"""The variable-rate hyperprior's own parts (codec/models.py)."""

import pytest
import torch
from compressai.layers import GDN
from vidsieve.codec.layers import FrozenGDN
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
