"""Trainer: a tiny PSNR run lowers the loss, resume reproduces the uninterrupted run exactly, guards work."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import make_trainer, read_training_state
from gensr.data.datasets import SRTrainDataset
from gensr.engine.config import load_run_config
from gensr.errors import GensrError, NonFiniteLossError
from image_helpers import write_smooth_images


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Six smooth random 48x40 images (structure a tiny net can learn)."""
    return write_smooth_images(tmp_path_factory.mktemp("hr"), seed=1)


def write_config(tmp_path: Path, hr: Path, **train) -> Path:
    cfg = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "task": {
            "kind": "psnr",
            "scale": 4,
            "model": {"arch": "rrdbnet", "config": {"nf": 8, "nb": 1, "gc": 4}},
            "data": {"train": {"hr_dirs": [str(hr)], "patch_size": 32, "batch_size": 4, "num_workers": 0}},
        },
        "optim": {"lr": 2e-3},
        "schedule": {"kind": "multistep", "milestones": [4]},
        "train": {"total_iters": 8, "checkpoint_every": 4, "log_every": 1, "threads": 1, **train},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train"]


def test_resume_reproduces_uninterrupted_run(tmp_path, image_folder):
    full = load_run_config(write_config(tmp_path / "a", image_folder))
    make_trainer(full).fit()
    reference = losses(full.run_dir)
    assert len(reference) == 8

    part = load_run_config(write_config(tmp_path / "b", image_folder), ["train.total_iters=4"])
    make_trainer(part).fit()
    rest = load_run_config(write_config(tmp_path / "b", image_folder))
    make_trainer(rest, resume="auto").fit()
    resumed = losses(rest.run_dir)
    assert resumed == reference  # bit-identical on CPU
    a = read_training_state(full.run_dir / "checkpoints" / "iter_0000008.safetensors")
    b = read_training_state(rest.run_dir / "checkpoints" / "iter_0000008.safetensors")
    for k, v in a["task"]["networks"]["g"].items():
        assert torch.equal(v, b["task"]["networks"]["g"][k]), k


def test_tiny_run_lowers_loss_and_exports(tmp_path, image_folder):
    cfg = load_run_config(
        write_config(tmp_path, image_folder),
        ["train.total_iters=60", "train.checkpoint_every=60", "optim.lr=3e-3"],
    )
    trainer = make_trainer(cfg)
    initial = copy.deepcopy(trainer.task.inference_network()).eval()
    exported = trainer.fit()
    seen = losses(cfg.run_dir)
    assert np.mean(seen[-10:]) < 0.75 * np.mean(seen[:5])
    from gensr.checkpoints.gensr_format import read_checkpoint
    from gensr.checkpoints.loader import load_model

    ck = read_checkpoint(exported)
    assert ck.arch == "rrdbnet" and ck.config["nf"] == 8 and ck.meta["iteration"] == 60
    # outputs improve: the trained net is closer to the HR than the initial one on a training image
    item = SRTrainDataset([image_folder], 4, 32, seed=123)[0]
    trained = load_model(exported)
    with torch.no_grad():
        err_before = (initial(item["lr"][None]) - item["hr"]).abs().mean()
        err_after = (trained(item["lr"][None]) - item["hr"]).abs().mean()
    assert err_after < 0.7 * err_before


def test_nonfinite_losses_skip_then_abort(tmp_path, image_folder, monkeypatch):
    cfg = load_run_config(write_config(tmp_path, image_folder), ["train.max_nonfinite=3"])
    trainer = make_trainer(cfg)
    before = {k: v.clone() for k, v in trainer.task.inference_network().state_dict().items()}
    monkeypatch.setattr(trainer.task, "loss_fn", lambda sr, hr: (sr * math.nan).mean())
    with pytest.raises(NonFiniteLossError, match="Last good checkpoint"):
        trainer.fit()
    assert trainer.iteration == 3
    after = trainer.task.inference_network().state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # skipped steps change nothing
    log = (cfg.run_dir / "log.jsonl").read_text()
    assert "non-finite loss, step skipped" in log


def test_config_errors(tmp_path, image_folder):
    path = write_config(tmp_path, image_folder)
    with pytest.raises(GensrError, match="unknown key"):
        load_run_config(path, ["train.bogus=1"])
    with pytest.raises(GensrError, match="unknown key"):
        make_trainer(load_run_config(path, ["task.model.config.bogus=1"]))
    with pytest.raises(GensrError, match="not found"):
        load_run_config(tmp_path / "missing.yaml")
    cfg = load_run_config(path, ["task.bogus=1"])
    with pytest.raises(GensrError, match="unknown key"):
        make_trainer(cfg)


def test_cli_yaml_with_unknown_key_exits_2(tmp_path, image_folder):
    path = write_config(tmp_path, image_folder)
    tree = yaml.safe_load(path.read_text())
    tree["optim"]["momentum"] = 0.9
    path.write_text(yaml.safe_dump(tree))
    r = subprocess.run([sys.executable, "-m", "gensr", "train", str(path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "momentum" in r.stderr and str(path) in r.stderr
    assert not (tmp_path / "run").exists()


def test_starting_the_data_loader_does_not_touch_the_global_rng(tmp_path, image_folder):
    trainer = make_trainer(load_run_config(write_config(tmp_path, image_folder)))
    state = torch.get_rng_state()
    next(trainer.task.train_data(0, 0, 0, 1))
    assert torch.equal(state, torch.get_rng_state())
