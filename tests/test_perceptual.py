"""VGG19 features (torchvision layout, no torchvision); perceptual, feature-matching and pixel losses.

A VGG19 weights file is made here with random values in torchvision's layout: ``features.N.weight/bias``
for the 16 convs, plus ``classifier.*`` keys (tiny stand-ins: the loader ignores them by name).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gensr.errors import GensrError
from gensr.losses.perceptual import PRESETS, FeatureMatchingLoss, PerceptualLoss
from gensr.losses.pixel import PixelLoss, charbonnier_loss, l1_loss, mse_loss, pixel_loss_fn
from gensr.models.discriminators import VGGDiscriminatorConfig, VGGStyleDiscriminator
from gensr.nn.vgg import (
    LAYER_INDEX,
    WEIGHTS_ENV,
    VGG19FeatureExtractor,
    check_vgg19_state_dict,
    load_vgg19_weights,
)

CONV_IDX = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]  # torchvision vgg19().features convs
POOL_IDX = [4, 9, 18, 27, 36]
CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def make_vgg19_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd, cin = {}, 3
    for idx, cout in zip(CONV_IDX, CHANNELS, strict=True):
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.1
        cin = cout
    for i in (0, 3, 6):  # torchvision has (4096, 25088) etc.; only the names matter here
        sd[f"classifier.{i}.weight"] = torch.zeros(2, 2)
        sd[f"classifier.{i}.bias"] = torch.zeros(2)
    return sd


@pytest.fixture(scope="module")
def vgg_sd() -> dict[str, torch.Tensor]:
    return make_vgg19_state_dict()


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory, vgg_sd):
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(vgg_sd, path)
    return path


def manual_outputs(sd: dict[str, torch.Tensor], x: torch.Tensor, upto: int) -> list[torch.Tensor]:
    """Outputs of torchvision vgg19().features[i] for i <= upto on ImageNet-normalised x, out of place."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h, outs = (x - mean) / std, []
    for i in range(upto + 1):
        if i in CONV_IDX:
            h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
        elif i in POOL_IDX:
            h = F.max_pool2d(h, 2, 2)
        else:
            h = F.relu(h)
        outs.append(h)
    return outs


# ------------------------------------------------------------------------------------------ VGG19 loading


def test_layer_names_match_torchvision_indices():
    assert LAYER_INDEX["conv1_1"] == 0 and LAYER_INDEX["conv1_2"] == 2 and LAYER_INDEX["conv2_2"] == 7
    assert LAYER_INDEX["conv3_4"] == 16 and LAYER_INDEX["conv4_4"] == 25 and LAYER_INDEX["conv5_4"] == 34
    assert LAYER_INDEX["relu5_4"] == 35 and LAYER_INDEX["pool5"] == 36 and len(LAYER_INDEX) == 37
    assert [LAYER_INDEX[f"pool{i}"] for i in range(1, 6)] == POOL_IDX


def test_strict_loading_of_feature_part(vgg_file, vgg_sd):
    ext = VGG19FeatureExtractor(["conv5_4"], weights_path=vgg_file)
    assert len(ext.features) == 35  # features[:35]: stops at conv5_4, before relu5_4
    for idx in CONV_IDX:
        assert torch.equal(ext.features[idx].weight, vgg_sd[f"features.{idx}.weight"])
        assert torch.equal(ext.features[idx].bias, vgg_sd[f"features.{idx}.bias"])
    assert len(VGG19FeatureExtractor(["conv1_2"], weights_path=vgg_file).features) == 3
    assert list(ext.state_dict()) == [f"features.{i}.{k}" for i in CONV_IDX for k in ("weight", "bias")]


def test_weights_from_env_var(vgg_file, monkeypatch):
    monkeypatch.setenv(WEIGHTS_ENV, str(vgg_file))
    assert len(load_vgg19_weights()) == 32


