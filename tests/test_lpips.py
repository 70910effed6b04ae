"""LPIPS v0.1 (gensr.metrics.lpips), AlexNet features (gensr.nn.alexnet) and VGG16 features (gensr.nn.vgg).

Weight files are made here with random values in the official layouts: torchvision backbones
(``features.N.weight/bias`` + ``classifier.*``), the lpips package's head files (``linK.model.1.weight``)
and whole ``lpips.LPIPS`` state dicts (``net.sliceS.N.*``, ``lin*``, ``lins.*``, ``scaling_layer.*``).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError
from gensr.metrics.lpips import (
    LPIPS,
    WEIGHTS_ENV,
    load_lpips,
    lpips_available,
    lpips_distance,
    resolve_lpips_files,
)
from gensr.nn.alexnet import build_alexnet_features, check_alexnet_state_dict
from gensr.nn.vgg import VGG16_LAYER_INDEX, build_vgg16_features, check_vgg16_state_dict

# torchvision alexnet().features: conv index -> (in, out, kernel, stride, padding); max-pools 3x3 stride 2.
ALEX_CONVS = {0: (3, 64, 11, 4, 2), 3: (64, 192, 5, 1, 2), 6: (192, 384, 3, 1, 1), 8: (384, 256, 3, 1, 1),
              10: (256, 256, 3, 1, 1)}  # fmt: skip
ALEX_POOLS = (2, 5, 12)
# torchvision vgg16().features: 3x3 convs (padding 1), 2x2 max-pools at 4, 9, 16, 23, 30.
VGG16_CONV_IDX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
VGG16_CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG16_POOLS = (4, 9, 16, 23, 30)
# The lpips package: taps (features index) and the slice each conv index lives in.
TAPS = {"alex": (1, 4, 7, 9, 11), "vgg": (3, 8, 15, 22, 29)}
CHANNELS = {"alex": (64, 192, 384, 256, 256), "vgg": (64, 128, 256, 512, 512)}
SLICE_OF = {
    "alex": {0: 1, 3: 2, 6: 3, 8: 4, 10: 5},
    "vgg": {0: 1, 2: 1, 5: 2, 7: 2, 10: 3, 12: 3, 14: 3, 17: 4, 19: 4, 21: 4, 24: 5, 26: 5, 28: 5},
}
BACKBONE_FILE = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def _conv_table(net: str) -> dict[int, tuple[int, int, int]]:
    if net == "alex":
        return {i: (cin, cout, k) for i, (cin, cout, k, _, _) in ALEX_CONVS.items()}
    ins = (3, *VGG16_CHANNELS[:-1])
    return {i: (cin, cout, 3) for i, cin, cout in zip(VGG16_CONV_IDX, ins, VGG16_CHANNELS, strict=True)}


def make_backbone_sd(net: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random torchvision-layout weights (He scaled), plus tiny ``classifier.*`` stand-ins."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for i, (cin, cout, k) in _conv_table(net).items():
        sd[f"features.{i}.weight"] = torch.randn(cout, cin, k, k, generator=g) * (2.0 / (cin * k * k)) ** 0.5
        sd[f"features.{i}.bias"] = torch.randn(cout, generator=g) * 0.05
    for i in (1, 4, 6):
        sd[f"classifier.{i}.weight"] = torch.zeros(2, 2)
        sd[f"classifier.{i}.bias"] = torch.zeros(2)
    return sd


def make_head_sd(net: str, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random non-negative 1x1 heads, keys as in the lpips package's weights/v0.1/{net}.pth."""
    g = torch.Generator().manual_seed(seed)
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=g) for k, c in enumerate(CHANNELS[net])}


def lpips_package_sd(net: str, backbone: dict, heads: dict) -> dict[str, torch.Tensor]:
    """The state dict of ``lpips.LPIPS(net=net)`` (0.1.4: lin* and their lins.* duplicates) for these weights."""
    sd = {
        "scaling_layer.shift": torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
    }
    for key, value in backbone.items():
        if key.startswith("features."):
            _, idx, kind = key.split(".")
            sd[f"net.slice{SLICE_OF[net][int(idx)]}.{idx}.{kind}"] = value
    for k in range(5):
        sd[f"lin{k}.model.1.weight"] = heads[f"lin{k}.model.1.weight"]
        sd[f"lins.{k}.model.1.weight"] = heads[f"lin{k}.model.1.weight"].clone()
    return sd


