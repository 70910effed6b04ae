"""Network interpolation: the state-dict blend, models from any layout, and `gensr interpolate`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gensr.checkpoints.gensr_format import read_checkpoint, save_checkpoint
from gensr.checkpoints.loader import load_model
from gensr.cli import main
from gensr.errors import GensrError
from gensr.inference.interpolation import interpolate_models, interpolate_state_dicts
from gensr.models import registry
from gensr.models.registry import build_model, model_config_dict
from gensr.models.rrdbnet import RRDBNet, RRDBNetConfig

REPO = Path(__file__).resolve().parent.parent
SMALL = {"nf": 16, "nb": 2, "gc": 8}


def small_model(seed: int, **over) -> RRDBNet:
    torch.manual_seed(seed)
    model = build_model("rrdbnet", {**SMALL, **over}).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def old_layout(sd: dict, nb: int = 2) -> dict:
    """BasicSR names -> the 2018 ``model.N`` names (x4), written independently of gensr.checkpoints."""
    top = {"conv_first": 0, "conv_up1": 3, "conv_up2": 6, "conv_hr": 8, "conv_last": 10}
    out = {}
    for key, v in sd.items():
        p = key.split(".")
        if p[0] == "body":
            out[f"model.1.sub.{p[1]}.RDB{p[2][3:]}.{p[3]}.0.{p[4]}"] = v
        elif p[0] == "conv_body":
            out[f"model.1.sub.{nb}.{p[1]}"] = v
        else:
            out[f"model.{top[p[0]]}.{p[1]}"] = v
    return out


@pytest.fixture
def pair(tmp_path):
    """Model A saved in the old layout (PSNR-style release), model B as BasicSR params_ema (GAN release)."""
    a, b = small_model(1), small_model(2)
    pa, pb = tmp_path / "RRDB_PSNR_x4.pth", tmp_path / "RRDB_ESRGAN_x4.pth"
    torch.save(old_layout(a.state_dict()), pa)
    torch.save({"params_ema": b.state_dict()}, pb)
    return a, b, pa, pb


def x() -> torch.Tensor:
    return torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(7))


# ------------------------------------------------------------------------------- state dicts


def test_blend_endpoints_are_exact_and_midpoint_is_the_mean():
    a, b = small_model(1).state_dict(), small_model(2).state_dict()
    for k, v in interpolate_state_dicts(a, b, 0.0).items():
        assert torch.equal(v, a[k])
    for k, v in interpolate_state_dicts(a, b, 1.0).items():
        assert torch.equal(v, b[k])
    mid = interpolate_state_dicts(a, b, 0.5)
    for k, v in mid.items():
        torch.testing.assert_close(v, (a[k] + b[k]) / 2, atol=1e-7, rtol=0)
    blend = interpolate_state_dicts(a, b, 0.8)
    torch.testing.assert_close(blend["conv_first.weight"], 0.2 * a["conv_first.weight"] + 0.8 * b["conv_first.weight"])


def test_half_tensors_are_blended_in_float32_and_cast_back():
    a = {"w": torch.tensor([1.0, 2049.0], dtype=torch.float16)}
    b = {"w": torch.tensor([3.0, 2051.0], dtype=torch.float16)}
    out = interpolate_state_dicts(a, b, 0.25)
    assert out["w"].dtype == torch.float16
    expected = (a["w"].float() * 0.75 + b["w"].float() * 0.25).half()
    assert torch.equal(out["w"], expected)


def test_non_float_tensors_must_be_equal_and_are_copied():
    a = {"w": torch.zeros(2), "steps": torch.tensor(5)}
    b = {"w": torch.ones(2), "steps": torch.tensor(5)}
    out = interpolate_state_dicts(a, b, 0.3)
    assert out["steps"].dtype == torch.int64 and int(out["steps"]) == 5
    with pytest.raises(GensrError, match="non-float tensor steps differs"):
        interpolate_state_dicts(a, {**b, "steps": torch.tensor(6)}, 0.3)


def test_key_and_shape_differences_are_refused():
    a = {"w": torch.zeros(2), "v": torch.zeros(1)}
    with pytest.raises(
        GensrError, match=r"cannot interpolate psnr\.pth and gan\.pth: different keys.*only in psnr\.pth: v"
    ):
        interpolate_state_dicts(a, {"w": torch.zeros(2)}, 0.5, names=("psnr.pth", "gan.pth"))
    with pytest.raises(GensrError, match=r"w has shape \(2,\) vs \(3,\)"):
        interpolate_state_dicts(a, {"w": torch.zeros(3), "v": torch.zeros(1)}, 0.5)


@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), float("inf")])
def test_alpha_outside_unit_interval_is_refused(alpha):
    with pytest.raises(GensrError, match=r"alpha must be in \[0, 1\]"):
        interpolate_state_dicts({"w": torch.zeros(1)}, {"w": torch.ones(1)}, alpha)


# ------------------------------------------------------------------------------- models from files


def test_interpolate_models_across_layouts(pair):
    a, b, pa, pb = pair
    with torch.no_grad():
        m0, m1 = interpolate_models(pa, pb, 0.0), interpolate_models(pa, pb, 1.0)
        assert not m0.training
        torch.testing.assert_close(m0(x()), a(x()), atol=1e-6, rtol=0)
        torch.testing.assert_close(m1(x()), b(x()), atol=1e-6, rtol=0)
        m = interpolate_models(pa, pb, 0.5)
        for k, v in m.state_dict().items():
            torch.testing.assert_close(v, (a.state_dict()[k] + b.state_dict()[k]) / 2, atol=1e-7, rtol=0)


def test_different_configs_are_refused(tmp_path, pair):
    _, _, pa, _ = pair
    other = tmp_path / "deeper.pth"
    torch.save(small_model(3, nb=3).state_dict(), other)
    with pytest.raises(
        GensrError, match=r"RRDB_PSNR_x4\.pth and .*deeper\.pth: different rrdbnet configs \(nb 2 vs 3\)"
    ):
        interpolate_models(pa, other, 0.5)


class TwinNet(RRDBNet):
    """Same tensors as RRDBNet under another architecture name."""


def test_different_architectures_are_refused(tmp_path, pair, monkeypatch):
    assert RRDBNetConfig is not None  # the registry entry below finds it in this module
    monkeypatch.setitem(registry.ARCHS, "twin", (__name__, "RRDBNetConfig", "TwinNet"))
    a, _, pa, _ = pair
    twin = save_checkpoint(tmp_path / "twin.safetensors", a.state_dict(), "twin", model_config_dict(a))
    with pytest.raises(
        GensrError, match=r"RRDB_PSNR_x4\.pth \(rrdbnet\) and .*twin\.safetensors \(twin\): different arch"
    ):
        interpolate_models(pa, twin, 0.5)


def test_alpha_is_checked_before_loading(tmp_path):
    with pytest.raises(GensrError, match="alpha"):
        interpolate_models(tmp_path / "missing_a.pth", tmp_path / "missing_b.pth", 2.0)


# ------------------------------------------------------------------------------- CLI


def gensr(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_interpolate(tmp_path, pair):
    a, b, pa, pb = pair
    sa, sb = a.state_dict(), b.state_dict()
    for alpha, expected in [(0.0, sa), (1.0, sb), (0.5, {k: (sa[k] + sb[k]) / 2 for k in sa})]:
        out = tmp_path / f"interp_{alpha}.safetensors"
        r = gensr("interpolate", pa, pb, "--alpha", alpha, "-o", out)
        assert r.returncode == 0, r.stderr
        ck = read_checkpoint(out)
        assert ck.arch == "rrdbnet" and ck.config == model_config_dict(a)
        assert ck.meta["interpolation"] == {"a": pa.name, "b": pb.name, "alpha": alpha}
        for k, v in expected.items():
            torch.testing.assert_close(ck.state_dict[k], v, atol=1e-7 if alpha == 0.5 else 0, rtol=0)
        if alpha == 0.5:
            with torch.no_grad():
                y = load_model(out)(x())
            assert y.shape == (1, 3, 32, 32)


def test_cli_interpolate_refusals(tmp_path, pair, capsys):
    _, _, pa, pb = pair
    other = tmp_path / "x8.pth"
    torch.save(small_model(3, scale=8).state_dict(), other)
    r = gensr("interpolate", pa, other, "--alpha", "0.5", "-o", tmp_path / "bad.safetensors")
    assert r.returncode == 2 and "different rrdbnet configs (scale 4 vs 8)" in r.stderr
    assert r.stderr.count("\n") == 1 and not (tmp_path / "bad.safetensors").exists()
    bad = str(tmp_path / "bad.safetensors")
    assert main(["interpolate", str(pa), str(pb), "--alpha", "1.2", "-o", bad]) == 2
    assert "alpha must be in [0, 1]" in capsys.readouterr().err
