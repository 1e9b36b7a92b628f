"""nn.Linear whose CPU inference runs on oneDNN's matmul instead of the BLAS that F.linear calls.

PyTorch's CPU F.linear goes to MKL's sgemm. On AMD CPUs MKL does not take its AVX-512 kernels, and
oneDNN (bundled with every x86 PyTorch build, and what convolutions already use) is 1.3-2.4x faster
on Grounding DINO's shapes (measured on an AMD EPYC with AVX-512: the encoder FFN's 22,000x256 by
256x2048 product takes 54 ms instead of 127 ms). The result is the same product summed in another order
(differences ~1e-6 relative).

Used only where it is the same function as F.linear: CPU tensors of float32 or bfloat16, no autograd
graph being recorded (training and gradient checks keep F.linear), and a PyTorch build and CPU that have
the op for that dtype, verified once per dtype against F.linear on first use (oneDNN has no bfloat16
linear on CPUs without AVX-512, for one). Set GDINO_ONEDNN_LINEAR=0 to always use F.linear.
"""
from __future__ import annotations

import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.bfloat16)
_served: frozenset[torch.dtype] | None = None  # the dtypes oneDNN's linear computes here; None until probed


def _agrees_with_f_linear(dtype: torch.dtype) -> bool:
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(shape, generator=generator).to(dtype) for shape in ((5, 3, 7), (4, 7), (4,)))
    try:
        with torch.no_grad():
            actual = torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "").float()
            expected = F.linear(x, weight, bias).float()
    except (AttributeError, RuntimeError) as error:
        logger.info("linear layers: F.linear for %s (no oneDNN linear for it here: %s)", dtype, error)
        return False
    # Sums of 7 products in another order: a few roundings of the dtype at the result's magnitude.
    if (actual - expected).abs().max() > 8 * torch.finfo(dtype).eps * expected.abs().max():
        logger.warning("linear layers: F.linear for %s (oneDNN linear disagrees with F.linear on a probe)", dtype)
        return False
    return True


def _probe() -> frozenset[torch.dtype]:
    if os.environ.get("GDINO_ONEDNN_LINEAR", "1") == "0":
        logger.info("linear layers: F.linear (GDINO_ONEDNN_LINEAR=0)")
        return frozenset()
    served = frozenset(dtype for dtype in _DTYPES if _agrees_with_f_linear(dtype))
    logger.debug("linear layers: oneDNN matmul for CPU inference in %s", sorted(map(str, served)))
    return served


def onednn_linear_available(dtype: torch.dtype = torch.float32) -> bool:
    global _served
    if _served is None:
        _served = _probe()
    return dtype in _served


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear, through oneDNN when that computes the same function faster (see the module docstring)."""
    # Not under torch.compile: inductor lowers oneDNN's linear only for constant (frozen) weights.
    if (x.device.type == "cpu" and weight.dtype == x.dtype and x.dim() >= 2 and not torch.compiler.is_compiling()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                                  or (bias is not None and bias.requires_grad)))
            and onednn_linear_available(x.dtype)):
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict keys) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
