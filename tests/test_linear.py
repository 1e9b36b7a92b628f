"""Linear layers: the oneDNN inference path computes F.linear's function, and training keeps F.linear."""
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from perception.model import linear as linear_module
from perception.model.linear import Linear, linear, onednn_linear_available


def test_this_build_has_the_onednn_path():
    # x86 PyTorch wheels ship oneDNN; if this fails, the speed figures in the README do not apply here.
    assert onednn_linear_available()


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
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_bfloat16_and_non_contiguous_inputs():
    torch.manual_seed(1)
    weight, bias = torch.randn(12, 32), torch.randn(12)
    x = torch.randn(32, 40).t()  # (40, 32), not contiguous
    with torch.no_grad():
        torch.testing.assert_close(linear(x, weight, bias), F.linear(x, weight, bias), rtol=1e-5, atol=1e-5)
        low = linear(x.bfloat16(), weight.bfloat16(), bias.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), F.linear(x, weight, bias), rtol=0.05, atol=0.1)


def test_training_records_gradients_through_f_linear():
    torch.manual_seed(2)
    layer = Linear(5, 3)
    x = torch.randn(4, 5, requires_grad=True)
    layer(x).square().sum().backward()
    reference = Linear(5, 3)
    reference.load_state_dict(layer.state_dict())
    x2 = x.detach().clone().requires_grad_(True)
    F.linear(x2, reference.weight, reference.bias).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(layer.weight.grad, reference.weight.grad)


def test_environment_variable_turns_the_onednn_path_off():
    code = ("import torch; from perception.model.linear import onednn_linear_available as a; "
            "print(a())")
    out = subprocess.run([sys.executable, "-c", code], env={"GDINO_ONEDNN_LINEAR": "0", "PATH": ""},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
    assert onednn_linear_available() and linear_module._available is True  # this process still uses it
