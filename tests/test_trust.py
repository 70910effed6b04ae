"""Trust at first contact (issue 8): no code execution, no destroyed files, no allocation bombs, and every bad
value is one line before any work -- through the command line, the way users meet gensr."""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.cli import main
from gensr.errors import GensrError
from gensr.models.registry import build_model, model_config_dict
from image_helpers import write_smooth_images


def run(args: list[str], capsys) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip()


def one_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("gensr: error:"), err
    for n in needles:
        assert n in err, err


def cli(*args: object, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw
    )


def png(path: Path, seed: int = 0, size: tuple[int, int] = (12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory) -> Path:
    return write_smooth_images(tmp_path_factory.mktemp("hr"), seed=2)


def train_config(tmp: Path, hr: Path, **train) -> Path:
    cfg = {
        "name": "t",
        "output_dir": str(tmp / "run"),
        "task": {
            "kind": "psnr",
            "model": {"arch": "rrdbnet", "config": {"nf": 8, "nb": 1, "gc": 4}},
            "data": {"train": {"hr_dirs": [str(hr)], "patch_size": 32, "batch_size": 2, "num_workers": 0}},
        },
        "optim": {"lr": 1e-3},
        "schedule": {"kind": "constant"},
        "train": {"total_iters": 4, "checkpoint_every": 2, "log_every": 1, "threads": 1, "eval_every": 0, **train},
    }
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "cfg.yaml"


# ------------------------------------------------------------------------------------------- 1. no code runs


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("where", ["explicit", "planted"])
def test_a_pickle_payload_never_runs(where, tmp_path, hr_folder, capsys):
    cfg = train_config(tmp_path, hr_folder)
    marker = tmp_path / "PWNED"
    if where == "explicit":
        payload = tmp_path / "evil.pt"
        args = ["train", cfg, "--resume", payload]
    else:
        payload = tmp_path / "run" / "checkpoints" / "iter_9999999.pt"
        args = ["train", cfg, "--resume"]
    payload.parent.mkdir(parents=True, exist_ok=True)
    payload.write_bytes(pickle.dumps({"iteration": 1, "task": _Payload(marker)}))
    code, err = run(args, capsys)
    one_line(code, err)
    assert "pickle" in err or "training checkpoint" in err
    assert not marker.exists()


def test_resume_from_a_model_file_is_one_line(tmp_path, hr_folder, ckpt, capsys):
    code, err = run(["train", train_config(tmp_path, hr_folder), "--resume", ckpt], capsys)
    one_line(code, err, "not a training checkpoint")


def test_training_state_holds_no_pickle(tmp_path, hr_folder, capsys):
    cfg = train_config(tmp_path, hr_folder)
    assert run(["train", cfg], capsys)[0] == 0
    states = sorted((tmp_path / "run" / "checkpoints").iterdir())
    assert states and all(p.suffix == ".safetensors" for p in states)
    from safetensors import safe_open

    with safe_open(str(states[-1]), framework="pt") as f:
        header = f.metadata()
    assert header["format"] == "gensr-training-state"
    json.loads(header["state"])  # the structure is plain JSON


# ------------------------------------------------------------------------------------------- 2. never destroy


def test_upscale_never_overwrites_another_input(tmp_path, ckpt, capsys):
    d = tmp_path / "d"
    png(d / "a.png", 1)
    victim = png(d / "a_x4.png", 2)
    before = victim.read_bytes()
    code, err = run(["upscale", d, "-o", d, "--suffix", "_x4", "--overwrite", "--model", ckpt, "-q"], capsys)
    one_line(code, err, "would replace the input")
    assert victim.read_bytes() == before


def test_interpolate_and_convert_respect_existing_files(tmp_path, ckpt, capsys):
    a = tmp_path / "a.safetensors"
    a.write_bytes(ckpt.read_bytes())
    before = a.read_bytes()
    code, err = run(["interpolate", a, ckpt, "--alpha", "0.5", "-o", a, "--overwrite"], capsys)
    one_line(code, err, "would replace the input")
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"precious")
    code, err = run(["convert", ckpt, "-o", existing], capsys)
    one_line(code, err, "output exists")
    assert a.read_bytes() == before and existing.read_bytes() == b"precious"
    assert run(["convert", ckpt, "-o", existing, "--overwrite"], capsys)[0] == 0
    assert existing.read_bytes() != b"precious"


