"""`gensr compare` end to end on tiny random models: files, schema, numbers, crops, resume, bad input.

Tiny RRDBNets (nf 8) stand in for the PSNR model and the GAN, a tiny SRFlow for the flow; three small HR images
(one gray). Most runs call :func:`gensr.cli.main` in-process; one goes through ``python -m gensr``.
"""

from __future__ import annotations

import json
import re
import shutil
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
from gensr.imresize import imresize, modcrop
from gensr.io import pixels_to_tensor, read_array, tensor_to_pixels, write_image
from gensr.metrics.fidelity import psnr
from gensr.models.rrdbnet import RRDBNet, RRDBNetConfig

REPORTS = ("report.json", "report.md", "report.html")


def _image(h: int, w: int, seed: int, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return imresize(rng.integers(0, 256, (h // 8, w // 8, c), dtype=np.uint8), size=(h, w))


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """psnr/gan.safetensors (tiny RRDBNets), flow.safetensors (tiny SRFlow), data/HR/{a,b,g}.png (g gray)."""
    d = tmp_path_factory.mktemp("compare")
    flow = tiny_srflow()
    save_checkpoint(d / "flow.safetensors", flow.state_dict(), "srflow", to_dict(flow.config))
    for seed, name in enumerate(("psnr", "gan")):
        torch.manual_seed(seed)
        net = RRDBNet(RRDBNetConfig(nf=8, nb=1, gc=4))
        save_checkpoint(d / f"{name}.safetensors", net.state_dict(), "rrdbnet", to_dict(net.config))
    write_image(d / "data" / "HR" / "a.png", _image(100, 104, 1))
    write_image(d / "data" / "HR" / "b.png", _image(97, 100, 2))
    write_image(d / "data" / "HR" / "g.png", _image(96, 96, 3, c=1))
    return d


def _args(d: Path, out: Path, *extra) -> list[str]:
    models = ",".join(["bicubic", *(str(d / f"{n}.safetensors") for n in ("psnr", "gan", "flow"))])
    base = ["compare", d / "data", "-s", 4, "--models", models, "--interp", "psnr,gan", "--alphas", "0,0.5,1",
            "--taus", "0,0.9", "--samples", 3, "--crops", 2, "-o", out, "-q"]  # fmt: skip
    return [str(a) for a in base + list(extra)]


@pytest.fixture(scope="module")
def reference(work) -> Path:
    out = work / "ref"
    assert main(_args(work, out)) == 0
    return out


def _doc(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def _rows(doc: dict) -> dict:
    return {r["id"]: r for r in doc["rows"]}


def test_report_files_and_schema(reference):
    from gensr.reports.plot import matplotlib_missing

    for name in REPORTS:
        assert (reference / name).is_file(), name
    assert (reference / "pd_plot.png").is_file() == (matplotlib_missing() is None)
    doc = _doc(reference)
    assert doc["format"] == "gensr-compare-1"
    assert [m["label"] for m in doc["settings"]["models"]] == ["bicubic", "psnr", "gan", "flow"]
    assert [m["kind"] for m in doc["settings"]["models"]] == ["bicubic", "sr", "sr", "flow-sr"]
    assert [im["name"] for im in doc["images"]] == ["a", "b", "g"]
    rows = _rows(doc)
    assert list(rows) == ["hr", "bicubic", "psnr", "gan", "flow@tau=0.00", "flow@tau=0.90", "psnr~gan@alpha=0.50"]
    assert doc["sweeps"]["alpha"]["points"] == [
        {"alpha": 0.0, "id": "psnr"}, {"alpha": 0.5, "id": "psnr~gan@alpha=0.50"}, {"alpha": 1.0, "id": "gan"},
    ]  # fmt: skip
    assert [p["tau"] for p in doc["sweeps"]["tau"]["flow"]] == [0.0, 0.9] and doc["sweeps"]["display_tau"] == 0.9
    for rid, row in rows.items():
        assert set(row["per_image"]) == {"a", "b", "g"}
        keys = {"niqe", "bpd"} if rid == "hr" else {"psnr", "ssim", "lr_psnr", "niqe", "bpd"}
        assert keys <= set(row["mean"]), (rid, row["mean"])
        for v in row["per_image"].values():
            assert keys <= set(v)
    hot = rows["flow@tau=0.90"]
    assert hot["samples"] == 3
    for v in hot["per_image"].values():
        assert v["num_samples"] == 3 and len(v["per_sample"]) == 3 and 0 <= v["best"]["index"] < 3
        assert v["pixel_std"] > 0 and "diversity_pixel" in v and "diversity_lpips" not in v
        assert v["best"]["psnr"] >= v["psnr"]
    assert "pixel_std" not in rows["flow@tau=0.00"]["per_image"]["a"]
    assert not doc["settings"]["lpips"]["computed"] and any("LPIPS not computed" in n for n in doc["notes"])
    crops = doc["crops"]
    assert len(crops["windows"]) == 2 and crops["columns"][-1] == "HR"
    assert crops["columns"][:3] == ["bicubic", "psnr", "gan"] and "sample std x8" in crops["columns"]
    for w in crops["windows"]:
        assert w["w"] == w["h"] == 96 and w["image"] in ("a", "b", "g")


def test_numbers_match_direct_computation(work, reference):
    from gensr.checkpoints.loader import load_model
    from gensr.inference.flow_sampling import FlowSampler
    from gensr.inference.interpolation import interpolate_models
    from gensr.inference.latent import score_image
    from gensr.inference.upscale import Upscaler
    from gensr.metrics.diversity import pixel_std

    rows = _rows(_doc(reference))
    hr = modcrop(read_array(work / "data" / "HR" / "a.png"), 4)
    lr = imresize(hr, 0.25)
    x = pixels_to_tensor(lr)
    opts = dict(crop_border=4, y_channel=True)

    out = tensor_to_pixels(Upscaler(load_model(work / "psnr.safetensors"), device="cpu", precision="fp32").run(x))
    assert rows["psnr"]["per_image"]["a"]["psnr"] == pytest.approx(psnr(out, hr, **opts), abs=1e-9)
    blend = interpolate_models(work / "psnr.safetensors", work / "gan.safetensors", 0.5)
    out = tensor_to_pixels(Upscaler(blend, device="cpu", precision="fp32").run(x))
    assert rows["psnr~gan@alpha=0.50"]["per_image"]["a"]["psnr"] == pytest.approx(psnr(out, hr, **opts), abs=1e-9)

    flow = load_model(work / "flow.safetensors")
    samples = FlowSampler(flow, device="cpu").sample(x, temperature=0.9, num_samples=3, seed=0)
    samples = [tensor_to_pixels(s) for s in samples]
    ps = [psnr(s, hr, **opts) for s in samples]
    hot = rows["flow@tau=0.90"]["per_image"]["a"]
    assert hot["psnr"] == pytest.approx(np.mean(ps), abs=1e-9) and hot["best"]["index"] == int(np.argmax(ps))
    assert hot["pixel_std"] == pytest.approx(pixel_std(samples))
    bic = tensor_to_pixels(Upscaler("bicubic", scale=4).run(x))
    bpd = score_image(pixels_to_tensor(bic), x, flow, seed=0)["bpd"]
    assert rows["bicubic"]["per_image"]["a"]["bpd"] == pytest.approx(bpd, rel=1e-6)
    # means are over the images
    assert rows["gan"]["mean"]["psnr"] == pytest.approx(np.mean([v["psnr"] for v in rows["gan"]["per_image"].values()]))


def test_html_is_self_contained(reference):
    page = (reference / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.count("<h3>") == 2  # the two crops
    assert "<link" not in page and "<script" not in page
    md = (reference / "report.md").read_text()
    assert "| setting |" in md and "flow tau 0.90" in md


def test_killed_run_leaves_no_report_and_resumes_identically(work, reference, monkeypatch, capsys):
    from gensr.reports import compare as C

    out = work / "killed"
    real = C.Comparison._compute
    calls = {"n": 0}

    def dies_on_the_sixth(self, st, im):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(self, st, im)

    monkeypatch.setattr(C.Comparison, "_compute", dies_on_the_sixth)
    assert main(_args(work, out)) == 130
    assert not any((out / n).exists() for n in (*REPORTS, "pd_plot.png"))
    assert len(list((out / ".cache").glob("*.json"))) == 5

    calls["n"] = -1000
    capsys.readouterr()
    assert main([a for a in _args(work, out) if a != "-q"]) == 0
    err = capsys.readouterr().err
    total = 3 * 7
    assert f"{total - 5} item(s) computed, 5 from the cache" in err
    assert (out / "report.json").read_text() == (reference / "report.json").read_text()
    # again, all from the cache (the report files need --overwrite now)
    assert main(_args(work, out)) == 2
    assert main([a for a in _args(work, out, "--overwrite") if a != "-q"]) == 0
    assert f"0 item(s) computed, {total} from the cache" in capsys.readouterr().err
    assert (out / "report.json").read_text() == (reference / "report.json").read_text()


def test_a_failing_flow_sample_set_is_recorded_not_fatal(work, tmp_path, monkeypatch):
    from gensr.errors import GensrError
    from gensr.inference.flow_sampling import FlowSampler

    real = FlowSampler.sample

    def fails_on_b(self, lr, temperature=None, num_samples=1, seed=None, **kw):
        if temperature and lr.shape[-1] == 25:  # image b: 100 px wide -> 25 LR px
            raise GensrError("SRFlow sample 1 is broken (test)")
        return real(self, lr, temperature=temperature, num_samples=num_samples, seed=seed, **kw)

    monkeypatch.setattr(FlowSampler, "sample", fails_on_b)
    out = tmp_path / "fail"
    args = ["compare", str(work / "data"), "-s", "4", "--models", f"bicubic,{work / 'flow.safetensors'}",
            "--taus", "0,0.9", "--samples", "2", "--crops", "2", "-o", str(out), "-q"]  # fmt: skip
    assert main(args) == 0
    doc = _doc(out)
    hot = _rows(doc)["flow@tau=0.90"]
    assert hot["per_image"]["b"] == {"failed": "SRFlow sample 1 is broken (test)"}
    assert hot["mean"]["psnr_images"] == 2
    assert hot["mean"]["psnr"] == pytest.approx(np.mean([hot["per_image"][n]["psnr"] for n in ("a", "g")]))
    assert any("failed on b" in n for n in doc["notes"])
    assert all(w["image"] != "b" for w in doc["crops"]["windows"])


def test_plot_skipped_without_matplotlib(work, reference, monkeypatch, tmp_path):
    from gensr.reports import plot

    monkeypatch.setattr(plot, "matplotlib_missing", lambda: "matplotlib is not installed (test)")
    out = tmp_path / "noplot"
    shutil.copytree(reference / ".cache", out / ".cache")
    assert main(_args(work, out)) == 0
    doc = _doc(out)
    assert doc["plot"] == {"file": None, "skipped": "matplotlib is not installed (test)"}
    assert not (out / "pd_plot.png").exists()
    assert "Skipped: matplotlib is not installed" in (out / "report.md").read_text()
    assert "Skipped: matplotlib is not installed" in (out / "report.html").read_text()


def test_plot_with_matplotlib(reference):
    pytest.importorskip("matplotlib")
    png = (reference / "pd_plot.png").read_bytes()
    assert png.startswith(b"\x89PNG") and _doc(reference)["plot"] == {"file": "pd_plot.png"}


def _bad_input(work: Path, tmp: Path, case: str) -> tuple[list[str], str]:
    d = tmp / "d"
    args = ["compare", str(work / "data"), "-s", "4", "--models", "bicubic", "-o", str(tmp / "out"), "-q"]
    if case == "missing HR":
        d.mkdir()
        args[1] = str(d)
        return args, "no HR/ folder"
    if case == "mismatched LR":
        write_image(d / "HR" / "a.png", _image(96, 96, 1))
        write_image(d / "LR" / "ax4.png", _image(24, 24, 1))
        write_image(d / "LR" / "c.png", _image(24, 24, 1))
        args[1] = str(d)
        return args, "do not match (no HR for LR c"
    if case == "generator model":
        from gensr.models.biggan import BigGANConfig, BigGANGenerator

        cfg = BigGANConfig(resolution=32, ch=4, dim_z=8, shared=False, hier=False, n_classes=2, g_attn=(), d_attn=())
        save_checkpoint(tmp / "g.safetensors", BigGANGenerator(cfg).state_dict(), "biggan_generator", to_dict(cfg))
        return args[:5] + [f"bicubic,{tmp / 'g.safetensors'}"] + args[6:], "kind generator"
    if case == "corrupt NIQE":
        (tmp / "niqe.npz").write_bytes(b"garbage")
        return args + ["--niqe-params", str(tmp / "niqe.npz")], "cannot read NIQE model"
    if case == "LPIPS layout":
        torch.save({"net.wrong.weight": torch.zeros(2)}, tmp / "lpips.pth")
        return args + ["--lpips-weights", str(tmp / "lpips.pth")], "not LPIPS v0.1"
    if case == "existing report":
        (tmp / "out").mkdir()
        (tmp / "out" / "report.md").write_text("mine")
        return args, "output exists"
    flag, value, fragment = {
        "alpha": ("--alphas", "0,1.5", "--alphas: 1.5 is outside [0, 1]"),
        "tau": ("--taus", "0,2.5", "--taus: 2.5 is outside [0, 2]"),
        "samples": ("--samples", "0", "--samples must be >= 1"),
    }[case]
    return args + [flag, value], fragment


@pytest.mark.parametrize(
    "case",
    ["missing HR", "mismatched LR", "alpha", "tau", "samples", "corrupt NIQE", "LPIPS layout", "generator model",
     "existing report"],
)  # fmt: skip
def test_bad_input_is_one_line_and_writes_nothing(work, tmp_path, capsys, case):
    args, fragment = _bad_input(work, tmp_path, case)
    capsys.readouterr()
    assert main(args) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("gensr: error: ") and fragment in err[0], err
    out = tmp_path / "out"
    assert not any((out / n).exists() for n in ("report.json", "report.html", "pd_plot.png"))
    assert not (out / ".cache").exists()


@pytest.mark.slow
def test_compare_through_the_command_line_with_an_lr_folder(work, tmp_path):
    data = tmp_path / "data"
    hr = _image(96, 100, 5)
    write_image(data / "HR" / "x.png", hr)
    write_image(data / "LR" / "xx4.png", imresize(hr, 0.25))
    out = tmp_path / "rep"
    proc = subprocess.run(
        [sys.executable, "-m", "gensr", "compare", str(data), "-s", "4", "--models",
         f"bicubic,{work / 'flow.safetensors'}", "--taus", "0,0.5", "--samples", "2", "--crops", "1", "-o", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and "Traceback" not in proc.stderr
    doc = _doc(out)
    assert doc["settings"]["lr"] == "DATA_DIR/LR" and doc["images"][0]["lr"].endswith("xx4.png")
    assert doc["sweeps"]["alpha"] is None and [r["id"] for r in doc["rows"]][-1] == "flow@tau=0.50"
    assert all((out / n).is_file() for n in REPORTS)
