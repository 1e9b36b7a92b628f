"""Numeric tolerances stated against the magnitude of what is compared (CONVENTIONS.md, habit 14).

oneDNN, MKL and ATen choose kernels per instruction set and per problem size, so a float result is
reproducible across CPUs and batch sizes only to a few units in the last place (ulps) of its magnitude.
A bare 1e-5 is just over one float32 ulp of a 118-px coordinate but 168 ulps of a score of 0.5: too
tight for the first, loose for the second. Each check states its bound as n ulps of the largest magnitude
compared, in the floating type the result is computed in, and says why n.
"""
from __future__ import annotations

import math

import torch

# One model's float32 outputs computed another way: another batch size (oneDNN picks kernels per problem
# size), our kernels against transformers' or against our pure-PyTorch reference. Every layer sums in
# another order and the logits and boxes of the tiny test configurations end at most 16 ulps of their
# largest magnitude apart (five instruction-set settings on an AMD EPYC; 3 ulps of a 118-px coordinate on a
# Xeon with AMX). 64 leaves room for other CPUs and still catches small real errors: 0.001 px of a 150-px
# coordinate, 4e-6 of a normalized box coordinate, one LayerNorm's eps ten times too large (50 to 1,100
# ulps of the logits, most of them over 64). Grounding-DINO-T sizes sum longer: FULL_SIZE_ULPS.
MODEL_ULPS = 64
# Up to 27 ulps seen at Grounding-DINO-T size (BERT-base, Swin-T, 900 queries; same five settings).
FULL_SIZE_ULPS = 128


def ulps_of(values, n: float, dtype: torch.dtype | None = None) -> float:
    """n times the spacing of `dtype` numbers (default: the values' own floating type) at max |values|.

    values: a tensor, array or number; n ulps of a float32 pixel coordinate of 118 is n * 7.6e-6 px.
    """
    tensor = torch.as_tensor(values)
    info = torch.finfo(dtype or tensor.dtype)
    largest = float(tensor.detach().abs().max()) if tensor.numel() else 0.0
    exponent = math.floor(math.log2(max(largest, info.tiny)))  # below the normal range: the smallest normal's
    return n * info.eps * 2.0**exponent


def assert_within_ulps(actual, expected, n: float, dtype: torch.dtype | None = None) -> None:
    """max |actual - expected| <= n ulps of max |expected| (see ulps_of); the message says by how much."""
    actual, expected = torch.as_tensor(actual).detach(), torch.as_tensor(expected).detach()
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    bound = ulps_of(expected, n, dtype)
    difference = float((actual.double() - expected.double()).abs().max()) if expected.numel() else 0.0
    assert difference <= bound, f"largest difference {difference:.3g} is over {n} ulps of {expected.abs().max():.4g} ({bound:.3g})"
