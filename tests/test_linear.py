"""Linear layers: the oneDNN inference path computes F.linear's function, and training keeps F.linear."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from perception.model import linear as linear_module
from perception.model.linear import Linear, linear
from tolerances import assert_within_ulps

pytestmark = pytest.mark.numeric
# The same sums of products in another order (oneDNN against MKL): at most 10 ulps of the largest output
# seen (256 products per sum); 64 is still 8e-6 of it.
SUM_ULPS = 64
# bfloat16 inputs against the float32 product of the unrounded ones: within one bfloat16 ulp of the largest
# output seen; a wrong cast or dropped bias is many.
BFLOAT16_ULPS = 4


def test_this_build_has_the_onednn_path(monkeypatch):
    # x86 PyTorch wheels ship oneDNN; if this fails, the speed figures in the README do not apply here.
    # `make test-isa` runs this file with GDINO_ONEDNN_LINEAR=0; 1 asks for oneDNN wherever it agrees, untimed.
    monkeypatch.setenv("GDINO_ONEDNN_LINEAR", "1")
    assert torch.float32 in linear_module._probe()


def test_the_faster_kernel_is_chosen_by_timing(monkeypatch):
    monkeypatch.delenv("GDINO_ONEDNN_LINEAR", raising=False)
    times = linear_module.kernel_times_ms(torch.float32)  # the real probe: both kernels ran and were timed
    assert set(times) == {"oneDNN", "F.linear"} and all(0 < ms < 10_000 for ms in times.values())
    # A machine where MKL's F.linear is clearly faster (as on some Intel CPUs) keeps F.linear for that dtype,
    # and one where it is within the margin keeps oneDNN.
    monkeypatch.setattr(linear_module, "kernel_times_ms", lambda dtype: {"oneDNN": 10.0, "F.linear": 5.0})
    assert linear_module._probe() == frozenset()
    monkeypatch.setattr(linear_module, "kernel_times_ms", lambda dtype: {"oneDNN": 10.0, "F.linear": 9.5})
    assert torch.float32 in linear_module._probe()


@pytest.mark.parametrize("shape, out_features, bias", [
    ((1, 2203, 256), 2048, True), ((3, 7, 5), 4, True), ((2, 5, 9, 16), 16, False), ((0, 8), 3, True), ((6, 1), 2, True),
])
def test_inference_path_equals_f_linear(shape, out_features, bias):
    torch.manual_seed(0)
    layer = Linear(shape[-1], out_features, bias=bias)
    x = torch.randn(shape)
    with torch.inference_mode():
        expected = F.linear(x, layer.weight, layer.bias)
        actual = layer(x)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    assert_within_ulps(actual, expected, SUM_ULPS)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_fused_activation_equals_the_activation_after_f_linear(monkeypatch, activation, dtype):
    """oneDNN applies the activation in the linear's pass (relu; gelu the exact erf one, as nn.GELU):
    the same function as F.linear then the activation, on the inference path and on the autograd one."""
    monkeypatch.setattr(linear_module, "_served", None)
    monkeypatch.setenv("GDINO_ONEDNN_LINEAR", "1")
    torch.manual_seed(2)
    x, weight, bias = torch.randn(300, 96) * 2, torch.randn(384, 96) * 0.2, torch.randn(384)
    unfused = {"relu": F.relu, "gelu": F.gelu}[activation]
    expected = unfused(F.linear(x, weight, bias))  # float32 from the unrounded inputs
    with torch.inference_mode():
        fused = linear(x.to(dtype), weight.to(dtype), bias.to(dtype), activation)
    ulps = SUM_ULPS if dtype == torch.float32 else BFLOAT16_ULPS
    assert fused.dtype == dtype and (fused < 0).any() == (activation == "gelu")  # relu leaves no negatives
    assert_within_ulps(fused.float(), expected, ulps, dtype=dtype)
    trained = x.requires_grad_()
    recorded = linear(trained, weight, bias, activation)  # autograd: F.linear, then the activation
    assert recorded.grad_fn is not None
    assert_within_ulps(recorded.detach(), expected, SUM_ULPS)


def test_bfloat16_and_non_contiguous_inputs():
    torch.manual_seed(1)
    weight, bias = torch.randn(12, 32), torch.randn(12)
    x = torch.randn(32, 40).t()  # (40, 32), not contiguous
    with torch.no_grad():
        assert_within_ulps(linear(x, weight, bias), F.linear(x, weight, bias), SUM_ULPS)
        low = linear(x.bfloat16(), weight.bfloat16(), bias.bfloat16())
    assert low.dtype == torch.bfloat16
    assert_within_ulps(low.float(), F.linear(x, weight, bias), BFLOAT16_ULPS, dtype=torch.bfloat16)


def test_training_records_gradients_through_f_linear():
    torch.manual_seed(2)
    layer = Linear(5, 3)
    x = torch.randn(4, 5, requires_grad=True)
    layer(x).square().sum().backward()
    reference = Linear(5, 3)
    reference.load_state_dict(layer.state_dict())
    x2 = x.detach().clone().requires_grad_(True)
    F.linear(x2, reference.weight, reference.bias).square().sum().backward()
    assert torch.equal(x.grad, x2.grad)  # the very same kernel on the same numbers: F.linear is what ran
    assert torch.equal(layer.weight.grad, reference.weight.grad)


def test_environment_variable_turns_the_onednn_path_off(monkeypatch):
    monkeypatch.setenv("GDINO_ONEDNN_LINEAR", "0")
    assert linear_module._probe() == frozenset()


def test_bfloat16_keeps_f_linear_where_onednn_has_no_bfloat16_linear():
    # oneDNN has no bfloat16 inner product below AVX-512: limited to AVX2 (as an AVX2-only CPU is, and as
    # `make test-isa` runs the suite), bfloat16 must take F.linear while float32 still takes oneDNN.
    code = ("import torch, torch.nn.functional as F\n"
            "from perception.model.linear import linear, onednn_linear_available\n"
            "x, w, b = torch.randn(8, 32), torch.randn(16, 32), torch.randn(16)\n"
            "with torch.no_grad():\n"
            "    low = [t.bfloat16() for t in (x, w, b)]\n"
            "    assert torch.equal(linear(*low), F.linear(*low))\n"
            "    linear(x, w, b)\n"
            "print(onednn_linear_available(torch.float32), onednn_linear_available(torch.bfloat16))\n")
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ONEDNN_VERBOSE": "1"}
    env["GDINO_ONEDNN_LINEAR"] = "1"  # availability, not speed: the timing probe is tested apart
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert "isa:Intel AVX2" in out and ",brg_matmul:avx2," in out  # the limit took effect: AVX2 kernels ran
    assert out.splitlines()[-1] == "True False"


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_an_mlp_in_row_chunks_equals_it_whole(monkeypatch, residual, dtype):
    """Large hidden activations are computed in row chunks (CPU inference): every row, the last short chunk
    included, gets what the whole product gives it, with the residual added. Equal to the bit with oneDNN here;
    MKL's sgemm (GDINO_ONEDNN_LINEAR=0) blocks its sums by the number of rows, so within the sums' rounding."""
    torch.manual_seed(3)
    fc1, fc2 = Linear(24, 96).to(dtype), Linear(96, 24).to(dtype)
    x = torch.randn(2, 53, 24).to(dtype)  # 106 rows: chunks of 16 leave a last chunk of 10
    added = torch.randn(2, 53, 24).to(dtype) if residual else None
    ulps = SUM_ULPS if dtype == torch.float32 else BFLOAT16_ULPS
    with torch.inference_mode():
        whole = linear_module.mlp(x, fc1, fc2, "gelu", added)
        expected = F.linear(F.gelu(F.linear(x, fc1.weight, fc1.bias)), fc2.weight, fc2.bias)
        if residual:
            expected = expected + added
        assert_within_ulps(whole.float(), expected.float(), ulps, dtype=dtype)
        monkeypatch.setattr(linear_module, "MLP_CHUNKING_ABOVE_BYTES", 0)
        monkeypatch.setattr(linear_module, "MLP_CHUNK_BYTES", 16 * 96 * x.element_size())
        calls = []
        original = linear_module.linear
        monkeypatch.setattr(linear_module, "linear", lambda *args, **kw: calls.append(args[0].shape[0]) or original(*args, **kw))
        chunked = linear_module.mlp(x, fc1, fc2, "gelu", added)
    assert calls[::2] == [16] * 6 + [10]  # fc1's inputs: the rows really went in chunks
    assert chunked.shape == whole.shape and chunked.dtype == dtype
    assert_within_ulps(chunked.float(), whole.float(), ulps, dtype=dtype)


def test_an_mlp_being_trained_is_not_chunked(monkeypatch):
    monkeypatch.setattr(linear_module, "MLP_CHUNKING_ABOVE_BYTES", 0)
    fc1, fc2 = Linear(8, 32), Linear(32, 8)
    x = torch.randn(40, 8)
    calls = []
    original = linear_module.linear
    monkeypatch.setattr(linear_module, "linear", lambda *args, **kw: calls.append(args[0].shape[0]) or original(*args, **kw))
    output = linear_module.mlp(x, fc1, fc2, "relu", x)
    output.sum().backward()
    assert calls == [40, 40]  # fc1 and fc2 once each, on all rows
    assert fc1.weight.grad is not None and output.grad_fn is not None
