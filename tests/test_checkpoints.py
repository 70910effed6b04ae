"""Strict loading of every official RRDBNet layout, wrappers, errors, and `gensr info` / `gensr convert`.

Official files are made here: a small random gensr RRDBNet is renamed to each official layout with a mapping
table written in this file (independent of gensr.checkpoints), wrapped like the real releases and saved with
torch.save; the old and intermediate layouts are also produced by re-statements of the official modules
(xinntao/ESRGAN ``architecture.py``/``block.py`` and ``RRDBNet_arch.py``), whose own forward is the reference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.checkpoints.gensr_format import read_checkpoint, save_checkpoint
from gensr.checkpoints.loader import describe, load_model, read_state_dict
from gensr.cli import main
from gensr.errors import GensrError
from gensr.models.registry import build_model, model_config_dict

REPO = Path(__file__).resolve().parent.parent
SMALL = {"nf": 16, "nb": 2, "gc": 8}


# --------------------------------------------------------------------------- official key names (test-side)


def n_up(scale: int) -> int:
    return 3 if scale == 8 else 2


def to_basicsr(sd: dict) -> dict:
    return dict(sd)


def to_intermediate(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] == "body":  # body.i.rdbK.convJ.p -> RRDB_trunk.i.RDBK.convJ.p
            k = ".".join(["RRDB_trunk", parts[1], "RDB" + parts[2][3:], *parts[3:]])
        else:
            table = {
                "conv_body": "trunk_conv",
                "conv_hr": "HRconv",
                "conv_up1": "upconv1",
                "conv_up2": "upconv2",
            }
            table["conv_up3"] = "upconv3"
            k = ".".join([table.get(parts[0], parts[0]), *parts[1:]])
        out[k] = v
    return out


def to_old(sd: dict, nb: int, scale: int) -> dict:
    """gensr names -> the 2018 sequential ``model.N`` names (k upsample blocks: 3..3k, HR 3k+2, last 3k+4)."""
    k = n_up(scale)
    top = {"conv_first": 0, "conv_hr": 3 * k + 2, "conv_last": 3 * k + 4}
    top.update({f"conv_up{m}": 3 * m for m in range(1, k + 1)})
    out = {}
    for key, v in sd.items():
        parts = key.split(".")
        if parts[0] == "body":
            i, rdb, conv, p = parts[1], parts[2][3:], parts[3], parts[4]
            out[f"model.1.sub.{i}.RDB{rdb}.{conv}.0.{p}"] = v
        elif parts[0] == "conv_body":
            out[f"model.1.sub.{nb}.{parts[1]}"] = v
        else:
            out[f"model.{top[parts[0]]}.{parts[1]}"] = v
    return out


LAYOUTS = {
    "esrgan-old": lambda sd, c: to_old(sd, c["nb"], c["scale"]),
    "esrgan-intermediate": lambda sd, c: to_intermediate(sd),
    "basicsr": lambda sd, c: to_basicsr(sd),
}


def small_model(scale: int = 4, seed: int = 1, **over) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model("rrdbnet", {**SMALL, "scale": scale, **over}).eval()
    with torch.no_grad():  # break the zero-bias init so every tensor matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def fixed_input(h: int = 8, w: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(123)
    return torch.rand(1, 3, h, w, generator=g)


def assert_same_output(a: nn.Module, b: nn.Module, x: torch.Tensor | None = None) -> None:
    x = fixed_input() if x is None else x
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape
    torch.testing.assert_close(ya, yb, atol=1e-6, rtol=0)


# ------------------------------------------------------------------------------- parameter counts


def test_default_config_has_paper_parameter_count():
    with torch.device("meta"):
        model = build_model("rrdbnet", {})
    assert sum(p.numel() for p in model.parameters()) == 16_697_987


@pytest.mark.parametrize("scale,count", [(2, 16_703_171), (1, 16_723_907)])
def test_real_esrgan_x2_x1_parameter_counts(scale, count):
    with torch.device("meta"):
        model = build_model("rrdbnet", {"scale": scale})
    assert sum(p.numel() for p in model.parameters()) == count


# ------------------------------------------------------------------------------- every layout x every scale


@pytest.mark.parametrize("scale", [4, 2, 1, 8])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_official_layouts_load_strictly(tmp_path, layout, scale):
    ref = small_model(scale)
    cfg = model_config_dict(ref)
    path = tmp_path / f"{layout}_x{scale}.pth"
    torch.save(LAYOUTS[layout](ref.state_dict(), cfg), path)
    loaded = load_model(path)
    assert not loaded.training
    assert model_config_dict(loaded) == cfg
    assert_same_output(loaded, ref, fixed_input(9, 7) if scale in (1, 2) else None)
    expected_layout = layout
    if layout == "basicsr" and scale in (1, 2):
        expected_layout = {2: "real-esrgan-x2plus", 1: "real-esrgan-x1"}[scale]
    d = describe(path)
    assert d["layout"] == expected_layout
    assert d["config"]["unshuffle"] == {1: 4, 2: 2}.get(scale, 1)


def test_old_layout_indices_follow_the_reference_table():
    x4 = to_old(small_model(4).state_dict(), 2, 4)
    x8 = to_old(small_model(8).state_dict(), 2, 8)
    assert {"model.3.weight", "model.6.weight", "model.8.weight", "model.10.weight"} <= set(x4)
    assert {"model.9.weight", "model.11.weight", "model.13.weight"} <= set(x8)
    assert "model.1.sub.2.weight" in x4 and "model.1.sub.0.RDB3.conv5.0.bias" in x4


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd, other: {"params": sd}, id="params"),
        pytest.param(lambda sd, other: {"params_ema": sd, "params": other, "iter": 5}, id="params_ema>params"),
        pytest.param(lambda sd, other: {"params-ema": sd}, id="params-ema"),
        pytest.param(lambda sd, other: {"state_dict": sd, "epoch": 3}, id="state_dict"),
        pytest.param(lambda sd, other: {"model_state_dict": sd, "optimizer": {"lr": 1.0}}, id="model_state_dict"),
        pytest.param(lambda sd, other: {"model": sd}, id="model"),
        pytest.param(lambda sd, other: {"net": sd}, id="net"),
        pytest.param(lambda sd, other: {"netG": sd}, id="netG"),
        pytest.param(lambda sd, other: {"whatever": sd}, id="single-nested"),
        pytest.param(lambda sd, other: {f"module.{k}": v for k, v in sd.items()}, id="module."),
        pytest.param(lambda sd, other: {"params": {f"module.{k}": v for k, v in sd.items()}}, id="params+module."),
        pytest.param(lambda sd, other: {f"netG.{k}": v for k, v in sd.items()}, id="netG."),
        pytest.param(lambda sd, other: {f"netG.module.{k}": v for k, v in sd.items()}, id="netG.module."),
    ],
)
@pytest.mark.parametrize("layout", ["esrgan-old", "basicsr"])
def test_wrappers_and_prefixes(tmp_path, layout, wrap):
    ref, other = small_model(4, seed=1), small_model(4, seed=2)
    cfg = model_config_dict(ref)
    path = tmp_path / "wrapped.pth"
    torch.save(wrap(LAYOUTS[layout](ref.state_dict(), cfg), LAYOUTS[layout](other.state_dict(), cfg)), path)
    assert_same_output(load_model(path), ref)


def test_params_ema_is_preferred_and_reported(tmp_path):
    ref, other = small_model(seed=1), small_model(seed=2)
    path = tmp_path / "ema.pth"
    torch.save({"params": other.state_dict(), "params_ema": ref.state_dict()}, path)
    sd, info = read_state_dict(path)
    assert info["wrappers"] == ["params_ema"]
    torch.testing.assert_close(sd["conv_first.weight"], ref.state_dict()["conv_first.weight"], atol=0, rtol=0)
    assert describe(path)["wrappers"] == ["params_ema"]


def test_non_tensor_entries_dropped_inside_wrappers_only(tmp_path):
    sd = small_model().state_dict()
    inner = tmp_path / "inner.pth"
    torch.save({"params": {**sd, "note": "trained on DIV2K"}}, inner)
    got, info = read_state_dict(inner)
    assert set(got) == set(sd) and info["dropped"] == ["note"]
    top = tmp_path / "top.pth"
    torch.save({**sd, "note": "trained on DIV2K"}, top)
    with pytest.raises(GensrError, match=r"top\.pth.*not a checkpoint.*note"):
        read_state_dict(top)


def test_plain_safetensors_with_official_keys(tmp_path):
    from safetensors.torch import save_file

    ref = small_model(2)
    path = tmp_path / "RealESRGAN_x2plus.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    assert_same_output(load_model(path), ref)
    assert describe(path)["layout"] == "real-esrgan-x2plus"


def test_half_precision_official_file_loads_as_float32(tmp_path):
    ref = small_model()
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in to_old(ref.state_dict(), 2, 4).items()}, path)
    loaded = load_model(path)
    assert next(loaded.parameters()).dtype == torch.float32
    assert describe(path)["dtype"] == "float16"
    with torch.no_grad():
        torch.testing.assert_close(loaded(fixed_input()), ref(fixed_input()), atol=2e-3, rtol=0)


# ------------------------------------------------------------------------------- re-stated official modules


def _conv(i: int, o: int) -> nn.Conv2d:
    return nn.Conv2d(i, o, 3, 1, 1)


class OldRDB(nn.Module):
    """block.py ResidualDenseBlock_5C: each conv a conv_block (Sequential(conv[, lrelu]))."""

    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        for j in range(1, 6):
            layers = [_conv(nf + (j - 1) * gc, gc if j < 5 else nf)]
            if j < 5:
                layers.append(nn.LeakyReLU(0.2, True))
            setattr(self, f"conv{j}", nn.Sequential(*layers))

    def forward(self, x):
        feats = [x]
        for j in range(1, 5):
            feats.append(getattr(self, f"conv{j}")(torch.cat(feats, 1)))
        return self.conv5(torch.cat(feats, 1)).mul(0.2) + x


class OldRRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = OldRDB(nf, gc), OldRDB(nf, gc), OldRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))).mul(0.2) + x


class ShortcutBlock(nn.Module):
    def __init__(self, sub: nn.Module) -> None:
        super().__init__()
        self.sub = sub

    def forward(self, x):
        return x + self.sub(x)


class OldArch(nn.Module):
    """architecture.py RRDBNet (upsample_mode 'upconv'): one flattened Sequential named ``model``."""

    def __init__(self, nf: int, nb: int, gc: int, upsamples: int) -> None:
        super().__init__()
        trunk = nn.Sequential(*[OldRRDB(nf, gc) for _ in range(nb)], _conv(nf, nf))
        layers: list[nn.Module] = [_conv(3, nf), ShortcutBlock(trunk)]
        for _ in range(upsamples):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(nf, nf), nn.LeakyReLU(0.2, True)]
        layers += [_conv(nf, nf), nn.LeakyReLU(0.2, True), _conv(nf, 3)]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class MidRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        for j in range(1, 6):
            setattr(self, f"conv{j}", _conv(nf + (j - 1) * gc, gc if j < 5 else nf))
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        feats = [x]
        for j in range(1, 5):
            feats.append(self.lrelu(getattr(self, f"conv{j}")(torch.cat(feats, 1))))
        return self.conv5(torch.cat(feats, 1)) * 0.2 + x


class MidRRDB(nn.Module):
    def __init__(self, nf: int, gc: int) -> None:
        super().__init__()
        self.RDB1, self.RDB2, self.RDB3 = MidRDB(nf, gc), MidRDB(nf, gc), MidRDB(nf, gc)

    def forward(self, x):
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class MidArch(nn.Module):
    """RRDBNet_arch.py RRDBNet (x4)."""

    def __init__(self, nf: int, nb: int, gc: int) -> None:
        super().__init__()
        self.conv_first = _conv(3, nf)
        self.RRDB_trunk = nn.Sequential(*[MidRRDB(nf, gc) for _ in range(nb)])
        self.trunk_conv = _conv(nf, nf)
        self.upconv1, self.upconv2, self.HRconv = _conv(nf, nf), _conv(nf, nf), _conv(nf, nf)
        self.conv_last = _conv(nf, 3)
        self.lrelu = nn.LeakyReLU(0.2, True)

    def forward(self, x):
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.RRDB_trunk(fea))
        fea = self.lrelu(self.upconv1(F.interpolate(fea, scale_factor=2, mode="nearest")))
        fea = self.lrelu(self.upconv2(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.HRconv(fea)))


def _randomised(module: nn.Module, seed: int = 5) -> nn.Module:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.05)
    return module.eval()


@pytest.mark.parametrize("upsamples,scale", [(2, 4), (3, 8)])
def test_restated_old_arch_matches(tmp_path, upsamples, scale):
    official = _randomised(OldArch(16, 3, 8, upsamples))
    path = tmp_path / "RRDB_ESRGAN.pth"
    torch.save(official.state_dict(), path)
    loaded = load_model(path)
    assert model_config_dict(loaded) == {
        "scale": scale,
        "in_ch": 3,
        "out_ch": 3,
        "nf": 16,
        "nb": 3,
        "gc": 8,
        "init": "rdb",
    }
    assert_same_output(loaded, official)


def test_restated_intermediate_arch_matches(tmp_path):
    official = _randomised(MidArch(16, 3, 8))
    path = tmp_path / "RRDB_intermediate.pth"
    torch.save({"module." + k: v for k, v in official.state_dict().items()}, path)
    assert_same_output(load_model(path), official)


@pytest.mark.parametrize("upsamples,label", [(1, "x2"), (0, "x1")])
def test_old_arch_with_fewer_upsample_blocks_is_refused(tmp_path, upsamples, label):
    path = tmp_path / "old_small_scale.pth"
    torch.save(_randomised(OldArch(16, 2, 8, upsamples)).state_dict(), path)
    with pytest.raises(GensrError, match=rf"old_small_scale\.pth: old-arch {label}.*{upsamples} upsample block.*not "):
        load_model(path)


def test_esrgan_plus_is_refused(tmp_path):
    sd = to_old(small_model().state_dict(), 2, 4)
    sd["model.1.sub.0.RDB1.conv1x1.weight"] = torch.zeros(8, 16, 1, 1)
    path = tmp_path / "esrgan_plus.pth"
    torch.save(sd, path)
    with pytest.raises(GensrError, match="ESRGAN\\+"):
        load_model(path)


# ------------------------------------------------------------------------------- strictness and errors


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_missing_key_is_listed(tmp_path, layout):
    sd = LAYOUTS[layout](small_model().state_dict(), {"nb": 2, "scale": 4})
    victim = {
        "esrgan-old": "model.1.sub.1.RDB2.conv3.0.bias",
        "esrgan-intermediate": "RRDB_trunk.1.RDB2.conv3.bias",
        "basicsr": "body.1.rdb2.conv3.bias",
    }[layout]
    del sd[victim]
    path = tmp_path / "missing.pth"
    torch.save(sd, path)
    with pytest.raises(GensrError, match=r"missing\.pth.*1 missing key\(s\): body\.1\.rdb2\.conv3\.bias") as e:
        load_model(path)
    assert "\n" not in str(e.value)


def test_unexpected_key_is_listed(tmp_path):
    sd = to_old(small_model().state_dict(), 2, 4)
    sd["model.1.sub.0.RDB1.conv6.0.weight"] = torch.zeros(1)
    sd["extra.bias"] = torch.zeros(1)
    path = tmp_path / "unexpected.pth"
    torch.save(sd, path)
    with pytest.raises(
        GensrError, match=r"2 unexpected key\(s\): model\.1\.sub\.0\.RDB1\.conv6\.0\.weight, extra\.bias"
    ):
        load_model(path)


def test_shape_mismatch_is_listed(tmp_path):
    sd = small_model().state_dict()
    sd["body.1.rdb2.conv2.weight"] = torch.zeros(8, 25, 3, 3)
    path = tmp_path / "shape.pth"
    torch.save(sd, path)
    with pytest.raises(
        GensrError, match=r"shape mismatch.*body\.1\.rdb2\.conv2\.weight \(file 8x25x3x3 vs model 8x24x3x3"
    ):
        load_model(path)


def test_many_missing_keys_are_capped(tmp_path):
    sd = {k: v for k, v in small_model().state_dict().items() if not k.startswith("body.1.")}
    sd["body.1.rdb1.conv1.weight"] = torch.zeros(8, 16, 3, 3)  # keep nb inferred as 2
    path = tmp_path / "many.pth"
    torch.save(sd, path)
    with pytest.raises(GensrError, match=r"29 missing key\(s\): .*\(19 more\)"):
        load_model(path)


def test_unknown_layout(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"encoder.0.weight": torch.zeros(3), "encoder.0.bias": torch.zeros(3)}, path)
    with pytest.raises(GensrError, match=r"other\.pth: unknown checkpoint layout.*encoder\.0\.weight.*RRDBNet"):
        load_model(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(GensrError, match=r"nope\.pth: no such checkpoint file"):
        load_model(tmp_path / "nope.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(GensrError, match=r"empty\.pth: empty file"):
        read_state_dict(empty)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(GensrError, match=r"junk\.pth: not a checkpoint") as e:
        read_state_dict(junk)
    assert "\n" not in str(e.value)
    junk_st = tmp_path / "junk.safetensors"
    junk_st.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{nope")
    with pytest.raises(GensrError, match=r"junk\.safetensors"):
        read_state_dict(junk_st)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(GensrError, match=r"tensor\.pt: not a checkpoint \(holds a Tensor"):
        read_state_dict(tensor)


def test_pickled_objects_are_not_unpickled(tmp_path):
    import argparse

    path = tmp_path / "full_pickle.pth"
    torch.save({"params": small_model().state_dict(), "opt": argparse.Namespace(lr=1)}, path)
    with pytest.raises(GensrError, match=r"full_pickle\.pth: holds pickled Python objects.*argparse\.Namespace"):
        read_state_dict(path)


# ------------------------------------------------------------------------------- gensr files


def test_gensr_file_loads_strictly(tmp_path):
    ref = small_model(8)
    path = save_checkpoint(tmp_path / "g.safetensors", ref.state_dict(), "rrdbnet", model_config_dict(ref), {"a": 1})
    assert_same_output(load_model(path), ref)
    d = describe(path)
    assert d["layout"] == "gensr" and d["meta"] == {"a": 1} and d["config"]["scale"] == 8
    bad = save_checkpoint(
        tmp_path / "bad.safetensors",
        {**ref.state_dict(), "x.weight": torch.zeros(1)},
        "rrdbnet",
        model_config_dict(ref),
    )
    with pytest.raises(GensrError, match=r"bad\.safetensors.*unexpected key\(s\): x\.weight"):
        load_model(bad)


# ------------------------------------------------------------------------------- CLI


def gensr(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True, env=env, timeout=300
    )


def test_cli_info_and_convert(tmp_path, capsys):
    ref = small_model(2)
    src = tmp_path / "RealESRGAN_x2plus.pth"
    torch.save({"params_ema": {"module." + k: v for k, v in ref.state_dict().items()}}, src)

    assert main(["info", str(src)]) == 0  # text output in-process; --json and convert below as subprocesses
    text = capsys.readouterr().out
    assert "real-esrgan-x2plus" in text and "params_ema" in text and "module." in text
    assert "nf=16 nb=2 gc=8" in text and "unshuffle=2" in text
    n_params = sum(p.numel() for p in ref.parameters())
    assert f"{n_params:,}" in text

    r = gensr("info", src, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["config"] == {
        "scale": 2,
        "in_ch": 3,
        "out_ch": 3,
        "nf": 16,
        "nb": 2,
        "gc": 8,
        "init": "rdb",
        "unshuffle": 2,
    }
    assert d["parameters"] == n_params and d["dtype"] == "float32" and d["arch"] == "rrdbnet"

    out = tmp_path / "conv" / "x2.safetensors"
    r = gensr("convert", src, "-o", out)
    assert r.returncode == 0, r.stderr
    ck = read_checkpoint(out)
    assert ck.arch == "rrdbnet" and ck.meta == {"source": src.name, "layout": "real-esrgan-x2plus"}
    assert_same_output(load_model(out), ref, fixed_input(10, 6))
    assert [p.name for p in out.parent.iterdir()] == ["x2.safetensors"]  # no temporary left behind

    half = tmp_path / "x2_fp16.safetensors"
    assert main(["convert", str(src), "-o", str(half), "--dtype", "fp16"]) == 0  # in-process: one import less
    assert read_checkpoint(half, dtype=None).state_dict["conv_first.weight"].dtype == torch.float16
    d = describe(half)
    assert d["dtype"] == "float16" and d["meta"]["layout"] == "real-esrgan-x2plus"


def test_convert_set_changes_only_settings_that_leave_the_weights_alone(tmp_path, capsys):
    """``--set`` rewrites an SRFlow guard (the weights stay bit-identical and the file says what changed);
    a field that shapes the weights, a bad value and a malformed item are one-line errors, nothing written."""
    tiny = {"nf": 8, "nb": 2, "gc": 4, "K": 2, "hidden": 8, "rrdb_blocks": [0, 1]}
    net = build_model("srflow", {**tiny, "scale": 4})
    src = save_checkpoint(tmp_path / "flow.safetensors", net.state_dict(), "srflow", model_config_dict(net))
    out = tmp_path / "flow_b2.safetensors"
    assert main(["convert", str(src), "--set", "net_input_bound=2", "--set", "heat=0.8", "-o", str(out)]) == 0
    converted = load_model(out)
    assert converted.config.net_input_bound == 2.0 and converted.config.heat == 0.8
    assert converted.config.K == 2 and converted.config.min_scale == net.config.min_scale
    got, want = converted.state_dict(), net.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    assert read_checkpoint(out).meta["set"] == {"net_input_bound": 2, "heat": 0.8}
    bad = tmp_path / "bad.safetensors"
    for item, word in (("K=4", "leaves the weights alone"), ("min_scale=2", "min_scale"), ("heat", "KEY=VALUE")):
        code = main(["convert", str(src), "--set", item, "-o", str(bad)])
        err = capsys.readouterr().err
        assert code == 2 and word in err and err.count("\n") == 1
    assert not bad.exists()


def test_cli_errors_are_one_line(tmp_path, capsys):
    r = gensr("info", tmp_path / "missing.pth")
    assert r.returncode == 2 and r.stderr.startswith("gensr: error:") and r.stderr.count("\n") == 1
    assert "missing.pth: no such checkpoint file" in r.stderr
    src = tmp_path / "m.pth"
    torch.save(small_model().state_dict(), src)
    assert main(["convert", str(src), "-o", str(tmp_path / "m.pth2")]) == 2
    assert "needs the .safetensors extension" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth"]
