"""Input checks for multi-scale deformable attention, run before any implementation.

They turn mismatched shapes into a ValueError naming the tensor, where a kernel would read out of
bounds or grid_sample would fail with an opaque message. check_inputs reads only shapes, dtypes and
devices, so it also runs on fake tensors and under torch.compile; check_level_values reads
spatial_shapes and level_start_index, one device-to-host copy of a few integers on CUDA, unless the tensors
were recorded by record_checked_levels when the model built them from Python ints (so the model's forward
makes no such copy).
"""
from __future__ import annotations

import weakref

import torch


def check_inputs(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> None:
    """Shapes as in :func:`perception.ops.reference.ms_deform_attn_pytorch`; raises ValueError. Reads no data."""
    if value.dim() != 4:
        raise ValueError(f"value must be (batch, num_values, num_heads, head_dim), got shape {tuple(value.shape)}")
    batch, _, num_heads, _ = value.shape
    if sampling_locations.dim() != 6 or sampling_locations.shape[-1] != 2:
        raise ValueError(
            "sampling_locations must be (batch, num_queries, num_heads, num_levels, num_points, 2), "
            f"got shape {tuple(sampling_locations.shape)}"
        )
    if sampling_locations.shape[0] != batch or sampling_locations.shape[2] != num_heads:
        raise ValueError(
            f"sampling_locations {tuple(sampling_locations.shape)} must have batch {batch} and "
            f"{num_heads} heads like value {tuple(value.shape)}"
        )
    num_levels = sampling_locations.shape[3]
    if attention_weights.shape != sampling_locations.shape[:5]:
        raise ValueError(
            f"attention_weights must have shape {tuple(sampling_locations.shape[:5])}, "
            f"got {tuple(attention_weights.shape)}"
        )
    if not value.dtype.is_floating_point or {sampling_locations.dtype, attention_weights.dtype} != {value.dtype}:
        raise ValueError(
            "value, sampling_locations and attention_weights must share one floating dtype, got "
            f"{value.dtype}, {sampling_locations.dtype}, {attention_weights.dtype}"
        )
    if spatial_shapes.shape != (num_levels, 2) or level_start_index.shape != (num_levels,):
        raise ValueError(
            f"spatial_shapes must be ({num_levels}, 2) and level_start_index ({num_levels},), got "
            f"{tuple(spatial_shapes.shape)} and {tuple(level_start_index.shape)}"
        )
    if spatial_shapes.dtype != torch.int64 or level_start_index.dtype != torch.int64:
        raise ValueError(
            f"spatial_shapes and level_start_index must be int64, got {spatial_shapes.dtype} and {level_start_index.dtype}"
        )
    devices = {tensor.device for tensor in (value, spatial_shapes, level_start_index, sampling_locations, attention_weights)}
    if len(devices) != 1:
        raise ValueError(f"all inputs must be on one device, got {sorted(map(str, devices))}")


# Set on a spatial_shapes tensor whose values are known without reading it (record_checked_levels):
# (level_start_index, both tensors' versions, the levels' positions in all).
_CHECKED_LEVELS = "_gdino_checked_levels"


def record_checked_levels(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                          shapes: list[tuple[int, int]]) -> None:
    """Check the levels as the Python ints `shapes` the two tensors were just built from, and remember the
    tensors, so that check_level_values on them reads nothing from the device (on CUDA a device-to-host copy,
    which waits for the GPU, in every attention layer). A tensor changed in place afterwards is checked again."""
    total = sum(height * width for height, width in shapes)
    starts = [sum(h * w for h, w in shapes[:level]) for level in range(len(shapes))]
    check_levels([list(shape) for shape in shapes], starts, total)
    setattr(spatial_shapes, _CHECKED_LEVELS, (weakref.ref(level_start_index), _version(spatial_shapes),
                                              _version(level_start_index), total))


def _version(tensor: torch.Tensor) -> int | None:
    """The in-place change counter; inference-mode tensors keep none (None: taken as unchanged)."""
    return None if tensor.is_inference() else tensor._version


def _recorded(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, num_values: int) -> bool:
    entry = getattr(spatial_shapes, _CHECKED_LEVELS, None)
    if entry is None:
        return False
    index_ref, shapes_version, index_version, total = entry
    if index_ref() is not level_start_index or (_version(spatial_shapes), _version(level_start_index)) != (
            shapes_version, index_version):
        return False
    if total != num_values:
        raise ValueError(f"spatial_shapes hold {total} positions but value has num_values={num_values}")
    return True


def check_level_values(spatial_shapes: torch.Tensor, level_start_index: torch.Tensor, num_values: int) -> None:
    """check_levels on the tensors' values (run after check_inputs); tensors recorded by record_checked_levels
    are not read."""
    if not _recorded(spatial_shapes, level_start_index, num_values):
        check_levels(spatial_shapes.tolist(), level_start_index.tolist(), num_values)


def check_levels(spatial_shapes: list[list[int]], level_start_index: list[int], num_values: int) -> None:
    """Every level at least 1x1, levels stored back to back, together exactly num_values positions."""
    if any(height < 1 or width < 1 for height, width in spatial_shapes):
        raise ValueError(f"every level needs height and width >= 1, got spatial_shapes {spatial_shapes}")
    expected_starts = []
    total = 0
    for height, width in spatial_shapes:
        expected_starts.append(total)
        total += height * width
    if level_start_index != expected_starts:
        raise ValueError(
            f"level_start_index must be {expected_starts} for spatial_shapes {spatial_shapes}, got {level_start_index}"
        )
    if total != num_values:
        raise ValueError(
            f"spatial_shapes {spatial_shapes} hold {total} positions but value has num_values={num_values}"
        )
