import pytest
import torch
from torch import nn

from fm_core.utils import ModelWrapper, expand_tensor_like, gradient, unsqueeze_to_match


def test_unsqueeze_to_match_suffix_and_prefix():
    src, tgt = torch.arange(4.0), torch.zeros(4, 3, 2)
    assert unsqueeze_to_match(src, tgt).shape == (4, 1, 1)
    assert unsqueeze_to_match(src, torch.zeros(2, 3, 4), how="prefix").shape == (1, 1, 4)
    with pytest.raises(ValueError, match="how must be 'suffix' or 'prefix'"):
        unsqueeze_to_match(src, tgt, how="middle")
    with pytest.raises(ValueError, match="more dimensions"):
        unsqueeze_to_match(tgt, src)


def test_expand_tensor_like_broadcasts_without_copy():
    t = torch.tensor([1.0, 2.0, 3.0])
    out = expand_tensor_like(t, torch.zeros(3, 2, 5))
    assert out.shape == (3, 2, 5) and out.data_ptr() == t.data_ptr()
    assert torch.equal(out[:, 1, 4], t)
    with pytest.raises(ValueError, match="batch size 4"):
        expand_tensor_like(t, torch.zeros(4, 2))


def test_gradient_is_vector_jacobian_product():
    x = torch.randn(5, 3, requires_grad=True)
    y = (x**2).sum(dim=1)
    torch.testing.assert_close(gradient(y, x), 2 * x)
    v = torch.arange(5.0)
    torch.testing.assert_close(gradient((x**2).sum(dim=1), x, grad_outputs=v), 2 * x * v[:, None])


def test_model_wrapper_forwards_keywords():
    class Net(nn.Module):
        def forward(self, x, t, label):
            return x * t[:, None] + label[:, None]

    out = ModelWrapper(Net())(x=torch.ones(2, 3), t=torch.tensor([2.0, 3.0]), label=torch.ones(2))
    torch.testing.assert_close(out, torch.tensor([[3.0] * 3, [4.0] * 3]))