@pytest.fixture(scope="module")
def alex_weights(tmp_path_factory):
    """A folder with alex.pth + alexnet-owt-7be5be79.pth, and the same weights as a combined lpips file."""
    folder = tmp_path_factory.mktemp("lpips_alex")
    backbone, heads = make_backbone_sd("alex"), make_head_sd("alex")
    torch.save(heads, folder / "alex.pth")
    torch.save(backbone, folder / BACKBONE_FILE["alex"])
    combined = folder.parent / "lpips_alex_combined.pth"
    torch.save(lpips_package_sd("alex", backbone, heads), combined)
    return {"folder": folder, "combined": combined, "backbone": backbone, "heads": heads}


@pytest.fixture(scope="module")
def alex(alex_weights) -> LPIPS:
    return load_lpips("alex", alex_weights["folder"])


def _images(n: int = 2, size: tuple[int, int] = (64, 72), seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, *size, generator=g)
    return x, (x + 0.2 * torch.randn(x.shape, generator=g)).clamp(0, 1)


# ------------------------------------------------------------------------------------------ backbones


def test_alexnet_features_match_torchvision_architecture(alex_weights):
    sd = check_alexnet_state_dict(alex_weights["backbone"])
    assert len(sd) == 10  # classifier.* ignored
    feats = build_alexnet_features()
    assert len(feats) == 13
    feats.load_state_dict({k[len("features.") :]: v for k, v in sd.items()}, strict=True)
    x = torch.randn(1, 3, 67, 67)
    h, manual = x, []
    for i in range(13):
        if i in ALEX_CONVS:
            _, _, _, stride, pad = ALEX_CONVS[i]
            h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], stride=stride, padding=pad)
        elif i in ALEX_POOLS:
            h = F.max_pool2d(h, 3, 2)
        else:
            h = F.relu(h)
        manual.append(h)
    with torch.no_grad():
        h = x
        for i, layer in enumerate(feats):
            h = layer(h)
            torch.testing.assert_close(h, manual[i], rtol=1e-4, atol=1e-5)
    assert manual[11].shape == (1, 256, 3, 3)


