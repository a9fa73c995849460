"""Tensor-slice loaders: every row once per epoch, nesting kept, DataBunch and Learner compatible."""
import pytest
import torch

from deftly.core.errors import DataError
from deftly.data import DataBunch, TensorBatches, tensor_loader


def _ds(n=10):
    cats = torch.arange(n).view(-1, 1)
    conts = torch.arange(n, dtype=torch.float32).view(-1, 1) / 10
    return TensorBatches((cats, conts), torch.arange(n) * 2)


def test_batches_are_slices_covering_each_row_once():
    torch.manual_seed(0)
    dl = tensor_loader(_ds(10), bs=4, shuffle=True)
    assert len(dl) == 3
    seen = []
    for (cats, conts), y in dl:
        assert torch.equal(y, cats[:, 0] * 2) and torch.allclose(conts[:, 0] * 10, cats[:, 0].float())
        seen += cats[:, 0].tolist()
    assert sorted(seen) == list(range(10)) and seen != list(range(10))


def test_drop_last_and_order():
    dl = tensor_loader(_ds(10), bs=4, drop_last=True)
    assert len(dl) == 2
    assert [y.tolist() for _, y in dl] == [[0, 2, 4, 6], [8, 10, 12, 14]]


def test_databunch_wraps_and_new_changes_batch_size():
    data = DataBunch(tensor_loader(_ds(10), 4, shuffle=True, drop_last=True), tensor_loader(_ds(6), 4), device="cpu")
    assert data.batch_size == 4 and len(data.valid_dl) == 2
    one = data.valid_dl.new(batch_size=6)
    assert one.batch_size == 6 and len(one) == 1


def test_mismatched_lengths_are_an_error():
    with pytest.raises(DataError, match="same number of rows"):
        TensorBatches((torch.zeros(3), torch.zeros(4)), torch.zeros(3))
