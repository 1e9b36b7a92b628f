"""nn.Linear whose CPU inference runs on oneDNN's matmul instead of the BLAS that F.linear calls.

PyTorch's CPU F.linear goes to MKL's sgemm. On AMD CPUs MKL does not take its AVX-512 kernels, and
oneDNN (bundled with every x86 PyTorch build, and what convolutions already use) is 1.3-2.4x faster
on Grounding DINO's shapes (measured on an AMD EPYC with AVX-512: the encoder FFN's 22,000x256 by
256x2048 product takes 54 ms instead of 127 ms). The result is the same product summed in another order
(differences ~1e-6 relative).

Used only where it is the same function as F.linear and faster: CPU tensors of float32 or bfloat16, no
autograd graph being recorded (training and gradient checks keep F.linear), a PyTorch build and CPU that have
the op for that dtype, verified against F.linear (oneDNN has no bfloat16 linear on CPUs without AVX-512, for
one), and a kernel that beat F.linear on this machine in a timing probe of an encoder-sized product (MKL
takes its fast kernels on Intel CPUs, where F.linear may win). Both probes run once per dtype on first use
and the choice is logged. GDINO_ONEDNN_LINEAR=0 always uses F.linear; =1 uses oneDNN wherever it agrees,
without timing.
"""
from __future__ import annotations

import logging
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

_DTYPES = (torch.float32, torch.bfloat16)
_served: frozenset[torch.dtype] | None = None  # the dtypes oneDNN's linear computes here; None until probed
# The timing probe's product: (tokens, in) x (in, out), an encoder FFN's first layer on 1,024 tokens at
# Grounding-DINO-T's 256-wide features; half a GFLOP, a few milliseconds per call.
PROBE_SHAPE = (1024, 256, 1024)
PROBE_ROUNDS = 10
# oneDNN stays unless F.linear is clearly faster: equal kernels would otherwise flip with the machine's load.
F_LINEAR_MARGIN = 0.9


def _agrees_with_f_linear(dtype: torch.dtype) -> bool:
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(shape, generator=generator).to(dtype) for shape in ((5, 3, 7), (4, 7), (4,)))
    try:
        with torch.no_grad():
            actual = _onednn(x, weight, bias).float()
            expected = F.linear(x, weight, bias).float()
    except (AttributeError, RuntimeError) as error:
        logger.info("linear layers: F.linear for %s (no oneDNN linear for it here: %s)", dtype, error)
        return False
    # Sums of 7 products in another order: a few roundings of the dtype at the result's magnitude.
    if (actual - expected).abs().max() > 8 * torch.finfo(dtype).eps * expected.abs().max():
        logger.warning("linear layers: F.linear for %s (oneDNN linear disagrees with F.linear on a probe)", dtype)
        return False
    return True


# The activations oneDNN can apply to a linear's output in the same pass, and the same function unfused.
# GELU is the exact (erf) one, nn.GELU's default; fused it is 1.3-1.5x faster than linear then F.gelu on Swin's
# MLP shapes (66,600 x 96 by 96 x 384: 57 ms against 85 ms), with equal results.
ACTIVATIONS = {"none": lambda y: y, "relu": lambda y: F.relu(y, inplace=True), "gelu": F.gelu}
_ONEDNN_ALGORITHMS = {"none": "", "relu": "", "gelu": "none"}  # "none": erf GELU, not the tanh approximation


def _onednn(x, weight, bias, activation: str = "none"):
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, activation, [], _ONEDNN_ALGORITHMS[activation])


def kernel_times_ms(dtype: torch.dtype) -> dict[str, float]:
    """The best of PROBE_ROUNDS wall times, in ms, of the PROBE_SHAPE product in ``dtype`` by each kernel
    ("oneDNN", "F.linear"), called in turns so that a busy machine slows both alike."""
    rows, inputs, outputs = PROBE_SHAPE
    generator = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(shape, generator=generator).to(dtype)
                       for shape in ((rows, inputs), (outputs, inputs), (outputs,)))
    kernels = {"oneDNN": _onednn, "F.linear": F.linear}
    best = dict.fromkeys(kernels, math.inf)
    with torch.no_grad():
        for kernel in kernels.values():
            kernel(x, weight, bias)  # first calls allocate and pick kernels: not timed
        for _ in range(PROBE_ROUNDS):
            for name, kernel in kernels.items():
                start = time.perf_counter()
                kernel(x, weight, bias)
                best[name] = min(best[name], (time.perf_counter() - start) * 1000)
    return best


