"""The fusion layer's two evaluation orders (direct and factorized through the text tokens) are the same
function: outputs and gradients agree in float64, with padding on both sides, and forward picks the
cheaper one for the prompt length."""
import pytest
import torch

from perception.model.feature_enhancer import BiAttention
from tolerances import assert_within_ulps

pytestmark = pytest.mark.numeric
# float64: the two orders round in different places, more so the wider the attention (at width 1024, 45 ulps
# of the largest output and 189 of the largest gradient seen). 1024 ulps is still 2e-13 of the magnitude.
ORDER_ULPS = 1024


def random_attention(dim, attention_dim, heads):
    torch.manual_seed(dim + attention_dim + heads)
    module = BiAttention(dim, attention_dim, heads).double()
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return module


def inputs(dim, num_vision=37, num_text=9):
    vision = torch.randn(2, num_vision, dim, dtype=torch.float64, requires_grad=True)
    text = torch.randn(2, num_text, dim, dtype=torch.float64, requires_grad=True)
    vision_padding = torch.zeros(2, num_vision, dtype=torch.bool)
    vision_padding[1, num_vision - 7:] = True
    text_padding = torch.zeros(2, num_text, dtype=torch.bool)
    text_padding[0, num_text - 3:] = True
    return vision, text, vision_padding, text_padding


@pytest.mark.parametrize("dim, attention_dim, heads", [(256, 1024, 4), (128, 128, 4), (16, 24, 3)])
def test_factorized_order_equals_the_direct_one_with_gradients(dim, attention_dim, heads):
    module = random_attention(dim, attention_dim, heads)
    vision, text, vision_padding, text_padding = inputs(dim)
    direct = module.direct(vision, text, vision_padding, text_padding)
    factorized = module.factorized(vision, text, vision_padding, text_padding)
    for expected, actual in zip(direct, factorized):
        assert actual.shape == expected.shape
        assert_within_ulps(actual, expected, ORDER_ULPS)
    probe = [torch.randn_like(output) for output in direct]
    wrt = [vision, text, *module.parameters()]
    grads_direct = torch.autograd.grad(sum((o * p).sum() for o, p in zip(direct, probe)), wrt)
    grads_factorized = torch.autograd.grad(sum((o * p).sum() for o, p in zip(factorized, probe)), wrt)
    for expected, actual in zip(grads_direct, grads_factorized):
        assert_within_ulps(actual, expected, ORDER_ULPS)


def test_forward_takes_the_order_with_fewer_multiply_adds():
    tiny_text = random_attention(128, 128, 4)  # bundled-model widths: factorized only for short prompts
    assert tiny_text.factorized_is_cheaper(20) and not tiny_text.factorized_is_cheaper(60)
    swin_t = random_attention(256, 1024, 4)  # Grounding-DINO-T widths: factorized at every prompt length
    assert all(swin_t.factorized_is_cheaper(n) for n in (1, 30, 256))
    vision, text, vision_padding, text_padding = inputs(128, num_text=60)
    chosen = tiny_text(vision, text, vision_padding, text_padding)
    direct = tiny_text.direct(vision, text, vision_padding, text_padding)
    for expected, actual in zip(direct, chosen):
        assert torch.equal(actual, expected)
