"""The classifier task: a tiny ResNet learns class-coloured images through ``gensr train``, resume is exact, and
config mistakes are one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import make_trainer, read_training_state
from gensr.engine.config import load_run_config
from gensr.errors import GensrError

COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], dtype=np.float64)


def coloured_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 16x16 images, class k a noisy version of colour k on a random grey background patch."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(COLOURS), size=n)
    x = COLOURS[y][:, None, None, :] + rng.normal(0, 40, size=(n, 16, 16, 3))
    x[:, :8, :8] = rng.integers(0, 256, size=(n, 1, 1, 1))  # a distracting grey corner
    return np.clip(np.round(x), 0, 255).astype(np.uint8), y.astype(np.int64)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("coloured")
    for name, n, seed in (("train", 96, 1), ("eval", 60, 2)):
        x, y = coloured_images(n, seed)
        np.savez(d / f"{name}.npz", x=x, y=y)
    return d / "train.npz", d / "eval.npz"


def write_config(tmp_path: Path, data: tuple[Path, Path], **train) -> Path:
    cfg = {
        "name": "clf",
        "output_dir": str(tmp_path / "run"),
        "task": {
            "kind": "classifier",
            "model": {"arch": "cifar_classifier", "config": {"widths": [4, 8, 8], "blocks": 1}},
            "data": {"train": str(data[0]), "eval": str(data[1]), "batch_size": 12, "eval_batch_size": 25},
        },
        "optim": {"lr": 0.05, "weight_decay": 1e-4},
        "schedule": {"kind": "multistep", "milestones": [6]},
        "train": {"total_iters": 8, "checkpoint_every": 4, "log_every": 1, "eval_every": 0, "threads": 1, **train},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def log_rows(run_dir: Path, split: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == split]


def gensr(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True)


def test_tiny_classifier_learns_colours_through_the_cli(tmp_path, data):
    path = write_config(tmp_path, data)
    r = gensr("train", path, "train.total_iters=40", "train.eval_every=40", "train.checkpoint_every=40")
    assert r.returncode == 0, r.stderr
    val = log_rows(tmp_path / "run", "val")
    assert len(val) == 1 and val[0]["accuracy"] >= 0.8, val  # chance is 1/3
    # the exported file rebuilds the network, which classifies fresh held-out images
    from gensr.checkpoints.gensr_format import read_checkpoint
    from gensr.checkpoints.loader import load_model

    ck = read_checkpoint(tmp_path / "run" / "model.safetensors")
    assert ck.arch == "cifar_classifier" and ck.config["num_classes"] == 3 and ck.config["input_size"] == 16
    assert ck.meta["class_names"] == ["0", "1", "2"] and ck.meta["iteration"] == 40
    net = load_model(tmp_path / "run" / "model.safetensors")
    x, y = coloured_images(90, seed=3)
    with torch.no_grad():
        pred = net(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy()
    assert (pred == y).mean() >= 0.8


def test_resume_reproduces_uninterrupted_run(tmp_path, data):
    full = load_run_config(write_config(tmp_path / "a", data))
    make_trainer(full).fit()
    reference = [r["loss"] for r in log_rows(full.run_dir, "train")]
    assert len(reference) == 8

    part = load_run_config(write_config(tmp_path / "b", data), ["train.total_iters=4"])
    make_trainer(part).fit()
    rest = load_run_config(write_config(tmp_path / "b", data))
    make_trainer(rest, resume="auto").fit()
    assert [r["loss"] for r in log_rows(rest.run_dir, "train")] == reference  # bit-identical on CPU
    a = read_training_state(full.run_dir / "checkpoints" / "iter_0000008.safetensors")
    b = read_training_state(rest.run_dir / "checkpoints" / "iter_0000008.safetensors")
    for k, v in a["task"]["networks"]["classifier"].items():
        assert torch.equal(v, b["task"]["networks"]["classifier"][k]), k


def test_adam_and_plain_flip_also_train(tmp_path, data):
    cfg = load_run_config(
        write_config(tmp_path, data),
        ["task.optimizer=adam", "optim.lr=1e-2", "task.data.augment=flip", "task.label_smoothing=0.1"],
    )
    trainer = make_trainer(cfg)
    assert isinstance(trainer.task.optimizers["classifier"], torch.optim.Adam)
    trainer.fit()
    assert all(np.isfinite(r["loss"]) for r in log_rows(cfg.run_dir, "train"))


@pytest.mark.parametrize(
    "override, words",
    [
        ("task.data.augment=rotate", "augment must be one of"),
        ("task.optimizer=rmsprop", "optimizer must be sgd or adam"),
        ("task.label_smoothing=1.5", "label_smoothing must be in [0, 1)"),
        ("task.data.batch_size=0", "batch sizes must be >= 1"),
        ("task.data.train=null", "task.data.train"),
        ("task.data.eval=/nonexistent/test.npz", "/nonexistent/test.npz: data not found (task.data.eval)"),
        ("task.model.config.num_classes=5", "num_classes is 5 but the training data has 3"),
        ("task.model.config.input_size=32", "input_size is 32 but the training data has 16"),
        ("task.model.arch=rrdbnet", "task.model"),
        ("task.bogus=1", "unknown key"),
    ],
)
def test_bad_config_values_are_one_line(tmp_path, data, override, words):
    cfg = load_run_config(write_config(tmp_path, data), [override])
    with pytest.raises(GensrError) as exc:
        from gensr.config import from_dict
        from gensr.tasks import get_task_class

        cls = get_task_class(cfg.task_kind)
        cls.check(from_dict(cls.Options, cfg.task, where="task"), cfg)
        make_trainer(cfg)
    assert words in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "run").exists()  # nothing written before the mistake is reported


def test_cli_bad_value_exits_2_with_one_line(tmp_path, data):
    path = write_config(tmp_path, data)
    r = gensr("train", path, "task.data.augment=rotate")
    assert r.returncode == 2
    assert (
        r.stderr.strip().count("\n") == 0 and "task.data: augment must be one of" in r.stderr and str(path) in r.stderr
    )


def test_mismatched_eval_data_is_one_line(tmp_path, data):
    x, y = coloured_images(10, seed=4)
    np.savez(tmp_path / "big.npz", x=np.repeat(np.repeat(x, 2, axis=1), 2, axis=2), y=y)
    cfg = load_run_config(write_config(tmp_path, data), [f"task.data.eval={tmp_path / 'big.npz'}"])
    with pytest.raises(GensrError, match="task.data.eval: .* has 3 classes of \\(32, 32\\)"):
        make_trainer(cfg)
