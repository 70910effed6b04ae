"""Discriminators: parameter counts, key layouts, input checks, features, official layouts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.checkpoints import discriminator_official as official
from gensr.checkpoints.loader import load_model, load_state_dict_strict
from gensr.errors import GensrError
from gensr.models.discriminators import (
    UNetDiscriminatorConfig,
    UNetDiscriminatorSN,
    VGGDiscriminatorConfig,
    VGGStyleDiscriminator,
)
from gensr.models.registry import arch_of, build_model


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def small_vgg(**kw) -> VGGStyleDiscriminator:
    return VGGStyleDiscriminator(VGGDiscriminatorConfig(**{"nf": 8, "input_size": 32, **kw}))


# ------------------------------------------------------------------------------------------ sizes, keys


def test_vgg_param_counts():
    with torch.device("meta"):  # counting only: no memory, no init cost
        assert n_params(VGGStyleDiscriminator()) == 14_499_401  # BasicSR v1, bias-free convs before BN
        assert n_params(VGGStyleDiscriminator(VGGDiscriminatorConfig(conv_bias=True))) == 14_502_281  # 2018
        # BasicSR's 256 variant adds conv5_0/bn5_0/conv5_1/bn5_1 (512 ch): 2,359,296 + 4,194,304 + 2 * 1024.
        assert n_params(VGGStyleDiscriminator(VGGDiscriminatorConfig(input_size=256))) == 21_055_049


def test_unet_param_count_and_keys():
    d = UNetDiscriminatorSN()
    assert n_params(d) == 4_376_897
    keys = list(d.state_dict())
    assert keys[:5] == ["conv0.weight", "conv0.bias", "conv1.weight_orig", "conv1.weight_u", "conv1.weight_v"]
    assert keys[-2:] == ["conv9.weight", "conv9.bias"]
    for i in range(1, 9):  # SN convs are bias-free and keep the official hook-style keys
        assert {f"conv{i}.weight_orig", f"conv{i}.weight_u", f"conv{i}.weight_v"} <= set(keys)
        assert f"conv{i}.bias" not in keys


def test_vgg_key_layout_is_basicsr_v1():
    keys = list(VGGStyleDiscriminator().state_dict())
    names = ["conv0_0.weight", "conv0_0.bias", "conv0_1.weight"] + [
        f"bn0_1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ]
    for i in range(1, 5):
        for j in (0, 1):
            names.append(f"conv{i}_{j}.weight")
            names += [
                f"bn{i}_{j}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
            ]
    names += ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias"]
    assert keys == names


def test_vgg_stage_count_follows_input_size():
    for size, stages in ((8, 1), (32, 3), (128, 5), (256, 6)):
        c = VGGDiscriminatorConfig(nf=4, input_size=size)
        assert c.num_stages == stages and size // 2**stages == 4


# ------------------------------------------------------------------------------------------ forward


def test_vgg_forward_full_size_single_image():
    d = VGGStyleDiscriminator().eval()
    with torch.no_grad():
        out = d(torch.rand(1, 3, 128, 128))
    assert out.shape == (1, 1) and torch.isfinite(out).all()


def test_vgg_features_and_logits_consistent():
    d = small_vgg().eval()
    x = torch.rand(2, 3, 32, 32)
    out, feats = d(x, return_features=True)
    assert out.shape == (2, 1)
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4)]
    # the stored features are the real activations (not overwritten by later in-place LReLUs)
    f0 = F.leaky_relu(d.bn0_1(d.conv0_1(F.leaky_relu(d.conv0_0(x), 0.2))), 0.2)
    torch.testing.assert_close(feats[0], f0)
    torch.testing.assert_close(out, d.linear2(F.leaky_relu(d.linear1(feats[-1].flatten(1)), 0.2)))
    torch.testing.assert_close(d(x), out)


def test_unet_forward_per_pixel_and_features():
    d = UNetDiscriminatorSN(UNetDiscriminatorConfig(nf=8)).eval()
    x = torch.rand(2, 3, 24, 40)
    out, feats = d(x, return_features=True)
    assert out.shape == (2, 1, 24, 40)
    assert len(feats) == 9 and feats[3].shape == (2, 64, 3, 5)
    torch.testing.assert_close(d.conv9(feats[-1]), out)
    torch.testing.assert_close(d(x), out)
    no_skip = UNetDiscriminatorSN(UNetDiscriminatorConfig(nf=8, skip_connection=False))
    assert no_skip(x).shape == (2, 1, 24, 40)


@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (1, 3, 32, 16), (1, 1, 32, 32), (3, 32, 32)])
def test_vgg_rejects_wrong_input(shape):
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        small_vgg()(torch.rand(shape))


@pytest.mark.parametrize("shape", [(1, 3, 20, 32), (1, 3, 32, 36), (1, 4, 32, 32)])
def test_unet_rejects_wrong_input(shape):
    with pytest.raises(ValueError, match="divisible by 8"):
        UNetDiscriminatorSN(UNetDiscriminatorConfig(nf=4))(torch.rand(shape))


# ------------------------------------------------------------------------------------------ configs


def test_registry_builds_both():
    d = build_model("vgg_discriminator", {"nf": 4, "input_size": 64})
    assert isinstance(d, VGGStyleDiscriminator) and arch_of(d) == "vgg_discriminator"
    u = build_model("unet_discriminator", {"nf": 4})
    assert isinstance(u, UNetDiscriminatorSN) and arch_of(u) == "unet_discriminator"


@pytest.mark.parametrize(
    "arch, config, match",
    [
        ("vgg_discriminator", {"input_size": 96}, "power of two"),
        ("vgg_discriminator", {"input_size": 4}, "power of two"),
        ("vgg_discriminator", {"nf": 0}, "nf"),
        ("vgg_discriminator", {"init": "orthogonal"}, "init"),
        ("vgg_discriminator", {"num_feat": 64}, "unknown key"),
        ("unet_discriminator", {"skip": False}, "unknown key"),
        ("unet_discriminator", {"in_ch": -1}, "in_ch"),
    ],
)
def test_bad_configs_are_gensr_errors(arch, config, match):
    with pytest.raises(GensrError, match=match):
        build_model(arch, config)


def test_vgg_init_modes():
    k = small_vgg(init="kaiming")
    assert k.conv0_0.bias.abs().sum() == 0 and k.linear1.bias.abs().sum() == 0  # 2018: zero biases
    d = small_vgg(init="default")
    assert d.conv0_0.bias.abs().sum() > 0  # PyTorch default init (BasicSR v1)


def test_build_on_meta_device():
    with torch.device("meta"):
        for arch in ("vgg_discriminator", "unet_discriminator"):
            m = build_model(arch, {"nf": 4})
            assert all(p.is_meta for p in m.parameters())


# ------------------------------------------------------------------------------------------ official layouts


class _Ref2018D(nn.Module):
    """Re-statement of the 2018 ``Discriminaotr_VGG_128`` (with ``block.sequential`` flattening) at any nf."""

    def __init__(self, nf: int, nested: bool = False) -> None:
        super().__init__()
        chans = [nf, nf, 2 * nf, 2 * nf, 4 * nf, 4 * nf, 8 * nf, 8 * nf, 8 * nf, 8 * nf]
        blocks, cin = [], 3
        for k, cout in enumerate(chans):
            conv = nn.Conv2d(cin, cout, 3 if k % 2 == 0 else 4, 1 if k % 2 == 0 else 2, 1, bias=True)
            parts = [conv] if k == 0 else [conv, nn.BatchNorm2d(cout)]
            blocks.append(parts + [nn.LeakyReLU(0.2, True)])
            cin = cout
        if nested:
            self.features = nn.Sequential(*[nn.Sequential(*b) for b in blocks])
        else:
            self.features = nn.Sequential(*[m for b in blocks for m in b])
        self.classifier = nn.Sequential(nn.Linear(8 * nf * 4 * 4, 100), nn.LeakyReLU(0.2, True), nn.Linear(100, 1))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def _randomize_bn(m: nn.Module) -> None:
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.2, 0.2)


@pytest.mark.parametrize("nested", [False, True])
def test_2018_layout_loads_strictly_and_matches(nested):
    ref = _Ref2018D(nf=8, nested=nested)
    _randomize_bn(ref)
    sd = ref.state_dict()
    if not nested:
        assert "features.2.weight" in sd and "features.3.running_mean" in sd and "features.27.weight" in sd
    found = official.detect(dict(sd))
    assert found.arch == "vgg_discriminator"
    assert found.layout == ("esrgan-2018-nested" if nested else "esrgan-2018")
    assert found.config == {"in_ch": 3, "nf": 8, "input_size": 128, "conv_bias": True}
    d = build_model(found.arch, found.config)
    load_state_dict_strict(d, found.convert(dict(sd)))
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(d.eval()(x), ref.eval()(x))


def test_2018_layout_without_bn_counters():
    ref = _Ref2018D(nf=4)
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith("num_batches_tracked")}
    found = official.detect(sd)
    converted = found.convert(sd)
    assert converted["bn4_1.num_batches_tracked"].item() == 0
    load_state_dict_strict(build_model(found.arch, found.config), converted)


def test_basicsr_layout_roundtrip_through_loader(tmp_path):
    d = build_model("vgg_discriminator", {"nf": 4, "input_size": 64}).eval()
    _randomize_bn(d)
    path = tmp_path / "net_d_1000.pth"
    torch.save({"params": d.state_dict()}, path)
    found = official.detect(d.state_dict())
    assert (found.layout, found.config) == (
        "basicsr",
        {"in_ch": 3, "nf": 4, "input_size": 64, "conv_bias": False},
    )
    loaded = load_model(path)
    assert isinstance(loaded, VGGStyleDiscriminator) and loaded.config.input_size == 64
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), d(x))


def test_unet_layout_roundtrip_and_spectral_norm_numerics(tmp_path):
    d = UNetDiscriminatorSN(UNetDiscriminatorConfig(nf=8))
    d.train()
    for _ in range(3):  # advance the power iteration so u, v differ from their init
        d(torch.rand(1, 3, 16, 16))
    path = tmp_path / "RealESRGAN_x4plus_netD.pth"
    torch.save({"params": d.state_dict()}, path)
    found = official.detect(d.state_dict())
    assert (found.arch, found.layout) == ("unet_discriminator", "real-esrgan")
    assert found.config == {"in_ch": 3, "nf": 8, "skip_connection": True}
    loaded = load_model(path)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), d.eval()(x))
        # eval mode: W_sn = W_orig / (u . W v) with the stored u, v (no power iteration)
        w = loaded.conv2.weight_orig
        u, v = loaded.conv2.weight_u, loaded.conv2.weight_v
        sigma = torch.dot(u, w.flatten(1) @ v)
        torch.testing.assert_close(loaded.conv2.weight, w / sigma)


def test_detect_ignores_other_networks():
    vgg19_like = {"features.0.weight": torch.zeros(64, 3, 3, 3), "features.0.bias": torch.zeros(64)}
    vgg19_like |= {f"classifier.{i}.weight": torch.zeros(2, 2) for i in (0, 3, 6)}
    assert official.detect(vgg19_like) is None
    assert official.detect({"conv_first.weight": torch.zeros(64, 3, 3, 3)}) is None


def test_detect_refuses_known_unsupported_layouts():
    with pytest.raises(GensrError, match="SN"):
        official.detect({"conv0.weight_orig": torch.zeros(1), "linear0.weight_orig": torch.zeros(1)})
    d = VGGStyleDiscriminator(VGGDiscriminatorConfig(nf=4, input_size=32)).state_dict()
    d["linear1.weight"] = torch.zeros(100, 32 * 3 * 3)  # a 96-style head with a final 3x3 map
    with pytest.raises(GensrError, match="4x4"):
        official.detect(d)


def test_mismatched_checkpoint_is_a_listed_error(tmp_path):
    sd = dict(_Ref2018D(nf=4).state_dict())
    sd["classifier.9.weight"] = torch.zeros(1)
    path = tmp_path / "d.pth"
    torch.save(sd, path)
    with pytest.raises(GensrError, match="unexpected key.*classifier.9.weight"):
        load_model(path)