def test_missing_weights_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(GensrError, match=WEIGHTS_ENV):
        VGG19FeatureExtractor(["conv5_4"])
    with pytest.raises(GensrError, match="not found"):
        VGG19FeatureExtractor(["conv5_4"], weights_path=tmp_path / "nope.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "also-nope.pth"))
    with pytest.raises(GensrError, match=f"not found.*{WEIGHTS_ENV}"):
        VGG19FeatureExtractor(["conv5_4"])
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(GensrError, match="not a readable"):
        VGG19FeatureExtractor(["conv5_4"], weights_path=bad)


def test_wrong_keys_are_listed(vgg_sd, tmp_path):
    missing = {k: v for k, v in vgg_sd.items() if k != "features.34.weight"}
    with pytest.raises(GensrError, match=r"missing 1 key\(s\): features\.34\.weight"):
        check_vgg19_state_dict(missing)
    prefixed = {f"module.{k}": v for k, v in vgg_sd.items()}
    with pytest.raises(GensrError, match="unexpected"):
        check_vgg19_state_dict(prefixed)
    bn = dict(vgg_sd) | {"features.1.running_mean": torch.zeros(64)}
    with pytest.raises(GensrError, match="vgg19_bn"):
        check_vgg19_state_dict(bn)
    shape = dict(vgg_sd) | {"features.0.weight": torch.zeros(64, 1, 3, 3)}
    with pytest.raises(GensrError, match=r"features\.0\.weight \(64, 1, 3, 3\) != \(64, 3, 3, 3\)"):
        check_vgg19_state_dict(shape)
    path = tmp_path / "wrong.pth"
    torch.save(missing, path)
    with pytest.raises(GensrError, match=f"{path.name}.*missing"):
        VGG19FeatureExtractor(["conv1_1"], weights_path=path)


def test_unknown_layer_name(vgg_file):
    with pytest.raises(GensrError, match="unknown VGG19 layer.*conv6_1"):
        VGG19FeatureExtractor(["conv6_1"], weights_path=vgg_file)


def test_safetensors_weights(vgg_sd, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "vgg19.safetensors"
    save_file({k: v.contiguous() for k, v in vgg_sd.items()}, str(path))
    ext = VGG19FeatureExtractor(["conv1_1"], weights_path=path)
    torch.testing.assert_close(ext.features[0].weight, vgg_sd["features.0.weight"])


# ------------------------------------------------------------------------------------------ taps


def test_taps_match_manual_forward(vgg_file, vgg_sd):
    layers = ["conv1_1", "relu1_1", "conv1_2", "pool1", "conv3_4", "conv4_4", "relu4_4", "conv5_4"]
    ext = VGG19FeatureExtractor(layers, weights_path=vgg_file)
    x = torch.rand(1, 3, 32, 32)
    out = ext(x)
    assert list(out) == layers
    manual = manual_outputs(vgg_sd, x, 34)
    for name in layers:
        torch.testing.assert_close(out[name], manual[LAYER_INDEX[name]], rtol=1e-4, atol=1e-5)
    assert out["conv5_4"].shape == (1, 512, 2, 2)


def test_pre_activation_taps_are_cloned_before_inplace_relu(vgg_file, vgg_sd):
    ext = VGG19FeatureExtractor(["conv1_1", "relu1_1", "conv5_4"], weights_path=vgg_file)
    out = ext(torch.rand(1, 3, 32, 32))
    assert (out["conv1_1"] < 0).any()  # still the pre-activation values after relu1_1 ran in place
    torch.testing.assert_close(out["relu1_1"], out["conv1_1"].clamp_min(0))
    assert out["conv1_1"].data_ptr() != out["relu1_1"].data_ptr()


def test_frozen_eval_and_gradients(vgg_file):
    ext = VGG19FeatureExtractor(["conv2_2"], weights_path=vgg_file)
    ext.train()
    assert not ext.training and all(not p.requires_grad for p in ext.parameters())
    x = torch.rand(1, 3, 16, 16, requires_grad=True)
    ext(x)["conv2_2"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in ext.parameters())


# ------------------------------------------------------------------------------------------ perceptual loss


def test_perceptual_loss_zero_for_identical_positive_otherwise(vgg_file):
    loss = PerceptualLoss({"conv3_4": 1.0}, weights_path=vgg_file)
    a = torch.rand(2, 3, 16, 16)
    assert loss(a, a.clone()).item() == 0.0
    assert loss(a, torch.rand(2, 3, 16, 16)).item() > 0.0


def test_perceptual_loss_value_and_gradients(vgg_file, vgg_sd):
    loss = PerceptualLoss({"conv2_2": 0.5, "conv5_4": 2.0}, weights_path=vgg_file)
    out = torch.rand(1, 3, 32, 32, requires_grad=True)
    tgt = torch.rand(1, 3, 32, 32, requires_grad=True)
    value = loss(out, tgt)
    mo, mt = manual_outputs(vgg_sd, out, 34), manual_outputs(vgg_sd, tgt, 34)
    expected = 0.5 * (mo[7] - mt[7]).abs().mean() + 2.0 * (mo[34] - mt[34]).abs().mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-4)
    value.backward()
    assert out.grad.abs().sum() > 0
    assert tgt.grad is None  # target features carry no gradient
    assert all(p.grad is None for p in loss.parameters())


def test_perceptual_presets_and_errors(vgg_file):
    assert PerceptualLoss(weights_path=vgg_file).layer_weights == {"conv5_4": 1.0}
    real = PerceptualLoss("real-esrgan", weights_path=vgg_file)
    assert real.layer_weights == PRESETS["real-esrgan"]
    assert real.layer_weights == {
        "conv1_2": 0.1,
        "conv2_2": 0.1,
        "conv3_4": 1.0,
        "conv4_4": 1.0,
        "conv5_4": 1.0,
    }
    assert len(real.vgg.features) == 35
    with pytest.raises(GensrError, match="unknown perceptual preset"):
        PerceptualLoss("lpips", weights_path=vgg_file)
    with pytest.raises(GensrError, match="unknown pixel loss"):
        PerceptualLoss(weights_path=vgg_file, criterion="huber")
    with pytest.raises(GensrError, match="number"):
        PerceptualLoss({"conv5_4": "heavy"}, weights_path=vgg_file)
    mse = PerceptualLoss({"conv1_2": 1.0}, weights_path=vgg_file, criterion="mse")
    a, b = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        fa, fb = mse.vgg(a)["conv1_2"], mse.vgg(b)["conv1_2"]
    assert mse(a, b).item() == pytest.approx(((fa - fb) ** 2).mean().item(), rel=1e-5)


# ------------------------------------------------------------------------------------------ feature matching


def test_feature_matching_on_discriminator_features():
    d = VGGStyleDiscriminator(VGGDiscriminatorConfig(nf=4, input_size=16)).eval()
    real = torch.rand(2, 3, 16, 16, requires_grad=True)
    fake = torch.rand(2, 3, 16, 16, requires_grad=True)
    _, rf = d(real, return_features=True)
    _, ff = d(fake, return_features=True)
    loss = FeatureMatchingLoss()(rf, ff)
    expected = sum((f - r).abs().mean() for r, f in zip(rf, ff, strict=True)) / len(rf)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    grad_fake, grad_real = torch.autograd.grad(loss, [fake, real], allow_unused=True)
    assert grad_real is None and grad_fake.abs().sum() > 0
    _, same = d(fake.detach(), return_features=True)
    assert FeatureMatchingLoss()(same, same).item() == 0.0
    with pytest.raises(ValueError, match="feature maps"):
        FeatureMatchingLoss()(rf, ff[:-1])


# ------------------------------------------------------------------------------------------ pixel losses


def test_pixel_losses_by_hand():
    x = torch.tensor([0.0, 0.5, 1.0])
    y = torch.tensor([0.25, 0.5, 0.0])
    assert l1_loss(x, y).item() == pytest.approx((0.25 + 0.0 + 1.0) / 3)
    assert mse_loss(x, y).item() == pytest.approx((0.0625 + 0.0 + 1.0) / 3)
    eps = 1e-3
    expected = ((0.0625 + eps**2) ** 0.5 + eps + (1.0 + eps**2) ** 0.5) / 3
    assert charbonnier_loss(x, y, eps).item() == pytest.approx(expected, rel=1e-6)
    assert charbonnier_loss(x, x).item() == pytest.approx(1e-3)
    assert PixelLoss("charbonnier", eps=0.1)(x, x).item() == pytest.approx(0.1)
    assert PixelLoss("L2")(x, y).item() == pytest.approx(mse_loss(x, y).item())
    assert l1_loss(x.bfloat16(), y.bfloat16()).dtype == torch.float32


def test_pixel_loss_errors():
    with pytest.raises(GensrError, match="l1, mse, charbonnier"):
        pixel_loss_fn("ssim")
    with pytest.raises(ValueError, match="shape"):
        l1_loss(torch.zeros(2), torch.zeros(3))