def test_eval_json_never_replaces_a_gt_image_or_existing_file(tmp_path, capsys):
    gt = png(tmp_path / "gt" / "a.png", 1, (16, 16))
    png(tmp_path / "sr" / "a.png", 2, (16, 16))
    before = gt.read_bytes()
    code, err = run(["eval", "--sr", tmp_path / "sr", "--gt", tmp_path / "gt", "-s", "4", "--json", gt], capsys)
    one_line(code, err, "would replace the input")
    assert gt.read_bytes() == before
    report = tmp_path / "scores.json"
    report.write_text("{}")
    code, err = run(["eval", "--sr", tmp_path / "sr", "--gt", tmp_path / "gt", "-s", "4", "--json", report], capsys)
    one_line(code, err, "output exists")
    code, err = run(["eval", "--sr", tmp_path / "sr", "--gt", tmp_path / "gt", "-s", "4", "--json", tmp_path], capsys)
    one_line(code, err, "is a folder")


def test_degrade_refuses_to_replace_different_images(tmp_path, capsys):
    png(tmp_path / "hr" / "x.png", 1, (16, 16))
    out = tmp_path / "lr"
    assert run(["degrade", tmp_path / "hr", "-o", out, "-s", "2"], capsys)[0] == 0
    png(tmp_path / "hr" / "x.png", 3, (16, 16))  # a different image of the same name
    before = (out / "x.png").read_bytes()
    code, err = run(["degrade", tmp_path / "hr", "-o", out, "-s", "2"], capsys)
    one_line(code, err, "output exists")
    assert (out / "x.png").read_bytes() == before


def test_no_clobber_rename_loses_a_race_cleanly(tmp_path):
    from gensr.fileutil import write_bytes_atomic

    target = tmp_path / "out.png"
    real_link = os.link

    def link_after_someone_else_wrote(src, dst):
        Path(dst).write_bytes(b"the other run")  # another process finished between our check and rename
        return real_link(src, dst)

    try:
        os.link = link_after_someone_else_wrote
        with pytest.raises(GensrError, match="output exists"):
            write_bytes_atomic(target, b"ours", overwrite=False)
    finally:
        os.link = real_link
    assert target.read_bytes() == b"the other run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no temp file left


def test_full_disk_is_an_error_never_a_truncated_file(tmp_path, monkeypatch):
    from gensr.io import write_image

    real_write = os.write

    def short_disk(fd, data):
        if len(data) > 100:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", short_disk)
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    for name in ("x.jpg", "x.bmp", "x.png"):
        with pytest.raises(GensrError, match="No space left"):
            write_image(tmp_path / name, img)
    assert list(tmp_path.iterdir()) == []


def test_stale_temp_files_of_dead_processes_are_removed(tmp_path, ckpt, capsys):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = out / f".a.png.{int(dead.stdout)}.abcd1234.gensr-tmp"
    stale.write_bytes(b"x" * 1000)
    live = out / f".b.png.{os.getpid()}.abcd1234.gensr-tmp"  # ours: still running, must stay
    live.write_bytes(b"y")
    assert run(["upscale", png(tmp_path / "a.png"), "-o", out, "--model", ckpt, "-q"], capsys)[0] == 0
    assert not stale.exists() and live.exists() and (out / "a.png").is_file()


def test_a_run_folder_is_not_reused_without_resume_or_overwrite(tmp_path, hr_folder, capsys):
    cfg = train_config(tmp_path, hr_folder)
    assert run(["train", cfg], capsys)[0] == 0
    first = (tmp_path / "run" / "model.safetensors").read_bytes()
    code, err = run(["train", cfg], capsys)
    one_line(code, err, "--resume", "--overwrite")
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == first
    assert run(["train", cfg, "train.total_iters=2", "--overwrite"], capsys)[0] == 0
    states = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert states == ["iter_0000002.safetensors"]  # the old run's iter_4 is gone, not resumed later


def test_a_running_training_holds_its_folder(tmp_path, hr_folder, capsys):
    from gensr.engine.run_folder import RunLock

    cfg = train_config(tmp_path, hr_folder)
    lock = RunLock(tmp_path / "run")
    lock.acquire()
    try:
        code, err = run(["train", cfg, "--overwrite"], capsys)
        one_line(code, err, "another training is running")
    finally:
        lock.release()


def test_sigterm_saves_a_checkpoint_and_resume_continues(tmp_path, hr_folder):
    cfg = train_config(tmp_path, hr_folder, total_iters=100000, checkpoint_every=100000, log_every=1)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gensr", "train", str(cfg)], stderr=subprocess.PIPE, text=True, env=env
    )
    deadline = time.time() + 120
    for line in proc.stderr:
        if line.startswith("iteration 3/") or time.time() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM, rest
    assert "saving a checkpoint" in rest and "terminated (SIGTERM)" in rest
    states = sorted((tmp_path / "run" / "checkpoints").glob("iter_*.safetensors"))
    assert states, rest
    run_files = [p.name for p in (tmp_path / "run").rglob("*") if "tmp" in p.name]
    assert run_files == []
    r = cli("train", cfg, f"train.total_iters={int(states[-1].stem.split('_')[1]) + 2}", "--resume", env=env)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stderr and "applied the changed setting(s) train.total_iters" in r.stderr


