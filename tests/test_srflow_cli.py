"""The SRFlow commands: gensr sample / encode / decode / score / manipulate, with a tiny random SRFlow.

The main paths run through ``python -m gensr`` in a subprocess; the many option and error cases call
:func:`gensr.cli.main` in-process (same parser and error handling, without a Python start-up each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from flow_helpers import tiny_srflow
from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.cli import main
from gensr.config import to_dict
from gensr.io import read_array, write_image
from gensr.metrics.fidelity import lr_psnr


def gensr(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gensr", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with tiny.safetensors (random SRFlow), lr/{babyx4,bird}.png and hr/baby.png."""
    d = tmp_path_factory.mktemp("srflow_cli")
    model = tiny_srflow()
    save_checkpoint(d / "tiny.safetensors", model.state_dict(), "srflow", to_dict(model.config))
    g = torch.Generator().manual_seed(1)
    write_image(d / "lr" / "babyx4.png", torch.rand(1, 3, 13, 17, generator=g))
    write_image(d / "lr" / "bird.png", torch.rand(1, 3, 12, 10, generator=g))
    hr = torch.nn.functional.interpolate(torch.rand(1, 3, 13, 17, generator=g), scale_factor=4, mode="bilinear")
    write_image(d / "hr" / "baby.png", hr.clamp(0, 1))
    return d


