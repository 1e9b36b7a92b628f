"""The fastest a forward could run on this machine: its matrix-product work at the best rate the machine's
products reach, everything else free.

A ratio target (ours / transformers) is only reachable where this floor is under it. ``forward_gflop`` counts
the forward's floating-point operations with ``torch.utils.flop_counter`` (products and convolutions, which
are nearly all of Grounding DINO's work), leaving out the text encoder: ours takes text features from the
prompt cache. ``best_product_gflops`` times single linear products in the dtype, by F.linear and by our
kernel, and keeps the best rate. The floor is a bound, not an estimate: attention, normalisation and
element-wise work come on top.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from perception.bench.measure import latencies_ms
from perception.model.linear import linear

# Shapes (rows, inputs, outputs) of the products timed for the best rate: those of Grounding DINO's largest
# layers at 800x1333 (encoder feed-forward both ways, Swin's first and second stage MLPs), and smaller ones
# whose operands stay in cache (as our row-chunked MLPs keep theirs), where a CPU reaches its best rate.
PRODUCT_SHAPES = ((16000, 256, 2048), (16000, 2048, 256), (34000, 96, 384), (8500, 192, 768), (4096, 1024, 4096),
                  (1024, 256, 1024), (1024, 1024, 1024), (2048, 512, 2048), (512, 2048, 512))


def forward_gflop(call: Callable[[], object], leave_out: str = "text_backbone") -> float:
    """GFLOP of one ``call``, less those of modules whose name ends with ``leave_out``."""
    counter = FlopCounterMode(display=False, depth=None)
    with counter:
        call()
    counts = counter.get_flop_counts()
    total = sum(counts.get("Global", {}).values())
    left_out = sum(sum(ops.values()) for name, ops in counts.items() if name.endswith("." + leave_out))
    return (total - left_out) / 1e9


def best_product_gflops(dtype: torch.dtype, device: torch.device, shapes=PRODUCT_SHAPES, repeats: int = 5) -> float:
    """The best rate (GFLOP/s) of single products of ``shapes`` in ``dtype`` on ``device``, by F.linear and by
    our linear layers' kernel (perception.model.linear: oneDNN where it is faster on this CPU)."""
    best = 0.0
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for rows, inputs, outputs in shapes:
            x = torch.randn(rows, inputs, generator=generator).to(device, dtype)
            weight = torch.randn(outputs, inputs, generator=generator).to(device, dtype)
            for kernel in (torch.nn.functional.linear, linear):
                fastest_ms = min(latencies_ms(lambda: kernel(x, weight, None), repeats, warmup=1, device=device))
                best = max(best, 2.0 * rows * inputs * outputs / fastest_ms / 1e6)
    return best


def floor(call: Callable[[], object], dtype: torch.dtype, device: torch.device, reference_ms: float | None) -> dict:
    """gflop of the forward, product_gflops (the best rate), floor_ms, and floor_ratio (floor_ms over
    transformers' time, when given: no ratio target under it is reachable on this machine)."""
    gflop = forward_gflop(call)
    rate = best_product_gflops(dtype, device)
    floor_ms = 1000.0 * gflop / rate
    return {"gflop": round(gflop, 3), "product_gflops": round(rate, 1), "dtype": str(dtype).removeprefix("torch."),
            "floor_ms": round(floor_ms, 3),
            "floor_ratio": round(floor_ms / reference_ms, 3) if reference_ms else None}