# ------------------------------------------------------------------------------------------- 4. allocation bombs


def _gensr_file_with_config(path: Path, **config) -> Path:
    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    cfg = {**model_config_dict(net), **config}
    from safetensors.torch import save_file

    header = {"format": "gensr", "format_version": "1", "arch": "rrdbnet", "config": json.dumps(cfg), "meta": "{}"}
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=header)
    return path


def test_a_header_that_lies_about_the_size_allocates_nothing(tmp_path):
    bomb = _gensr_file_with_config(tmp_path / "bomb.safetensors", nf=40000)
    r = cli(
        "upscale", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--model", bomb, timeout=60,
        preexec_fn=lambda: __import__("resource").setrlimit(__import__("resource").RLIMIT_AS, (3 * 2**30,) * 2),
    )  # fmt: skip
    assert r.returncode == 2 and "nf must be an integer in [1, 1024]" in r.stderr, r.stderr
    huge = _gensr_file_with_config(tmp_path / "deep.safetensors", nb=200)
    r = cli("upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", huge, timeout=60)
    assert r.returncode == 2 and "missing key" in r.stderr, r.stderr
    assert not (tmp_path / "o.png").exists()


def test_a_stray_block_key_is_refused_before_building(tmp_path, capsys):
    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    sd = dict(net.state_dict())
    sd["body.200000.rdb1.conv1.weight"] = torch.zeros(4, 8, 3, 3)
    path = tmp_path / "stray.pth"
    torch.save(sd, path)
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--model", path], capsys)
    one_line(code, err, "not 0..")


@pytest.mark.parametrize("outscale", ["inf", "1e9", "nan", "-2"])
def test_absurd_outscale_is_one_line(outscale, tmp_path, ckpt, capsys):
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--model", ckpt,
                     "--outscale", outscale], capsys)  # fmt: skip
    one_line(code, err, "outscale")


@pytest.mark.parametrize(
    "change",
    [{"nf": "32"}, {"nf": 32.5}, {"nf": [32]}, {"arch": None}, {"format_version": "99"}],
    ids=["nf-string", "nf-float", "nf-list", "no-arch", "format-version"],
)
def test_malformed_checkpoint_headers_are_one_line(change, tmp_path, capsys):
    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    cfg = model_config_dict(net)
    header = {"format": "gensr", "format_version": "1", "arch": "rrdbnet", "meta": "{}"}
    if "nf" in change:
        cfg["nf"] = change["nf"]
    header["config"] = json.dumps(cfg)
    if "arch" in change:
        del header["arch"]
    if "format_version" in change:
        header["format_version"] = change["format_version"]
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path), metadata=header)
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--model", path], capsys)
    one_line(code, err, "m.safetensors")


def test_relabelled_dtype_and_nan_weights_are_refused(tmp_path, capsys):
    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    sd["conv_first.weight"] = sd["conv_first.weight"].view(torch.int32)  # same bytes, integer label
    path = tmp_path / "relabelled.pth"
    torch.save(sd, path)
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--model", path], capsys)
    one_line(code, err, "conv_first.weight")
    sd = {k: torch.full_like(v, float("nan")) for k, v in net.state_dict().items()}
    torch.save(sd, path)
    code, err = run(["upscale", tmp_path / "a.png", "-o", tmp_path / "o.png", "--model", path], capsys)
    one_line(code, err, "NaN")
    assert not (tmp_path / "o.png").exists()


# ------------------------------------------------------------------------------------------- 5. bad values


BAD_VALUES = [
    "optim.lr=abc", "optim.lr=-1e-3", "optim.lr=0", "train.total_iters=ten", "train.total_iters=0",
    "train.total_iters=2.5", "task.data.train.batch_size=0", "task.data.train.batch_size=-2",
    "task.data.train.patch_size=0", "seed=-1", "seed=abc", "optim.betas=0.9", "task.model=5",
    "task.data.train.num_workers=-1", "train.threads=-1", "train.checkpoint_every=0", "train.log_every=0",
    "ema.decay=2", "train.eval_every=-1", "task.data.val.hr_dir=/nonexistent/val",
    "task.data.train.hr_dirs=[/nonexistent/train]",
]  # fmt: skip