def test_vgg16_features_match_torchvision_architecture():
    assert [VGG16_LAYER_INDEX[n] for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")] == [3, 8, 15, 22, 29]
    assert [VGG16_LAYER_INDEX[f"pool{i}"] for i in range(1, 6)] == list(VGG16_POOLS)
    sd = check_vgg16_state_dict(make_backbone_sd("vgg"))
    assert len(sd) == 26
    feats = build_vgg16_features()
    assert len(feats) == 31
    feats.load_state_dict({k[len("features.") :]: v for k, v in sd.items()}, strict=True)
    x = torch.randn(1, 3, 32, 32)
    h = x
    for i in range(31):
        if i in VGG16_CONV_IDX:
            h = F.conv2d(h, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
        elif i in VGG16_POOLS:
            h = F.max_pool2d(h, 2, 2)
        else:
            h = F.relu(h)
    with torch.no_grad():
        torch.testing.assert_close(feats(x), h, rtol=1e-4, atol=1e-5)


def test_backbone_checks_list_keys():
    sd = make_backbone_sd("alex")
    with pytest.raises(GensrError, match=r"missing 1 key\(s\): features\.6\.bias"):
        check_alexnet_state_dict({k: v for k, v in sd.items() if k != "features.6.bias"})
    with pytest.raises(GensrError, match=r"features\.3\.weight \(192, 64, 3, 3\) != \(192, 64, 5, 5\)"):
        check_alexnet_state_dict(sd | {"features.3.weight": torch.zeros(192, 64, 3, 3)})
    wrong_net = r"VGG16 state dict: missing 22 key\(s\).*unexpected 6 key\(s\): features\.3\.bias"
    with pytest.raises(GensrError, match=wrong_net):
        check_vgg16_state_dict(sd)  # an AlexNet file is not a VGG16 one


# ------------------------------------------------------------------------------------------ weight files


def test_folder_combined_env_and_safetensors_agree(alex_weights, alex, tmp_path, monkeypatch):
    from safetensors.torch import save_file

    x, y = _images()
    with torch.no_grad():
        ref, ref_map = alex(x, y), alex(x, y, spatial=True)
    st_folder = tmp_path / "st"
    st_folder.mkdir()
    save_file(alex_weights["heads"], str(st_folder / "alex.safetensors"))
    save_file(alex_weights["backbone"], str(st_folder / "alexnet-owt-7be5be79.safetensors"))
    lpips_sd = lpips_package_sd("alex", alex_weights["backbone"], alex_weights["heads"])
    save_file({k: v.contiguous() for k, v in lpips_sd.items()}, str(tmp_path / "lpips_alex.safetensors"))
    monkeypatch.setenv(WEIGHTS_ENV, str(alex_weights["combined"]))
    models = [
        load_lpips("alex", alex_weights["combined"]),
        load_lpips("alexnet"),  # from the environment variable
        load_lpips("alex", st_folder),
        load_lpips("alex", tmp_path),  # folder holding a combined lpips_alex.safetensors
    ]
    for model in models:
        assert not model.training and not any(p.requires_grad for p in model.parameters())
        with torch.no_grad():
            assert torch.equal(model(x, y), ref)
            assert torch.equal(model(x, y, spatial=True), ref_map)
    assert torch.equal(alex.heads[2].weight, alex_weights["heads"]["lin2.model.1.weight"])
    assert torch.equal(alex.backbone.features[10].bias, alex_weights["backbone"]["features.10.bias"])


def test_vgg_folder_and_combined_agree(tmp_path):
    backbone, heads = make_backbone_sd("vgg"), make_head_sd("vgg")
    torch.save(heads, tmp_path / "vgg.pth")
    torch.save(backbone, tmp_path / BACKBONE_FILE["vgg"])
    combined = tmp_path / "combined.pth"
    torch.save(lpips_package_sd("vgg", backbone, heads), combined)
    a, b = load_lpips("vgg", tmp_path), load_lpips("vgg16", combined)
    x, y = _images(1, (32, 40))
    with torch.no_grad():
        assert torch.equal(a(x, y), b(x, y))
        assert a(x, y, spatial=True).shape == (1, 1, 32, 40)


def test_missing_weights_are_one_clear_line(alex_weights, tmp_path, monkeypatch):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    with pytest.raises(GensrError) as err:
        load_lpips("alex")
    msg = str(err.value)
    assert WEIGHTS_ENV in msg and "alex.pth" in msg and "alexnet-owt-7be5be79.pth" in msg and "\n" not in msg
    assert not lpips_available("alex")
    assert lpips_available("alex", alex_weights["folder"])
    assert not lpips_available("vgg", alex_weights["folder"])  # one folder, but no vgg files in it
    with pytest.raises(GensrError, match=r"no vgg\.pth.*no vgg16-397923af\.pth"):
        load_lpips("vgg", alex_weights["folder"])
    with pytest.raises(GensrError, match="not found"):
        load_lpips("alex", tmp_path / "nope")
    only_head = tmp_path / "only_head"
    only_head.mkdir()
    torch.save(alex_weights["heads"], only_head / "alex.pth")
    monkeypatch.setenv(WEIGHTS_ENV, str(only_head))
    with pytest.raises(GensrError, match=f"{WEIGHTS_ENV}.*no alexnet-owt-7be5be79.pth"):
        load_lpips("alex")
    torch.save(alex_weights["backbone"], only_head / "alexnet-owt-4df8aa71.pth")
    torch.save(alex_weights["backbone"], only_head / "alexnet-copy.pth")
    with pytest.raises(GensrError, match="several alexnet-"):
        load_lpips("alex")
    with pytest.raises(GensrError, match="unknown LPIPS network 'squeeze'"):
        load_lpips("squeeze", alex_weights["folder"])


def _load_error(tmp_path, sd: dict, name: str = "bad.pth", net: str = "alex") -> str:
    path = tmp_path / name
    torch.save(sd, path)
    with pytest.raises(GensrError) as err:
        load_lpips(net, path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_strict_loading_lists_keys(alex_weights, tmp_path):
    good = lpips_package_sd("alex", alex_weights["backbone"], alex_weights["heads"])
    no_head = {k: v for k, v in good.items() if not k.startswith(("lin3.", "lins.3."))}
    assert "missing 1 key(s): lin3.model.1.weight" in _load_error(tmp_path, no_head)
    no_conv = {k: v for k, v in good.items() if k != "net.slice3.6.weight"}  # named in the file's own layout
    assert "missing 1 key(s): net.slice3.6.weight" in _load_error(tmp_path, no_conv)
    extra = good | {"lin5.model.1.weight": torch.zeros(1, 8, 1, 1), "net.slice6.12.weight": torch.zeros(1)}
    assert "unexpected 2 key(s): lin5.model.1.weight, net.slice6.12.weight" in _load_error(tmp_path, extra)
    wrong_slice = {("net.slice2.6.weight" if k == "net.slice3.6.weight" else k): v for k, v in good.items()}
    msg = _load_error(tmp_path, wrong_slice)
    assert "missing 1 key(s): net.slice3.6.weight" in msg and "unexpected 1 key(s): net.slice2.6.weight" in msg
    shape = good | {"lin1.model.1.weight": torch.zeros(1, 64, 1, 1), "lins.1.model.1.weight": torch.zeros(1, 64, 1, 1)}
    assert "lin1.model.1.weight (1, 64, 1, 1) != (1, 192, 1, 1)" in _load_error(tmp_path, shape)
    conflict = good | {"lins.0.model.1.weight": torch.zeros(1, 64, 1, 1)}
    assert "disagrees" in _load_error(tmp_path, conflict)
    scaling = good | {"scaling_layer.scale": torch.ones(1, 3, 1, 1)}
    assert "scaling_layer.scale" in _load_error(tmp_path, scaling)
    only_backbone = _load_error(tmp_path, alex_weights["backbone"])  # a torchvision file alone
    assert "missing 5 key(s): lin0.model.1.weight" in only_backbone
    vgg_file = lpips_package_sd("vgg", make_backbone_sd("vgg"), make_head_sd("vgg"))
    assert "not LPIPS v0.1 AlexNet weights" in _load_error(tmp_path, vgg_file)  # wrong network
    prefixed = {f"module.{k}": v for k, v in alex_weights["heads"].items()} | alex_weights["backbone"]
    assert "unexpected 5 key(s): module.lin0.model.1.weight" in _load_error(tmp_path, prefixed)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(GensrError, match="not a readable LPIPS"):
        load_lpips("alex", garbage)


# ------------------------------------------------------------------------------------------ the metric


def test_invariants(alex):
    x, y = _images(3)
    with torch.no_grad():
        d = alex(x, y)
        assert d.shape == (3, 1, 1, 1) and d.dtype == torch.float32
        assert torch.all(d > 0)  # non-negative heads, different images
        assert torch.equal(alex(x, x), torch.zeros(3, 1, 1, 1))
        assert torch.equal(alex(y, x), d)
        m = alex(x, y, spatial=True)
        assert m.shape == (3, 1, 64, 72) and torch.all(m >= 0)
        assert torch.equal(alex(x, x, spatial=True), torch.zeros(3, 1, 64, 72))
        # AlexNet taps are 8..32x smaller than the input: the upsampled map's mean is close, not equal
        torch.testing.assert_close(m.mean(dim=(2, 3), keepdim=True), d, rtol=0.15, atol=0.0)
        broadcast = alex(x, y[:1])
        torch.testing.assert_close(broadcast, alex(x, y[:1].expand(3, -1, -1, -1)), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="differ in shape"):
        alex(x, y[:, :, :32])
    with pytest.raises(ValueError, match="RGB"):
        alex(x[:, :1], y[:, :1])


class StubBackbone(nn.Module):
    """Two taps: the input itself (3 channels, full size) and avg_pool2(relu(1x1 conv)) (2 channels, half size)."""

    def __init__(self, half: bool = True) -> None:
        super().__init__()
        self.half = half
        self.conv = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, -0.5, 0.25], [-1.0, 2.0, 0.5]]).view(2, 3, 1, 1))
            self.conv.bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, x):
        second = torch.relu(self.conv(x))
        return [x, F.avg_pool2d(second, 2) if self.half else second]


