"""Trainer features beyond the basic loop: EMA, paired folders, DDP through torchrun (gloo on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import make_trainer
from gensr.checkpoints.gensr_format import read_checkpoint
from gensr.data.datasets import SRTrainDataset
from gensr.engine.config import load_run_config
from gensr.engine.ema import ModelEMA
from gensr.imresize import imresize


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hr")
    rng = np.random.default_rng(3)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (40, 44, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    return d


def config(tmp_path: Path, hr: Path, **overrides) -> Path:
    cfg = {
        "name": "f",
        "output_dir": str(tmp_path / "run"),
        "task": {
            "kind": "psnr",
            "model": {"arch": "rrdbnet", "config": {"nf": 8, "nb": 1, "gc": 4}},
            "data": {"train": {"hr_dirs": [str(hr)], "patch_size": 16, "batch_size": 4, "num_workers": 0}},
        },
        "optim": {"lr": 1e-3},
        "schedule": {"kind": "constant"},
        "train": {"total_iters": 3, "checkpoint_every": 3, "log_every": 1, "threads": 1, "device": "cpu"},
    }
    for k, v in overrides.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_ema_update_rule():
    net = torch.nn.Linear(2, 2)
    ema = ModelEMA(net, decay=0.9)
    before = ema.shadow.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    torch.testing.assert_close(ema.shadow.weight, 0.9 * before + 0.1 * net.weight)


def test_ema_run_exports_the_averaged_weights(tmp_path, hr_folder):
    cfg = load_run_config(config(tmp_path, hr_folder, ema={"enabled": True, "decay": 0.5}))
    trainer = make_trainer(cfg)
    exported = trainer.fit()
    ck = read_checkpoint(exported)
    assert ck.meta["ema"] is True
    live = trainer.task.inference_network().state_dict()
    shadow = trainer.ema.shadow.state_dict()
    assert all(torch.equal(ck.state_dict[k], shadow[k]) for k in shadow)
    assert any(not torch.equal(shadow[k], live[k]) for k in shadow)


def test_paired_folders_give_the_same_samples_as_on_the_fly(tmp_path, hr_folder):
    lr_dir = tmp_path / "lr"
    lr_dir.mkdir()
    for p in sorted(hr_folder.glob("*.png")):
        hr = np.array(Image.open(p))[:40, :44]
        Image.fromarray(imresize(hr, 0.25)).save(lr_dir / f"{p.stem}x4.png")
    paired = SRTrainDataset([hr_folder], 4, 16, lr_dirs=[lr_dir], seed=7)
    onthefly = SRTrainDataset([hr_folder], 4, 16, seed=7)
    for i in range(5):
        a, b = paired[i], onthefly[i]
        assert torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
    assert paired[0]["lr"].shape == (3, 4, 4) and paired[0]["hr"].shape == (3, 16, 16)


@pytest.mark.slow
def test_torchrun_ddp_matches_a_single_process_with_the_global_batch(tmp_path, hr_folder):
    single = load_run_config(config(tmp_path / "single", hr_folder))
    make_trainer(single).fit()
    ddp_cfg = config(
        tmp_path / "ddp",
        hr_folder,
        task={"data": {"train": {"hr_dirs": [str(hr_folder)], "patch_size": 16, "batch_size": 2, "num_workers": 0}}},
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "gensr",
        "train",
        str(ddp_cfg),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    a = read_checkpoint(single.run_dir / "model.safetensors").state_dict
    b = read_checkpoint(tmp_path / "ddp" / "run" / "model.safetensors").state_dict
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


def test_schedules():
    from gensr.engine.config import ScheduleSection
    from gensr.engine.schedule import lr_factor

    multi = ScheduleSection(kind="multistep", milestones=[10, 20], gamma=0.5)
    assert [lr_factor(i, multi, 30) for i in (0, 9, 10, 19, 20, 29)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    one = ScheduleSection(kind="cosine")
    assert lr_factor(0, one, 100) == 1.0 and abs(lr_factor(50, one, 100) - 0.5) < 1e-12
    restarts = ScheduleSection(kind="cosine", periods=[40, 20])
    assert all(lr_factor(i, one, 40) == lr_factor(i, restarts, 60) for i in range(40))
    assert lr_factor(40, restarts, 60) == 1.0 and abs(lr_factor(50, restarts, 60) - 0.5) < 1e-12
