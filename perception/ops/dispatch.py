"""The one entry point the model calls for multi-scale deformable attention, and its dispatch.

Implementations: ``cuda`` and ``cpu`` (native kernels from perception.ops._C, see native.py, run
through the registered operator ``torch.ops.gdino.ms_deform_attn`` of library.py) and ``pytorch``
(reference.py, always available). ``auto`` picks the native kernel for the tensors' device when it
is built and the reference otherwise; the choice and its reason are logged once. Forcing an
implementation that is not available raises with the command that builds it. The choice depends only
on the device type, never on data, so fake tensors (a "cuda" device without a GPU), torch.compile
(fullgraph) and torch.export take the same route as real tensors, through the operator.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from perception.ops.checks import check_inputs, check_level_values
from perception.ops.library import ms_deform_attn
from perception.ops.native import BUILD_HINT, NativeOps, load_native_ops
from perception.ops.reference import ms_deform_attn_pytorch

logger = logging.getLogger(__name__)

IMPLEMENTATIONS = ("auto", "cuda", "cpu", "pytorch")


@dataclass(frozen=True)
class Choice:
    implementation: str  # "cuda", "cpu" or "pytorch"
    reason: str


# (requested implementation, device type, choice) already logged: each is logged once per process.
_logged_choices: set[tuple[str, str, Choice]] = set()


def select_implementation(implementation: str, device: torch.device, native: NativeOps | None = None) -> Choice:
    """What runs for `implementation` on tensors on `device`; raises when a forced choice cannot run.

    native: the loaded extension (default: :func:`load_native_ops`), a parameter so tests can ask
    about other build outcomes than the one installed.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {', '.join(IMPLEMENTATIONS)}, got {implementation!r}")
    if implementation == "pytorch":
        return Choice("pytorch", "requested")
    native = native or load_native_ops()
    unavailable = native.unavailable_reason(device.type)
    if implementation == "auto":
        if unavailable is None:
            return Choice(device.type, f"{device.type} tensors and {native.status}")
        return Choice("pytorch", f"no native kernels for {device.type} tensors: {unavailable}")
    if device.type != implementation:
        raise ValueError(f"implementation={implementation!r} needs {implementation} tensors, got tensors on {device}")
    if unavailable is not None:
        raise RuntimeError(f"implementation={implementation!r} is not available: {unavailable}; {BUILD_HINT}")
    return Choice(implementation, "requested")


def describe_implementation(device: str | torch.device = "cpu") -> str:
    """One line telling what ``auto`` runs for tensors on `device`, and why (for the CLI and README)."""
    choice = select_implementation("auto", torch.device(device))
    return f"{choice.implementation} ({choice.reason})"


@torch.compiler.assume_constant_result
def chosen_implementation(implementation: str, device_type: str) -> str:
    """select_implementation's choice, logged the first time it is made for these arguments.

    torch.compile runs this at trace time instead of tracing it (the extension's import and the log
    cannot be traced), and holds the answer as a constant in the compiled graph.
    """
    choice = select_implementation(implementation, torch.device(device_type))
    log_key = (implementation, device_type, choice)
    if log_key not in _logged_choices:
        _logged_choices.add(log_key)
        logger.info(
            "multi-scale deformable attention (implementation=%s) on %s tensors: %s, %s",
            implementation, device_type, choice.implementation, choice.reason,
        )
    return choice.implementation


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: torch.Tensor,
    level_start_index: torch.Tensor,
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    implementation: str = "auto",
) -> torch.Tensor:
    """Shapes as in :func:`perception.ops.reference.ms_deform_attn_pytorch`.

    returns: (batch, num_queries, num_heads * head_dim), differentiable in value, sampling_locations
    and attention_weights whichever implementation runs.
    """
    check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    chosen = chosen_implementation(implementation, value.device.type)
    if chosen == "pytorch":
        check_level_values(spatial_shapes, level_start_index, value.shape[1])
        return ms_deform_attn_pytorch(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
    # The registered operator (library.py) runs the kernel for the tensors' device; while tracing
    # (fake tensors, torch.compile, torch.export) its fake implementation gives the output's shape.
    return ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
