"""The networks: shapes, the null class, and the UNet's pieces at a CPU-sized configuration."""

from __future__ import annotations

import pytest
import torch

from fm_image.models import PRESETS, UNet, build_model


@pytest.mark.parametrize("preset", ["tiny", "unet-tiny"])
def test_continuous_models_map_images_to_velocities(preset):
    net = build_model(preset, channels=1, image_size=(8, 8), num_classes=10)
    x = torch.randn(3, 1, 8, 8)
    assert net(x, torch.rand(3), torch.tensor([0, 9, 10])).shape == x.shape
    assert net(x, torch.tensor(0.5), torch.tensor([0, 9, 10])).shape == x.shape  # solver's 0-dim t


def test_class_and_null_class_change_the_output():
    torch.manual_seed(0)
    net = build_model("unet-tiny", channels=3, image_size=(8, 8), num_classes=4)
    for p in net.parameters():  # the zero-initialised output layers would hide the conditioning
        torch.nn.init.normal_(p, std=0.1)
    x, t = torch.randn(2, 3, 8, 8), torch.rand(2)
    a = net(x, t, torch.tensor([1, 1]))
    b = net(x, t, torch.tensor([2, 2]))
    null = net(x, t, torch.tensor([4, 4]))
    assert not torch.allclose(a, b) and not torch.allclose(a, null)
    torch.testing.assert_close(net(x, t, None), null)  # no label = the null class


def test_unet_has_attention_where_asked_and_checks_sizes():
    net = UNet(1, 1, (16, 16), 0, model_channels=8, channel_mult=(1, 2, 2), num_res_blocks=1,
               attention_resolutions=(2,), num_heads=2)  # fmt: skip
    names = [type(m).__name__ for m in net.modules()]
    assert names.count("AttentionBlock") == 1 + 1 + 2  # down at 8x8, middle, up at 8x8 (2 blocks)
    assert net(torch.randn(2, 1, 16, 16), torch.rand(2)).shape == (2, 1, 16, 16)
    with pytest.raises(ValueError, match="divisible by 4"):
        UNet(1, 1, (10, 10), 0, channel_mult=(1, 2, 2))


def test_discrete_models_return_logits_per_pixel():
    net = build_model("unet-tiny", channels=1, image_size=(8, 8), num_classes=10, vocab=18)
    logits = net(torch.randint(0, 18, (2, 1, 8, 8)), torch.rand(2), torch.tensor([1, 10]))
    assert logits.shape == (2, 1, 8, 8, 18)


def test_cifar_preset_is_the_reference_size():
    cfg = PRESETS["cifar"]
    assert (cfg["model_channels"], cfg["channel_mult"], cfg["num_res_blocks"]) == (
        128,
        (2, 2, 2),
        4,
    )
    with torch.device("meta"):
        net = build_model("cifar", channels=3, image_size=(32, 32), num_classes=10)
    n = sum(p.numel() for p in net.parameters())
    assert 50e6 < n < 65e6