def _np_upsample(m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear, half-pixel centres (align_corners=False), source index clamped at 0 and at the last pixel."""

    def weights(n_in: int, n_out: int) -> np.ndarray:
        w = np.zeros((n_out, n_in))
        for j in range(n_out):
            src = max((j + 0.5) * n_in / n_out - 0.5, 0.0)
            i0 = min(int(np.floor(src)), n_in - 1)
            i1 = min(i0 + 1, n_in - 1)
            w[j, i0] += 1 - (src - i0)
            w[j, i1] += src - i0
        return w

    return weights(m.shape[0], out_h) @ m @ weights(m.shape[1], out_w).T


def test_hand_check_of_the_formula_on_a_stub():
    model = LPIPS(StubBackbone(), channels=(3, 2)).eval()
    w0, w1 = np.array([0.5, 1.0, 2.0]), np.array([3.0, 0.25])
    with torch.no_grad():
        model.heads[0].weight.copy_(torch.tensor(w0).view(1, 3, 1, 1))
        model.heads[1].weight.copy_(torch.tensor(w1).view(1, 2, 1, 1))
    x, y = _images(1, (4, 6), seed=7)
    with torch.no_grad():
        got, got_map = float(model(x, y)), model(x, y, spatial=True)[0, 0].double().numpy()

    conv_w = np.array([[1.0, -0.5, 0.25], [-1.0, 2.0, 0.5]])
    conv_b = np.array([0.1, -0.2])
    shift, scale = np.array([-0.030, -0.088, -0.188]), np.array([0.458, 0.448, 0.450])

    def taps(img: torch.Tensor) -> list[np.ndarray]:
        v = (2 * img[0].double().numpy().transpose(1, 2, 0) - 1 - shift) / scale  # (H, W, 3)
        second = np.maximum(v @ conv_w.T + conv_b, 0)  # (H, W, 2)
        pooled = second.reshape(2, 2, 3, 2, 2).mean(axis=(1, 3))  # 2x2 average pool -> (2, 3, 2)
        return [v, pooled]

    def unit(f: np.ndarray) -> np.ndarray:
        return f / (np.sqrt((f * f).sum(axis=-1, keepdims=True)) + 1e-10)

    maps = [((unit(a) - unit(b)) ** 2) @ w for a, b, w in zip(taps(x), taps(y), (w0, w1), strict=True)]
    assert abs(got - (maps[0].mean() + maps[1].mean())) < 1e-5
    expected_map = maps[0] + _np_upsample(maps[1], 4, 6)
    np.testing.assert_allclose(got_map, expected_map, rtol=1e-5, atol=1e-6)


def test_spatial_mean_equals_value_when_taps_are_full_size():
    model = LPIPS(StubBackbone(half=False), channels=(3, 2)).eval()
    with torch.no_grad():
        for head in model.heads:
            head.weight.uniform_(0, 1)
        x, y = _images(2, (9, 13))
        m = model(x, y, spatial=True)
        torch.testing.assert_close(m.mean(dim=(2, 3), keepdim=True), model(x, y), rtol=1e-6, atol=1e-7)


def test_numpy_convenience(alex):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (48, 56, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 41, a.shape), 0, 255).astype(np.uint8)
    ta = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    tb = torch.from_numpy(b).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        ref, ref_map = float(alex(ta, tb)), alex(ta, tb, spatial=True)[0, 0].double().numpy()
    assert lpips_distance(a, b, alex) == ref
    got_map = lpips_distance(a, b, alex, spatial=True)
    assert got_map.shape == (48, 56) and got_map.dtype == np.float64
    np.testing.assert_array_equal(got_map, ref_map)
    assert lpips_distance(a, a, alex) == 0.0
    with pytest.raises(ValueError, match="RGB"):
        lpips_distance(a[:, :, 0], b[:, :, 0], alex)
    with pytest.raises(ValueError, match="sizes differ"):
        lpips_distance(a, b[:40], alex)


# ------------------------------------------------------------------------------------------ lpips package


@pytest.fixture
def lpips_package(monkeypatch):
    """The installed ``lpips`` package; torchvision/scipy (not gensr deps) are stubbed when absent.

    The stub's ``models.alexnet/vgg16(pretrained=False).features`` are gensr's torchvision-layout builders; the
    weights are then overwritten through the package's own ``load_state_dict(strict=True)``.
    """
    if importlib.util.find_spec("lpips") is None:
        pytest.skip("the lpips package is not installed (pip install lpips --no-deps)")
    before = set(sys.modules)

    def stub(name: str, **attrs) -> None:
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)

    def model_factory(build):
        def factory(pretrained: bool = False, **_):
            assert not pretrained, "nothing may be downloaded"
            return types.SimpleNamespace(features=build())

        return factory

    if importlib.util.find_spec("torchvision") is None:
        models = types.SimpleNamespace(
            alexnet=model_factory(build_alexnet_features), vgg16=model_factory(build_vgg16_features)
        )
        stub("torchvision", models=models)
    if importlib.util.find_spec("scipy") is None:
        stub("scipy")
        stub("scipy.ndimage", zoom=None)
    try:
        import lpips
    except Exception as exc:  # noqa: BLE001 - any import failure means: not usable here
        pytest.skip(f"the lpips package does not import here: {type(exc).__name__}: {exc}")
    yield lpips
    for name in set(sys.modules) - before:
        if name == "lpips" or name.startswith("lpips."):
            del sys.modules[name]


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_matches_the_lpips_package(lpips_package, net, tmp_path):
    theirs = lpips_package.LPIPS(pretrained=False, net=net, pnet_rand=True, verbose=False)
    theirs.load_state_dict(lpips_package_sd(net, make_backbone_sd(net, 5), make_head_sd(net, 6)), strict=True)
    theirs.eval()
    path = tmp_path / f"lpips_{net}_state.pth"
    torch.save(theirs.state_dict(), path)  # their own key layout, lins.* duplicates included
    ours = load_lpips(net, path)
    x, y = _images(2, (64, 48), seed=11)
    with torch.no_grad():
        ref = theirs(2 * x - 1, 2 * y - 1)
        theirs.spatial = True
        ref_map = theirs(2 * x - 1, 2 * y - 1)
        torch.testing.assert_close(ours(x, y), ref, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(ours(x, y, spatial=True), ref_map, rtol=1e-5, atol=1e-7)
    assert float(ref.min()) > 0


def test_resolve_prefers_combined_file_in_folder(alex_weights, tmp_path):
    torch.save(alex_weights["heads"], tmp_path / "alex.pth")
    torch.save(alex_weights["backbone"], tmp_path / "alexnet-owt-7be5be79.pth")
    assert [p.name for p in resolve_lpips_files("alex", tmp_path)] == ["alex.pth", "alexnet-owt-7be5be79.pth"]
    torch.save(lpips_package_sd("alex", alex_weights["backbone"], alex_weights["heads"]), tmp_path / "lpips_alex.pth")
    assert [p.name for p in resolve_lpips_files("alex", tmp_path)] == ["lpips_alex.pth"]


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_real_head_files_of_the_lpips_package_load(net, tmp_path):
    """The package's own weights/v0.1/{net}.pth (legacy format, saved from CUDA) with a random backbone."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the lpips package is not installed (pip install lpips --no-deps)")
    head = Path(list(spec.submodule_search_locations)[0]) / "weights" / "v0.1" / f"{net}.pth"
    if not head.is_file():
        pytest.skip(f"{head} is missing")
    (tmp_path / f"{net}.pth").write_bytes(head.read_bytes())
    torch.save(make_backbone_sd(net), tmp_path / BACKBONE_FILE[net])
    model = load_lpips(net, tmp_path)
    assert [h.weight.shape[1] for h in model.heads] == list(CHANNELS[net])
    assert all(float(h.weight.min()) >= 0 for h in model.heads)  # the trained heads are clamped to >= 0
