"""Swin's window layout: one gather replaces pad + cyclic shift + partition, one gather undoes it. Checked
against the explicit pad / roll / partition on odd sizes (the whole backbone is checked against
transformers in test_model_parity.py)."""
import pytest
import torch

from perception.model.swin import window_layout, window_partition


@pytest.mark.parametrize("height, width", [(7, 7), (9, 20), (3, 5), (25, 42), (50, 84)])
@pytest.mark.parametrize("shift", [0, 3])
def test_window_layout_is_pad_roll_partition_and_back(height, width, shift):
    size = 7
    feature_map = torch.randn(2, height, width, 5)
    padded = torch.nn.functional.pad(feature_map, (0, 0, 0, -width % size, 0, -height % size))
    rolled = torch.roll(padded, shifts=(-shift, -shift), dims=(1, 2))
    expected = window_partition(rolled, size).flatten(1, 2)
    layout = window_layout(height, width, size, shift, feature_map.device)
    gathered = feature_map.reshape(2, height * width, 5).index_select(1, layout.gather)
    if layout.padding is not None:
        gathered.index_fill_(1, layout.padding, 0)
    assert layout.num_windows * size * size == expected.shape[1]
    assert torch.equal(gathered, expected)
    back = gathered.index_select(1, layout.scatter).view(2, height, width, 5)
    assert torch.equal(back, feature_map)
    assert (layout.padding is None) == (height % size == 0 and width % size == 0)


def test_layouts_built_under_inference_mode_serve_training():
    with torch.inference_mode():
        layout = window_layout(11, 13, 7, 3, torch.device("cpu"))
    assert not layout.gather.is_inference()
    values = torch.randn(1, 11 * 13, 4, requires_grad=True)
    values.index_select(1, layout.gather).sum().backward()
    assert values.grad is not None
