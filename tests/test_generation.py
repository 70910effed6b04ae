"""Class-conditional generation: truncation (no |z| above the threshold), seeding, standing statistics, the
Python API, interpolation sheets, and ``gensr generate`` (success, one-line exit-2 refusals of bad input and of
non-generator models; ``gensr upscale`` / ``gensr sample`` refusing a BigGAN file)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from biggan_helpers import tiny_generator
from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.cli import main
from gensr.errors import GensrError
from gensr.inference.generation import (
    MAX_IMAGES,
    generate,
    interpolation_sheet,
    latents_for,
    sample_z,
    standing_stats_copy,
    truncated_normal,
)
from gensr.models.registry import arch_of, model_config_dict

REPO = Path(__file__).resolve().parent.parent


def save(model: torch.nn.Module, path: Path) -> Path:
    return save_checkpoint(path, model.state_dict(), arch_of(model), model_config_dict(model))


@pytest.fixture(scope="module")
def g_file(tmp_path_factory) -> Path:
    """A tiny random 3-class 32 px BigGAN generator as a gensr file."""
    return save(tiny_generator(3), tmp_path_factory.mktemp("g") / "g.safetensors")


@pytest.fixture(scope="module")
def d_file(tmp_path_factory) -> Path:
    from gensr.models.biggan import BigGANConfig, BigGANDiscriminator

    d = BigGANDiscriminator(BigGANConfig(resolution=32, ch=4, n_classes=3, g_attn=[], d_attn=[]))
    return save(d, tmp_path_factory.mktemp("d") / "d.safetensors")


@pytest.fixture(scope="module")
def rrdb_file(tmp_path_factory) -> Path:
    from gensr.models.registry import build_model

    return save(build_model("rrdbnet", {"nf": 4, "nb": 1, "gc": 4}), tmp_path_factory.mktemp("r") / "rrdb.safetensors")


# ---------------------------------------------------------------------------------------------- latents


@pytest.mark.parametrize("threshold", [0.05, 0.5, 1.0, 2.0])
def test_resample_truncation_leaves_no_entry_above_the_threshold(threshold):
    z = truncated_normal((4000, 16), threshold, torch.Generator().manual_seed(1))
    assert z.abs().max() <= threshold
    # a truncated normal, not a rescaled one: the spread of a N(0, 1) restricted to [-t, t]
    expected_var = 1 - 2 * threshold * math.exp(-(threshold**2) / 2) / (
        math.sqrt(2 * math.pi) * math.erf(threshold / math.sqrt(2))
    )
    assert abs(z.var().item() - expected_var) < 0.05 * expected_var + 1e-4


def test_truncation_modes():
    g = torch.Generator().manual_seed(0)
    assert sample_z(2000, 8, 0.4, "resample", g).abs().max() <= 0.4
    scaled = sample_z(2000, 8, 0.4, "scale", g)
    assert scaled.abs().max() <= 0.8 and scaled.abs().max() > 0.6  # 0.4 x truncnorm(-2, 2)
    assert sample_z(2000, 8, None, "resample", g).abs().max() > 2.5  # untruncated


def test_latents_depend_only_on_seed_and_index():
    a = latents_for([0, 1, 2], 16, 0.7, "resample", seed=5)
    b = latents_for([2, 0], 16, 0.7, "resample", seed=5)
    assert torch.equal(a[2], b[0]) and torch.equal(a[0], b[1])
    assert not torch.equal(a, latents_for([0, 1, 2], 16, 0.7, "resample", seed=6))


def test_generate_is_seeded_per_image_and_class_major(g_file):
    x, y = generate(str(g_file), [2, 0], num=3, truncation=0.8, seed=1, device="cpu")
    assert x.dtype == np.uint8 and x.shape == (6, 32, 32, 3) and y.tolist() == [2, 2, 2, 0, 0, 0]
    x2, _ = generate(str(g_file), [0], num=2, truncation=0.8, seed=1, batch_size=1, device="cpu")
    assert np.array_equal(x2, x[3:5])  # image k of a class is the same whatever num, classes or batch size
    x3, _ = generate(str(g_file), [0], num=2, truncation=0.8, seed=2, device="cpu")
    assert not np.array_equal(x3, x2)


def test_gensr_generate_api_is_lazy_and_works(g_file):
    import gensr

    x, y = gensr.generate(str(g_file), classes=[1], num=2, device="cpu")
    assert x.shape == (2, 32, 32, 3) and y.tolist() == [1, 1]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, gensr; print('torch' in sys.modules, 'generate' in dir(gensr))"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.stdout.strip() == "False True", proc.stderr  # listed, and `import gensr` stays torch-free


# ---------------------------------------------------------------------------------------------- standing stats


def test_standing_stats_replace_the_bn_statistics_on_a_copy():
    g = tiny_generator(3, seed=4).eval()
    before = copy.deepcopy(g.state_dict())
    z = sample_z(8, g.dim_z, None, "resample", torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    with torch.no_grad():
        out_before = g(z, y)
    net = standing_stats_copy(g, 3, batch_size=5, generator=torch.Generator().manual_seed(9))
    for k, v in g.state_dict().items():  # the original is untouched
        assert torch.equal(v, before[k]), k
    # the first CBN's statistics are the average of the 3 batch means of its input, linear(z chunk 0)
    gen = torch.Generator().manual_seed(9)
    means = []
    for _ in range(3):
        zz = sample_z(5, g.dim_z, None, "resample", gen)
        torch.randint(0, 3, (5,), generator=gen)
        with torch.no_grad():
            h = g.linear(zz[:, : g.config.z_chunk]).view(5, -1, 4, 4)
        means.append(h.mean(dim=(0, 2, 3)))
    assert torch.allclose(net.blocks[0][0].bn1.stored_mean, torch.stack(means).mean(0), atol=1e-6)
    assert not torch.allclose(net.blocks[0][0].bn1.stored_mean, g.blocks[0][0].bn1.stored_mean)
    with torch.no_grad():
        assert not torch.allclose(net(z, y), out_before)  # eval mode uses the new statistics
        assert torch.equal(g(z, y), out_before)
    assert not net.training and all(not m.training for m in net.modules())


# ---------------------------------------------------------------------------------------------- sheets


def test_interpolation_sheets(g_file):
    frames = interpolation_sheet(str(g_file), "z", [0, 2], steps=4, truncation=1.0, seed=3, device="cpu")
    assert frames.shape == (2, 4, 32, 32, 3)
    x, _ = generate(str(g_file), [0, 2], num=2, truncation=1.0, seed=3, device="cpu")
    assert np.array_equal(frames[0, 0], x[0]) and np.array_equal(frames[0, -1], x[1])  # ends are images 0 and 1
    assert np.array_equal(frames[1, 0], x[2])
    frames = interpolation_sheet(str(g_file), "class", [0, 1], steps=3, rows=2, seed=3, device="cpu")
    x, _ = generate(str(g_file), [0, 1], num=2, seed=3, device="cpu")
    assert frames.shape == (2, 3, 32, 32, 3)
    assert np.array_equal(frames[1, 0], x[1]) and np.array_equal(frames[1, -1], x[3])  # class 0 -> class 1
    with pytest.raises(GensrError, match="exactly two classes"):
        interpolation_sheet(str(g_file), "class", [0, 1, 2], device="cpu")


def test_api_refuses_bad_arguments(g_file, rrdb_file):
    for kwargs, message in [
        ({"classes": [3]}, "not a class of this model"),
        ({"truncation": 0.0}, "truncation must be"),
        ({"truncation": float("nan")}, "truncation must be"),
        ({"num": 0}, "num must be a positive integer"),
        ({"num": MAX_IMAGES}, "over the limit"),
        ({"truncation_mode": "clip"}, "truncation mode"),
    ]:
        with pytest.raises(GensrError, match=message):
            generate(str(g_file), **{"classes": [0, 1], **kwargs}, device="cpu")
    with pytest.raises(GensrError, match="kind sr"):
        generate(str(rrdb_file), device="cpu")


# ---------------------------------------------------------------------------------------------- the CLI


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True, cwd=REPO,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def test_cli_writes_images_grid_and_npz(tmp_path, g_file):
    out, npz = tmp_path / "out", tmp_path / "all.npz"
    proc = cli("generate", "--model", g_file, "--classes", "0,2", "--num", "3", "--truncation", "0.5",
               "--seed", "4", "-o", out, "--npz", npz, "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([f"{c}_{k}_s4.png" for c in (0, 2) for k in range(3)] + ["grid_s4.png"])
    with np.load(npz, allow_pickle=False) as z:
        x, y = z["x"], z["y"]
    ref, labels = generate(str(g_file), [0, 2], num=3, truncation=0.5, seed=4, device="cpu")
    assert np.array_equal(x, ref) and y.dtype == np.int64 and y.tolist() == labels.tolist()
    from gensr.io import read_array

    assert np.array_equal(read_array(out / "2_1_s4.png"), ref[4])


def test_cli_refuses_existing_outputs_before_writing_anything(tmp_path, g_file, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "0_1_s0.png").write_bytes(b"mine")
    assert main(["generate", "--model", str(g_file), "--classes", "0", "--num", "2", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "output exists" in err
    assert sorted(p.name for p in out.iterdir()) == ["0_1_s0.png"] and (out / "0_1_s0.png").read_bytes() == b"mine"
    assert main(["generate", "--model", str(g_file), "--classes", "0", "--num", "2", "-o", str(out), "-q",
                 "--overwrite"]) == 0  # fmt: skip
    assert len(list(out.iterdir())) == 3


def test_cli_refuses_an_unknown_class_in_one_line(tmp_path, g_file):
    proc = cli("generate", "--model", g_file, "--classes", "0,7", "-o", tmp_path / "o")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "7 is not a class" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_refuses_non_generators_by_kind(tmp_path, d_file, capsys):
    proc = cli("generate", "--model", "default", "--classes", "0", "-o", tmp_path / "o")  # the shipped RRDB
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "kind sr" in proc.stderr and "gensr upscale" in proc.stderr
    assert main(["generate", "--model", str(d_file), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "kind discriminator" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--truncation", "0"], "truncation must be"),
        (["--truncation", "-1"], "truncation must be"),
        (["--truncation", "2.5"], "truncation must be"),
        (["--truncation", "nan"], "truncation must be"),
        (["--num", "0"], "--num must be"),
        (["--num", "-3"], "--num must be"),
        (["--num", "1000000"], "--num must be"),
        (["--num", "30000"], "over the limit"),
        (["--classes", "0,x"], "comma-separated class indices"),
        (["--classes", "-1"], "-1 is not a class"),
        (["--classes", "0,0"], "listed twice"),
        (["--interpolate", "class", "--classes", "0"], "exactly two --classes"),
        (["--npz", "out.txt"], "ending in .npz"),
        (["--seed", "-1"], "--seed must be"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tmp_path, g_file, capsys, args, message):
    out = tmp_path / "o"
    code = main(["generate", "--model", str(g_file), "-o", str(out), "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_cli_without_a_model_names_the_missing_shipped_generator(tmp_path, capsys, monkeypatch):
    import gensr.checkpoints.shipped as shipped

    monkeypatch.setattr(shipped, "shipped_dir", lambda: tmp_path / "no_models")  # an installation without it
    assert main(["generate", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "biggan_cifar" in err and "not installed" in err


def test_cli_interpolation_sheet(tmp_path, g_file):
    assert main(["generate", "--model", str(g_file), "--interpolate", "z", "--classes", "1,2", "--steps", "5",
                 "-o", str(tmp_path), "--device", "cpu", "-q"]) == 0  # fmt: skip
    from gensr.io import read_array

    sheet = read_array(tmp_path / "interp_z_s0.png")
    assert sheet.shape == (2 * 34 - 2, 5 * 34 - 2, 3)


@pytest.mark.slow
def test_upscale_and_sample_refuse_a_biggan_file(tmp_path, g_file):
    from gensr.io import write_image

    lr = write_image(tmp_path / "lr.png", np.zeros((8, 8, 3), np.uint8))
    up = cli("upscale", lr, "--model", g_file, "-o", tmp_path / "sr.png")
    assert up.returncode == 2 and up.stderr.count("\n") == 1, up.stderr
    assert "BigGANGenerator (kind generator), not a super-resolution network" in up.stderr
    sample = cli("sample", lr, "--model", g_file, "-o", tmp_path / "s")
    assert sample.returncode == 2 and sample.stderr.count("\n") == 1, sample.stderr
    assert "not an SRFlow model" in sample.stderr and "gensr generate" in sample.stderr
    assert not (tmp_path / "sr.png").exists() and not (tmp_path / "s").exists()


def test_biggan_deep_takes_scale_truncation_and_its_own_bn_statistics():
    from gensr.models.biggan_deep import BigGANDeepConfig, BigGANDeepGenerator

    torch.manual_seed(0)
    deep = BigGANDeepGenerator(BigGANDeepConfig(ch=8, z_dim=8, class_embed_dim=8, n_classes=3)).eval()
    x, y = generate(deep, [2], num=1, truncation=0.4, truncation_mode="scale", seed=1)
    z = latents_for([0], 8, 0.4, "scale", seed=1)
    assert z.abs().max() <= 0.8
    with torch.no_grad():
        ref = deep(z, torch.tensor([2]), 0.4)  # the model's truncation argument selects its BN statistics
    assert x.shape == (1, 128, 128, 3) and np.array_equal(x[0], ((ref[0].permute(1, 2, 0) + 1) * 127.5).round()
                                                         .clamp(0, 255).to(torch.uint8).numpy())  # fmt: skip
    for kwargs, message in [
        ({"truncation": 0.4}, "truncation mode 'scale'"),
        ({"truncation": 1.5, "truncation_mode": "scale"}, r"in \(0, 1\]"),
        ({"truncation_mode": "scale", "standing_stats": 2}, "standing statistics do not apply"),
    ]:
        with pytest.raises(GensrError, match=message):
            generate(deep, [0], **kwargs)