def run_main(*args, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def ok(capsys, *args) -> str:
    """Run ``gensr ARGS`` in-process, assert success, return stdout."""
    code, out, err = run_main(*args, capsys=capsys)
    assert code == 0, err
    return out


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("gensr: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------------------------ sample


def test_sample_names_seeds_and_temperature_zero(work, capsys):
    res = gensr("sample", "lr", "-m", "tiny.safetensors", "-n", "3", "--seed", "1", "-o", "s1", cwd=work)
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in (work / "s1").iterdir())
    assert names == [f"{stem}_t0.90_seed1_s{i:03d}.png" for stem in ("babyx4", "bird") for i in range(3)]
    a = [read_array(work / "s1" / n) for n in names[:3]]
    assert a[0].shape == (52, 68, 3) and not np.array_equal(a[0], a[1])

    # same seed (other batch size) -> same samples; another seed -> other samples
    args = ("-m", work / "tiny.safetensors", "-n", "3", "-q")
    lr1 = work / "lr" / "babyx4.png"
    ok(capsys, "sample", lr1, *args, "--seed", "1", "--batch-size", "1", "-o", work / "s2")
    for n in names[:3]:
        assert np.abs(read_array(work / "s2" / n).astype(int) - read_array(work / "s1" / n).astype(int)).max() <= 1
    ok(capsys, "sample", lr1, *args, "--seed", "2", "-o", work / "s3")
    assert not np.array_equal(read_array(work / "s3" / names[0].replace("seed1", "seed2")), a[0])

    # temperature 0: identical samples, named t0.00; a tiled run too
    ok(
        capsys,
        "sample",
        work / "lr" / "bird.png",
        *args,
        "-t",
        "0",
        "--tile",
        "6",
        "--tile-overlap",
        "2",
        "-o",
        work / "s4",
    )
    t0 = [read_array(p) for p in sorted((work / "s4").glob("bird_t0.00_seed*_s*.png"))]  # a random seed
    assert len(t0) == 3
    assert np.array_equal(t0[0], t0[1]) and np.array_equal(t0[0], t0[2])


def test_sample_lr_consistency_option(work, capsys):
    """--lr-consistency K back-projects every sample: the same seed, and a much smaller LR residual."""
    lr1 = work / "lr" / "babyx4.png"
    args = ("sample", lr1, "-m", work / "tiny.safetensors", "-n", "2", "--seed", "3", "-q")
    ok(capsys, *args, "-o", work / "raw")
    ok(capsys, *args, "--lr-consistency", "5", "-o", work / "bp")
    lr = read_array(lr1)
    for i in range(2):
        name = f"babyx4_t0.90_seed3_s{i:03d}.png"
        raw, bp = read_array(work / "raw" / name), read_array(work / "bp" / name)
        assert lr_psnr(bp, lr, 4) > lr_psnr(raw, lr, 4) + 5


def test_sample_bad_inputs_exit_2_without_output(work, capsys):
    res = gensr("sample", "lr/nothere.png", "-m", "tiny.safetensors", "-o", "bad1", cwd=work)
    assert res.returncode == 2 and "nothere.png" in one_error_line(res.stderr)
    assert not (work / "bad1").exists()
    cases = [
        (["-n", "0"], "--num-samples"),
        (["-t", "-1"], "temperature"),
        (["--tile", "4", "--tile-overlap", "4"], "overlap"),
        (["--batch-size", "0"], "batch size"),
        (["--lr-consistency", "-2"], "--lr-consistency"),
    ]
    for extra, word in cases:
        code, _, err = run_main(
            "sample", work / "lr", "-m", work / "tiny.safetensors", *extra, "-o", work / "bad2", capsys=capsys
        )
        assert code == 2 and word in one_error_line(err)
    code, _, err = run_main(
        "sample", work / "lr", "-m", work / "nothere.safetensors", "-o", work / "bad2", capsys=capsys
    )
    assert code == 2 and "nothere.safetensors" in one_error_line(err)
    assert not (work / "bad2").exists()
    # a corrupt second input stops the run before the first one is sampled
    write_image(work / "lr2" / "aa.png", torch.rand(1, 3, 8, 8))
    (work / "lr2" / "zz.png").write_bytes(b"not a png")
    code, _, err = run_main("sample", work / "lr2", "-m", work / "tiny.safetensors", "-o", work / "bad2", capsys=capsys)
    assert code == 2 and "zz.png" in one_error_line(err)
    assert not (work / "bad2").exists()
    # an existing output is refused before anything is written
    (work / "bad3").mkdir()
    (work / "bad3" / "bird_t0.50_seed0_s001.png").write_bytes(b"x")
    bad3 = ["sample", work / "lr", "-m", work / "tiny.safetensors", "-n", "2", "-t", "0.5", "--seed", "0"]
    code, _, err = run_main(*bad3, "-o", work / "bad3", capsys=capsys)
    assert code == 2 and "--overwrite" in one_error_line(err)
    assert sorted(p.name for p in (work / "bad3").iterdir()) == ["bird_t0.50_seed0_s001.png"]
    # absurd sample counts and seeds are one line each, before any work
    for extra, word in ((["-n", "100000"], "--num-samples"), (["--seed", "99999999999999999999999"], "seed")):
        code, _, err = run_main("sample", work / "lr", "-m", work / "tiny.safetensors", *extra, "-o", work / "bad4",
                                capsys=capsys)  # fmt: skip
        assert code == 2 and word in one_error_line(err)
    assert not (work / "bad4").exists()


# ------------------------------------------------------------------------------------------ encode/decode


def test_encode_decode_round_trip(work, capsys):
    res = gensr("encode", "hr/baby.png", "--lr", "lr/babyx4.png", "-m", "tiny.safetensors", "-o", "z.npz", cwd=work)
    assert res.returncode == 0, res.stderr
    with np.load(work / "z.npz", allow_pickle=False) as z:
        keys = set(z.files)
        assert {"eps_0", "z", "bpp", "bpd", "model", "lr_shape", "lr"} <= keys
        assert z["eps_0"].shape == (1, 6, 28, 36) and z["z"].shape == (1, 96, 7, 9)
        assert str(z["model"]) == "tiny.safetensors" and tuple(z["lr_shape"]) == (13, 17)
        assert np.isfinite(float(z["bpd"])) and float(z["bpd"]) == pytest.approx(float(z["bpp"]) / 3 + 5, rel=1e-5)
    dec_args = ["decode", work / "z.npz", "--lr", work / "lr" / "babyx4.png", "-m", work / "tiny.safetensors"]
    code, _, err = run_main(*dec_args, "-o", work / "dec.png", capsys=capsys)
    assert code == 0, err
    hr = read_array(work / "hr" / "baby.png").astype(int)
    assert np.abs(read_array(work / "dec.png").astype(int) - hr).max() <= 1

    # without --lr: the HR's own bicubic LR is stored in the file and used by decode
    m = work / "tiny.safetensors"
    assert run_main("encode", work / "hr" / "baby.png", "-m", m, "-o", work / "z2.npz", "-q", capsys=capsys)[0] == 0
    assert run_main("decode", work / "z2.npz", "-m", m, "-o", work / "dec2.png", "-q", capsys=capsys)[0] == 0
    assert np.abs(read_array(work / "dec2.png").astype(int) - hr).max() <= 1

    # a missing eps is drawn at --temperature
    with np.load(work / "z.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if k != "eps_0"}
    np.savez(work / "z_missing.npz", **arrays)
    ok(capsys, "decode", work / "z_missing.npz", "-m", m, "-t", "0.5", "--seed", "3", "-o", work / "dec3.png", "-q")
    assert read_array(work / "dec3.png").shape == hr.shape

    # bad inputs: wrong LR size, not a npz, wrong output name, existing output
    for args, word in [
        (("decode", work / "z.npz", "--lr", work / "lr" / "bird.png", "-m", m, "-o", work / "x.png"), "encoded"),
        (("decode", work / "hr" / "baby.png", "-m", m, "-o", work / "x.png"), "npz"),
        (("decode", work / "z.npz", "-m", m, "-o", work / "x.txt"), "extension"),
        (("decode", work / "z.npz", "-m", m, "-o", work / "dec.png"), "--overwrite"),
        (
            ("encode", work / "hr" / "baby.png", "--lr", work / "lr" / "bird.png", "-m", m, "-o", work / "x.npz"),
            "not x4",
        ),
    ]:
        code, _, err = run_main(*args, capsys=capsys)
        assert code == 2 and word in one_error_line(err), (args, err)
    assert not (work / "x.png").exists() and not (work / "x.npz").exists()
    # --overwrite replaces an existing output
    ok(capsys, "decode", work / "z_missing.npz", "-m", m, "-t", "0.5", "--seed", "4", "-o", work / "dec3.png", "-q",
       "--overwrite")  # fmt: skip
    assert read_array(work / "dec3.png").shape == hr.shape


# ------------------------------------------------------------------------------------------------ score


def test_score_pairs_by_stem_and_writes_json(work, capsys):
    m = work / "tiny.safetensors"
    (work / "sr").mkdir()
    write_image(work / "sr" / "baby_esrgan.png", torch.rand(1, 3, 52, 68))
    write_image(work / "sr" / "bird.png", torch.rand(1, 3, 48, 40))
    score = ["score", "-m", m, "--sr", work / "sr", "--lr", work / "lr"]
    out = ok(capsys, *score, "--json", work / "score.json", "--noise-draws", "2")
    doc = json.loads((work / "score.json").read_text())
    pairs = {Path(r["sr"]).name: Path(r["lr"]).name for r in doc["images"]}
    assert pairs == {"baby_esrgan.png": "babyx4.png", "bird.png": "bird.png"}
    assert doc["noise_draws"] == 2 and all(np.isfinite(r["bpd"]) for r in doc["images"])
    assert doc["mean"]["bpd"] == pytest.approx(np.mean([r["bpd"] for r in doc["images"]]))
    assert "mean over 2 image(s)" in out
    assert "no noise" in ok(capsys, *score, "--no-noise", "-q")

    write_image(work / "sr" / "cat.png", torch.rand(1, 3, 8, 8))
    code, _, err = run_main(*score, "--json", work / "bad.json", capsys=capsys)
    assert code == 2 and "cat.png" in one_error_line(err) and not (work / "bad.json").exists()
    code, _, err = run_main(
        "score", "-m", m, "--sr", work / "sr" / "cat.png", "--lr", work / "lr" / "bird.png", capsys=capsys
    )
    assert code == 2 and "not x4" in one_error_line(err)


# ------------------------------------------------------------------------------------------- manipulate


def test_manipulate_modes(work, capsys):
    m = work / "tiny.safetensors"
    hr, lr = work / "hr" / "baby.png", work / "lr" / "babyx4.png"
    mask = torch.zeros(1, 1, 52, 68)
    mask[..., 10:30, 20:50] = 1
    write_image(work / "mask.png", mask)
    args = ["manipulate", "transfer", "--lr", lr, "--source", hr, "--region", "0,0,16,16", "--at", "30,20"]
    out = ok(capsys, *args, "-m", m, "--seed", "4", "-o", work / "transfer.png")
    assert "LR-PSNR" in out and read_array(work / "transfer.png").shape == (52, 68, 3)
    runs = {
        "norm_global.png": ("normalize", hr, "--lr", lr, "--mode", "global"),
        "norm_local.png": ("normalize", hr, "--mode", "local", "--mask", work / "mask.png"),
        "norm_spatial.png": ("normalize", hr, "--lr", lr, "--mode", "spatial", "-t", "0.5"),
        "resample_mask.png": ("resample", hr, "--mask", work / "mask.png"),
        "resample_region.png": ("resample", hr, "--lr", lr, "--region", "20,10,30,20"),
        "restore.png": ("restore", hr, "--modes", "spatial,local"),
        "sr_transfer.png": ("transfer", "--lr", lr, "--sr", hr, "--source", hr, "--region", "8,8,12,12"),
    }
    for name, args in runs.items():
        out = ok(capsys, "manipulate", *args, "-m", m, "--seed", "1", "-o", work / name)
        assert read_array(work / name).shape == (52, 68, 3) and "LR-PSNR" in out
    # a seed repeats, tau 0 normalisation is the mean sample
    ok(
        capsys,
        "manipulate",
        "resample",
        hr,
        "--mask",
        work / "mask.png",
        "-m",
        m,
        "--seed",
        "1",
        "-o",
        work / "again.png",
    )
    assert np.array_equal(read_array(work / "again.png"), read_array(work / "resample_mask.png"))
    ok(capsys, "manipulate", "normalize", hr, "--lr", lr, "-t", "0", "-m", m, "-o", work / "n0.png")
    # an existing output: refused with one line, replaced with --overwrite
    again = ["manipulate", "normalize", hr, "--lr", lr, "-t", "0.5", "--seed", "2", "-m", m, "-o", work / "n0.png"]
    code, _, err = run_main(*again, capsys=capsys)
    assert code == 2 and "--overwrite" in one_error_line(err)
    before = read_array(work / "n0.png")
    ok(capsys, *again, "--overwrite")
    assert not np.array_equal(read_array(work / "n0.png"), before)
    ok(capsys, "manipulate", "normalize", hr, "--lr", lr, "-t", "0", "-m", m, "-o", work / "n0.png", "--overwrite")
    ok(capsys, "sample", lr, "-t", "0", "-m", m, "-o", work / "mean", "-q")
    mean = next((work / "mean").glob("babyx4_t0.00_seed*_s000.png"))
    diff = read_array(work / "n0.png").astype(int) - read_array(mean).astype(int)
    assert np.abs(diff).max() <= 1


@pytest.mark.parametrize(
    "args, word",
    [
        (("resample", "HR", "--region", "1,2,a"), "--region"),
        (("resample", "HR"), "exactly one of --mask and --region"),
        (("resample", "HR", "--region", "60,40,20,20"), "does not fit"),
        (("normalize", "HR", "--mode", "sideways"), "--mode"),
        (("restore", "HR", "--modes", "spatial,bogus"), "--modes"),
        (("transfer", "--lr", "LR", "--source", "HR", "--region", "0,0,8,8", "--at", "1"), "--at"),
        (("normalize", "nothere.png"), "nothere.png"),
        (("normalize", "HR", "--lr", "BIRD"), "not x4"),
    ],
)
def test_manipulate_bad_inputs(work, capsys, args, word):
    subs = {"HR": work / "hr" / "baby.png", "LR": work / "lr" / "babyx4.png", "BIRD": work / "lr" / "bird.png"}
    args = [subs.get(a, a) for a in args]
    out = work / "bad_manip.png"
    code, _, err = run_main("manipulate", *args, "-m", work / "tiny.safetensors", "-o", out, capsys=capsys)
    assert code == 2 and word in one_error_line(err)
    assert not out.exists()