def _faster_than_f_linear(dtype: torch.dtype) -> bool:
    times = kernel_times_ms(dtype)
    faster = times["F.linear"] >= F_LINEAR_MARGIN * times["oneDNN"]
    logger.info("linear layers in %s: %s (oneDNN %.2f ms, F.linear %.2f ms on a %dx%d by %dx%d product)",
                str(dtype).removeprefix("torch."), "oneDNN" if faster else "F.linear", times["oneDNN"],
                times["F.linear"], PROBE_SHAPE[0], PROBE_SHAPE[1], PROBE_SHAPE[1], PROBE_SHAPE[2])
    return faster


def _probe() -> frozenset[torch.dtype]:
    setting = os.environ.get("GDINO_ONEDNN_LINEAR")
    if setting == "0":
        logger.info("linear layers: F.linear (GDINO_ONEDNN_LINEAR=0)")
        return frozenset()
    agreeing = [dtype for dtype in _DTYPES if _agrees_with_f_linear(dtype)]
    if setting == "1":
        logger.info("linear layers: oneDNN for %s (GDINO_ONEDNN_LINEAR=1)", sorted(map(str, agreeing)))
        return frozenset(agreeing)
    return frozenset(dtype for dtype in agreeing if _faster_than_f_linear(dtype))


def onednn_linear_available(dtype: torch.dtype = torch.float32) -> bool:
    global _served
    if _served is None:
        _served = _probe()
    return dtype in _served


def _cpu_inference(x: torch.Tensor, *tensors: torch.Tensor | None) -> bool:
    """x is on the CPU, nothing records gradients through it or ``tensors``, and torch.compile is not tracing
    (inductor lowers oneDNN's linear only for constant, frozen, weights)."""
    recording = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, *tensors))
    return x.device.type == "cpu" and not recording and not torch.compiler.is_compiling()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "none") -> torch.Tensor:
    """F.linear, then ``activation`` (a key of ACTIVATIONS), through oneDNN with the activation fused when that
    computes the same function faster (see the module docstring)."""
    if (_cpu_inference(x, weight, bias) and weight.dtype == x.dtype and x.dim() >= 2
            and onednn_linear_available(x.dtype)):
        return _onednn(x, weight, bias, activation)
    return ACTIVATIONS[activation](F.linear(x, weight, bias))


# A two-layer MLP's hidden activations at 800x1333 are larger than the CPU's last-level cache (Swin's first
# stage 98 MiB, the encoder FFN 174 MiB in float32), so fc1 writes them to memory and fc2 reads them back. Row
# chunks whose hidden part fits the cache skip that round trip: measured on an AMD EPYC (32 MiB L3), float32,
# oneDNN: encoder FFN 285 -> 243 ms, Swin stage 1 88 -> 60 ms, stage 2 67 -> 53 ms per layer (bfloat16 and MKL's
# F.linear gain alike); at 25 MiB or less (Swin stage 3, the decoder, the bundled model) chunks gained nothing or
# lost up to 15%, hence the threshold. With oneDNN each row is the same products in the same order (equal to the
# bit here); MKL's sgemm (F.linear) blocks its sums by the number of rows, so there within the sums' rounding.
MLP_CHUNKING_ABOVE_BYTES = 32 * 2**20
MLP_CHUNK_BYTES = 4 * 2**20


def mlp(x: torch.Tensor, fc1: nn.Linear, fc2: nn.Linear, activation: str,
        residual: torch.Tensor | None = None) -> torch.Tensor:
    """fc2(activation(fc1(x))), plus ``residual`` (x's leading shape, fc2's width) if given; in CPU inference,
    in row chunks when the hidden activations would not fit in the cache (MLP_CHUNKING_ABOVE_BYTES)."""
    def both_layers(inputs: torch.Tensor) -> torch.Tensor:
        return linear(linear(inputs, fc1.weight, fc1.bias, activation), fc2.weight, fc2.bias)

    rows = x.numel() // x.shape[-1]
    hidden_row_bytes = fc1.out_features * x.element_size()
    if (not _cpu_inference(x, fc1.weight, fc1.bias, fc2.weight, fc2.bias, residual)
            or rows * hidden_row_bytes <= MLP_CHUNKING_ABOVE_BYTES):
        output = both_layers(x)
        return output if residual is None else output.add_(residual)
    flat = x.reshape(rows, x.shape[-1])
    added = None if residual is None else residual.reshape(rows, fc2.out_features)
    output = flat.new_empty(rows, fc2.out_features)
    step = max(1, MLP_CHUNK_BYTES // hidden_row_bytes)
    for start in range(0, rows, step):
        part = both_layers(flat[start:start + step])
        if added is None:
            output[start:start + step] = part
        else:
            torch.add(part, added[start:start + step], out=output[start:start + step])
    return output.view(*x.shape[:-1], fc2.out_features)


class Linear(nn.Linear):
    """nn.Linear (same parameters and state-dict keys) computed by `linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)
