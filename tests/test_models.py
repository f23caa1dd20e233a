"""The variable-rate hyperprior's own parts (codec/models.py)."""

import torch

from vidsieve.codec.registry import load_codec


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