@pytest.mark.parametrize("override", BAD_VALUES)
def test_every_bad_value_is_one_line_before_any_work(override, tmp_path, hr_folder, capsys):
    code, err = run(["train", train_config(tmp_path, hr_folder), override], capsys)
    one_line(code, err, override.split("=")[0].split(".")[-1])
    assert not (tmp_path / "run").exists()


def test_cuda_without_cuda_is_one_line(tmp_path, hr_folder, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run(["train", train_config(tmp_path, hr_folder), "train.device=cuda"], capsys)
    one_line(code, err, "CUDA is not available")


def test_resume_with_a_changed_architecture_is_refused(tmp_path, hr_folder, capsys):
    cfg = train_config(tmp_path, hr_folder)
    assert run(["train", cfg], capsys)[0] == 0
    code, err = run(["train", cfg, "task.model.config.nf=16", "train.total_iters=6", "--resume"], capsys)
    one_line(code, err, "task.model.config.nf")


def test_evaluation_can_be_turned_off_and_data_is_checked_first(tmp_path, hr_folder, capsys):
    cfg = train_config(tmp_path, hr_folder, total_iters=2, eval_every=1)
    assert run(["train", cfg, "task.data.val=null"], capsys)[0] == 0  # documented: no evaluation data


def test_self_referencing_symlink_as_output(tmp_path, ckpt, capsys):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", loop, "--model", ckpt, "--overwrite"], capsys)
    one_line(code, err, "loop.png")


def test_info_on_an_image_and_on_a_training_checkpoint(tmp_path, hr_folder, capsys):
    code, err = run(["info", png(tmp_path / "a.png")], capsys)
    one_line(code, err, "not a checkpoint")
    cfg = train_config(tmp_path / "t", hr_folder)
    assert run(["train", cfg], capsys)[0] == 0
    state = next((tmp_path / "t" / "run" / "checkpoints").glob("iter_*.safetensors"))
    code, err = run(["info", state], capsys)
    one_line(code, err, "training checkpoint", "models/latest.safetensors")


# ------------------------------------------------------------------------------------------- 3. never broken


def test_non_finite_pixels_are_never_written(tmp_path):
    from gensr.io import write_image

    img = torch.rand(1, 3, 8, 8)
    img[0, 1, 2, 3] = float("nan")
    with pytest.raises(GensrError, match="1 NaN/inf values; not written"):
        write_image(tmp_path / "x.png", img)
    arr = np.zeros((8, 8, 3), np.float32)
    arr[0, 0, 0] = np.inf
    with pytest.raises(GensrError, match="x.png: the image holds 1 NaN/inf"):
        write_image(tmp_path / "x.png", arr)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_outputs_nan_in_fp32_is_an_error(tmp_path, capsys):
    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    with torch.no_grad():
        net.conv_last.bias.fill_(1e38)
        net.conv_last.weight.fill_(1e38)  # finite weights, non-finite output
    path = tmp_path / "overflow.safetensors"
    save_checkpoint(path, net.state_dict(), "rrdbnet", model_config_dict(net))
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", tmp_path / "o.png", "--model", path], capsys)
    one_line(code, err, "NaN/inf output values")
    assert not (tmp_path / "o.png").exists()


def _npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """An ``.npz`` whose ``z.npy`` header declares a float32 array of ``shape`` but holds only a few bytes."""
    import io
    import zipfile

    from numpy.lib import format as npy_format

    buf = io.BytesIO()
    npy_format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("z.npy", buf.getvalue() + b"\0" * 64)
    return path


def test_decode_refuses_a_zip_bomb_before_allocating(tmp_path, capsys):
    bomb = _npz_declaring(tmp_path / "bomb.npz", (1, 3, 40000, 20000))  # 9.6 GB declared in a tiny file
    assert bomb.stat().st_size < 4096
    out = tmp_path / "out.png"
    code, err = run(["decode", bomb, "-o", out], capsys)
    one_line(code, err, "bomb.npz", "MiB", "zip bomb")
    assert not out.exists()


def test_read_npz_bound_and_object_arrays(tmp_path):
    from gensr.io.npz import declared_npz_arrays, read_npz

    ok = tmp_path / "ok.npz"
    np.savez(ok, a=np.zeros((4, 5), np.float32), b=np.arange(3))
    assert {k: v[0] for k, v in declared_npz_arrays(ok).items()} == {"a": (4, 5), "b": (3,)}
    assert read_npz(ok, 80 + 24)["a"].shape == (4, 5)
    with pytest.raises(GensrError, match="over the bound"):
        read_npz(ok, 80 + 23)
    objs = tmp_path / "objs.npz"
    np.savez(objs, a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(GensrError, match="Python objects"):
        read_npz(objs, 10**6)
    with pytest.raises(GensrError, match="not a readable"):
        read_npz(_garbage(tmp_path / "g.npz"), 10**6)


def _garbage(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


# ------------------------------------------------------------------ what official weights cannot tell (section 7)


@pytest.fixture(scope="module")
def srflow_other_taps(tmp_path_factory) -> tuple[Path, Path, object]:
    """An official-layout SRFlow .pth that taps RRDB blocks [0, 2, 4, 6] of 8 (not a released layout: the
    detector assumes [1, 3, 5, 7]), and its official training YAML."""
    from flow_helpers import perturbed
    from gensr.models.srflow import SRFlowConfig, SRFlowNet

    torch.manual_seed(3)
    net = perturbed(SRFlowNet(SRFlowConfig(nb=8, nf=8, gc=4, K=1, hidden=8, rrdb_blocks=[0, 2, 4, 6])))
    d = tmp_path_factory.mktemp("taps")
    pth = d / "SRFlow_custom.pth"
    torch.save(net.state_dict(), pth)
    yml = d / "SRFlow_custom.yml"
    yml.write_text(
        yaml.safe_dump(
            {"scale": 4, "network_G": {"nf": 8, "nb": 8, "flow": {"K": 1, "stackRRDB": {"blocks": [0, 2, 4, 6]}}}}
        )
    )
    return pth, yml, net


def test_official_taps_come_from_the_training_yaml(srflow_other_taps, tmp_path, capsys):
    from gensr.checkpoints.loader import load_model

    pth, yml, net = srflow_other_taps
    lr, hr = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        want = net.encode(hr, lr, add_noise=False)[1]
        assumed = load_model(pth).encode(hr, lr, add_noise=False)[1]
        given = load_model(pth, config=yml).encode(hr, lr, add_noise=False)[1]
    assert torch.allclose(given, want) and not torch.allclose(assumed, want)  # the assumption is a different model
    assert main(["info", str(pth)]) == 0
    assert "assumed:" in capsys.readouterr().out  # without the YAML, info says what it assumed
    assert main(["info", str(pth), "--model-config", str(yml), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["config"]["rrdb_blocks"] == [0, 2, 4, 6] and "assumed" not in doc
    out = tmp_path / "custom.safetensors"
    assert main(["convert", str(pth), "--model-config", str(yml), "-o", str(out)]) == 0
    with torch.no_grad():
        assert torch.allclose(load_model(out).encode(hr, lr, add_noise=False)[1], want)
    lr_png = png(tmp_path / "lr.png", size=(6, 5))
    for cmd in (["sample", lr_png, "-n", "1", "--seed", "0", "-o", tmp_path / "s"],
                ["encode", png(tmp_path / "hr.png", size=(24, 20)), "-o", tmp_path / "z.npz"]):  # fmt: skip
        assert main([str(a) for a in [*cmd, "--model", pth, "--model-config", yml]]) == 0, cmd


def test_a_model_config_that_contradicts_the_weights_is_one_line(srflow_other_taps, tmp_path, capsys):
    pth, _, _ = srflow_other_taps
    wrong = tmp_path / "wrong.yml"
    wrong.write_text(yaml.safe_dump({"network_G": {"nf": 64, "flow": {"stackRRDB": {"blocks": [0, 2, 4, 6]}}}}))
    lr_png = png(tmp_path / "lr.png")
    for cmd in (["info", pth], ["sample", lr_png, "--model", pth, "-o", tmp_path / "s"]):
        code, err = run([*cmd, "--model-config", wrong], capsys)
        one_line(code, err, "nf=64", "nf=8")
    assert not (tmp_path / "s").exists()
    code, err = run(["upscale", png(tmp_path / "a.png"), "-o", tmp_path / "a4.png", "--model-config", wrong], capsys)
    one_line(code, err, "gensr checkpoint holds its whole config")


def test_overrides_may_follow_resume(tmp_path, hr_folder, capsys):
    """`gensr train CONFIG --resume key=value` is `gensr train CONFIG key=value --resume` (the README's order);
    an unknown option after them is still refused."""
    cfg = train_config(tmp_path, hr_folder, total_iters=2)
    assert main(["train", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["train", str(cfg), "--resume", "train.total_iters=4"]) == 0
    err = capsys.readouterr().err
    assert "resumed from" in err and "train.total_iters" in err
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())[-1] == "iter_0000004.safetensors"
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg), "--resume", "train.total_iters=6", "--no-such-flag"])
    assert exc.value.code == 2 and "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
