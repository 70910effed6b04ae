"""A task defined outside gensr trains through ``gensr train`` without touching ``engine/`` (issue 9): a
two-parameter regression that pulls two batches per step, resumes exactly and exports its model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

TOY_TASK = '''
"""y = a * x + b fitted by Adam; each step pulls two batches (e.g. for two-sample estimators)."""
from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from gensr.fileutil import write_bytes_atomic
from gensr.tasks.base import Task


@dataclass
class ToyOptions:
    kind: str = "toy_task:ToyTask"
    batch: int = 8
    a: float = 3.0
    b: float = -1.0


class Line(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.zeros(()))
        self.b = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.a * x + self.b


class ToyTask(Task):
    Options = ToyOptions
    batches_per_step = 2

    def __init__(self, options, run, dist):
        super().__init__(options, run, dist)
        self.networks["g"] = Line()
        self.build_optimizer("g", self.networks["g"].parameters())

    def train_data(self, seed, start_iteration, rank, world_size):
        b = start_iteration * self.batches_per_step
        while True:
            g = torch.Generator().manual_seed(seed * 1_000_003 + b)
            x = torch.randn(self.options.batch, generator=g)
            noise = 0.01 * torch.randn(self.options.batch, generator=g)
            yield x, self.options.a * x + self.options.b + noise
            b += 1

    def train_step(self, batches):
        (x1, y1), (x2, y2) = next(batches), next(batches)
        net, opt = self.networks["g"], self.optimizers["g"]
        loss = 0.5 * ((net(x1) - y1) ** 2).mean() + 0.5 * ((net(x2) - y2) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "skipped": 0.0}

    def evaluate(self, iteration, logger, network):
        return {"a": network.a.item(), "b": network.b.item()}

    def export(self, network, path, meta):
        doc = {"a": network.a.item(), "b": network.b.item(), **meta}
        return write_bytes_atomic(path, json.dumps(doc).encode(), overwrite=True)


class TwoHalvesTask(ToyTask):
    """Two optimiser steps per iteration (like a GAN's D then G); with $TOY_SIGTERM_AT=N the process sends
    itself SIGTERM between the two halves of iteration N."""

    def train_data(self, seed, start_iteration, rank, world_size):
        self.at = start_iteration
        return super().train_data(seed, start_iteration, rank, world_size)

    def train_step(self, batches):
        import os
        import signal

        self.at += 1
        net, opt = self.networks["g"], self.optimizers["g"]
        losses = []
        for half in range(2):
            x, y = next(batches)
            loss = ((net(x) - y) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            if half == 0 and self.at == int(os.environ.get("TOY_SIGTERM_AT", "0")):
                os.kill(os.getpid(), signal.SIGTERM)
        return {"loss": sum(losses), "skipped": 0.0}
'''


def _train(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "gensr", "train", str(tmp / "toy.yaml"), *extra],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def _losses(run: Path) -> list[float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r.get("split") == "train"]


def _setup(tmp: Path, iters: int) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "toy_task.py").write_text(textwrap.dedent(TOY_TASK))
    cfg = {
        "name": "toy",
        "output_dir": str(tmp / "run"),
        "task": {"kind": "toy_task:ToyTask"},
        "optim": {"lr": 0.2},
        "schedule": {"kind": "constant"},
        "train": {"total_iters": iters, "checkpoint_every": 10, "log_every": 1, "eval_every": 40, "threads": 1},
    }
    (tmp / "toy.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "run"


def test_a_toy_task_trains_and_resumes_exactly_through_gensr_train(tmp_path):
    full = _setup(tmp_path / "full", 80)
    r = _train(tmp_path / "full")
    assert r.returncode == 0, r.stderr
    reference = _losses(full)
    assert len(reference) == 80 and sum(reference[-5:]) < 0.01 * sum(reference[:5])
    model = json.loads((full / "model.safetensors").read_text())  # the toy task exports JSON
    assert abs(model["a"] - 3.0) < 0.2 and abs(model["b"] + 1.0) < 0.2 and model["iteration"] == 80

    part = _setup(tmp_path / "part", 80)
    assert _train(tmp_path / "part", "train.total_iters=40").returncode == 0
    r = _train(tmp_path / "part", "--resume")
    assert r.returncode == 0, r.stderr
    assert _losses(part) == reference  # two batches per step, resumed at iteration 40: the same data


def test_an_unknown_task_class_is_one_line(tmp_path):
    _setup(tmp_path, 4)
    (tmp_path / "toy.yaml").write_text((tmp_path / "toy.yaml").read_text().replace("ToyTask", "NoSuchTask"))
    r = _train(tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no Task subclass named NoSuchTask" in r.stderr


def test_a_signal_inside_a_step_acts_after_the_whole_iteration(tmp_path):
    """SIGTERM between the two optimiser steps of iteration 5: the checkpoint holds iteration 5 complete, and
    the resumed run continues exactly as an uninterrupted one (no half iteration saved as a whole one)."""
    runs = {}
    for name in ("full", "cut"):
        runs[name] = _setup(tmp_path / name, 12)
        cfg = tmp_path / name / "toy.yaml"
        cfg.write_text(cfg.read_text().replace("toy_task:ToyTask", "toy_task:TwoHalvesTask"))
    assert _train(tmp_path / "full").returncode == 0
    os.environ["TOY_SIGTERM_AT"] = "5"
    try:
        r = _train(tmp_path / "cut")
    finally:
        del os.environ["TOY_SIGTERM_AT"]
    assert r.returncode == 128 + 15, r.stderr
    assert [p.name for p in (runs["cut"] / "checkpoints").glob("iter_*")] == ["iter_0000005.safetensors"]
    r = _train(tmp_path / "cut", "--resume")
    assert r.returncode == 0, r.stderr
    cut, full = (_losses_by_iteration(runs[name]) for name in ("cut", "full"))
    assert sorted(cut) == [i for i in range(1, 13) if i != 5]  # iteration 5 ended with the interrupt, unlogged
    assert cut == {i: v for i, v in full.items() if i != 5}


def _losses_by_iteration(run: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return {r["iter"]: r["loss"] for r in rows if r.get("split") == "train"}
