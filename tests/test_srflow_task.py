"""SRFlow training task: a tiny SRFlow learns (NLL falls, samples are more LR-consistent than bicubic),
resume is exact, numerical failures are skipped and counted, the encoder freeze works, bf16 keeps fp32 sums."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import make_trainer, read_training_state
from gensr.engine.config import load_run_config
from gensr.errors import GensrError, NonFiniteLossError
from gensr.inference.flow_sampling import FlowSampler
from gensr.models.srflow import SRFlowNet
from gensr.tasks.srflow import (
    SKIP_LINALG,
    SKIP_NONFINITE_LOSS,
    SRFlowTask,
    is_linalg_failure,
)

REPO = Path(__file__).resolve().parent.parent
TINY = {"nf": 8, "nb": 2, "gc": 4, "K": 2, "hidden": 8, "rrdb_blocks": [0, 1]}


def sine_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """Three coloured plane waves of period ~10-14 px: smooth, but with LR content that bicubic blurs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size, 3))
    for _ in range(3):
        angle, mag = rng.random() * np.pi, 0.45 + 0.15 * rng.random()
        phase, colour = rng.random() * 2 * np.pi, rng.random(3) * 2 - 1
        img += colour * np.sin(mag * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)[..., None]
    return ((img / 2 + 1) * 127.5).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sines")
    rng = np.random.default_rng(1)
    for sub, n in (("hr", 8), ("held", 3)):
        (root / sub).mkdir()
        for i in range(n):
            Image.fromarray(sine_image(rng)).save(root / sub / f"img{i}.png")
    return {"hr": root / "hr", "held": root / "held"}


def write_config(tmp_path: Path, hr: Path, model: dict | None = None, options: dict | None = None, **train):
    model = {k: v for k, v in dict(model or TINY).items() if k != "scale"}
    cfg = {
        "name": "t",
        "output_dir": str(tmp_path / "run"),
        "task": {
            "kind": "srflow",
            "scale": 4,
            "model": {"arch": "srflow", "config": model},
            "data": {
                "train": {"hr_dirs": [str(hr)], "patch_size": 32, "batch_size": 4, "num_workers": 0, "augment": "hflip"}
            },
            "freeze_rrdb_fraction": 0.0,
            **(options or {}),
        },
        "optim": {"lr": 2e-3, "betas": [0.9, 0.99]},
        "schedule": {"kind": "multistep", "milestones": [10**6]},
        "train": {"total_iters": 8, "checkpoint_every": 4, "log_every": 1, "threads": 1, **train},
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def train_log(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in rows if r.get("split") == "train"]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.transpose(2, 0, 1).copy()).float()[None] / 255.0


def first_batches(trainer, n: int) -> list[dict]:
    it = trainer.task.train_data(0, 0, 0, 1)
    return [next(it) for _ in range(n)]


def rrdb_state(task: SRFlowTask) -> dict[str, torch.Tensor]:
    used = set(task.model.unused_parameter_names())
    return {n: p.detach().clone() for n, p in task.model.named_parameters() if n.startswith("RRDB.") and n not in used}


def flow_state(task: SRFlowTask) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in task.model.named_parameters() if n.startswith("flowUpsamplerNet.layers")}


def same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------- learning


def test_tiny_srflow_lowers_nll_and_samples_beat_bicubic_lr_psnr(tmp_path, images):
    from gensr.checkpoints.loader import load_model
    from gensr.imresize import imresize
    from gensr.io import tensor_to_pixels as to_uint8
    from gensr.metrics.fidelity import lr_psnr

    model = {"nf": 16, "nb": 2, "gc": 4, "K": 2, "hidden": 32, "rrdb_blocks": [0, 1]}
    cfg = load_run_config(
        write_config(tmp_path, images["hr"], model=model),
        [
            "train.total_iters=360",
            "train.checkpoint_every=360",
            "train.log_every=10",
            "task.data.train.batch_size=12",
            "optim.lr=3e-3",
            "schedule.milestones=[240,320]",
        ],
    )
    exported = make_trainer(cfg).fit()
    rows = train_log(cfg.run_dir)
    bpp = [r["bpp"] for r in rows]
    assert all(r["skipped"] == 0 for r in rows)
    assert np.mean(bpp[-5:]) < np.mean(bpp[:2]) - 4.0  # bits per pixel fall a lot (about +1 -> -7.5)
    assert all(math.isfinite(r["bpd"]) for r in rows)

    net = load_model(exported)
    assert isinstance(net, SRFlowNet) and net.config.hidden == 32
    sampler = FlowSampler(net, redraws=0, min_region_psnr=0.0)  # the raw model: no re-draws
    flow, bicubic = [], []
    for k, path in enumerate(sorted(images["held"].glob("*.png"))):
        lr8 = imresize(np.asarray(Image.open(path)), 0.25)  # MATLAB bicubic, uint8
        lr = to_tensor(lr8)
        samples = sampler.sample(lr, 0.9, num_samples=4, seed=k)
        flow.append(np.mean([lr_psnr(to_uint8(s), lr8, 4) for s in samples]))
        bicubic.append(lr_psnr(to_uint8(imresize(lr, 4.0)), lr8, 4))
    assert np.mean(flow) > np.mean(bicubic) + 0.5, (flow, bicubic)


# ------------------------------------------------------------------------------------------------- resume


def test_resume_after_interrupt_reproduces_the_uninterrupted_run(tmp_path, images, monkeypatch):
    opts = {"freeze_rrdb_fraction": 0.5}  # frozen for iterations 1-4: the resumed run crosses the unfreeze
    full = load_run_config(write_config(tmp_path / "a", images["hr"], options=opts))
    make_trainer(full).fit()
    reference = [r["loss"] for r in train_log(full.run_dir)]
    assert len(reference) == 8 and all(math.isfinite(v) for v in reference)

    part = load_run_config(write_config(tmp_path / "b", images["hr"], options=opts))
    trainer = make_trainer(part)
    real_step = trainer.task.train_step

    def interrupt_after_three(batch):
        if trainer.iteration == 3:
            raise KeyboardInterrupt
        return real_step(batch)

    monkeypatch.setattr(trainer.task, "train_step", interrupt_after_three)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()
    resumed_trainer = make_trainer(part, resume="auto")
    assert resumed_trainer.iteration == 3 and resumed_trainer.task.steps == 3
    resumed_trainer.fit()
    rows = train_log(part.run_dir)
    assert [r["loss"] for r in rows] == reference  # bit-identical on CPU
    assert [r["rrdb_frozen"] for r in rows] == [1.0] * 4 + [0.0] * 4
    a = read_training_state(full.run_dir / "checkpoints" / "iter_0000008.safetensors")
    b = read_training_state(part.run_dir / "checkpoints" / "iter_0000008.safetensors")
    assert same(a["task"]["networks"]["g"], b["task"]["networks"]["g"])


# ------------------------------------------------------------------------------------------------- guards


class _FailingBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("linalg.slogdet_backward: the matrix is singular")


def test_nonfinite_and_failed_inverse_steps_are_skipped_and_counted(tmp_path, images, monkeypatch):
    cfg = load_run_config(write_config(tmp_path, images["hr"]), ["train.max_nonfinite=3"])
    trainer = make_trainer(cfg)
    task = trainer.task
    batches = first_batches(trainer, 6)
    ok = task.train_step(iter([batches[0]]))  # also initialises the ActNorms
    assert ok["skipped"] == 0.0 and ok["skip_reason"] == 0.0 and math.isfinite(ok["loss"])

    real_forward = SRFlowNet.forward
    mode = {"kind": None}

    def patched(self, hr, lr, add_noise=True):
        kind = mode["kind"]
        if kind == "singular":
            raise RuntimeError(
                "linalg.inv: The diagonal element 3 is zero, the inversion could not be completed "
                "because the input matrix is singular."
            )
        if kind == "linalg":
            raise torch.linalg.LinAlgError("linalg.slogdet: The algorithm failed to converge")
        if kind == "other":
            raise ValueError("a bug, not a numerical failure")
        out = real_forward(self, hr, lr, add_noise)
        if kind == "nan":
            out["logp"] = out["logp"] * math.nan
        if kind == "backward":
            out["logp"] = _FailingBackward.apply(out["logp"])
        return out

    monkeypatch.setattr(SRFlowNet, "forward", patched)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    adam_before = {k: {n: t.clone() for n, t in s.items()} for k, s in task.optimizers["g"].state.items()}
    for kind, reason in (
        ("nan", SKIP_NONFINITE_LOSS),
        ("singular", SKIP_LINALG),
        ("linalg", SKIP_LINALG),
        ("backward", SKIP_LINALG),
    ):
        mode["kind"] = kind
        stats = task.train_step(iter([batches[1]]))
        assert stats["skipped"] == 1.0 and stats["skip_reason"] == reason, kind
        assert all(p.grad is None for p in task.model.parameters()), kind
    after = task.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # nothing applied
    for k, s in task.optimizers["g"].state.items():  # Adam moments untouched
        assert all(torch.equal(t, adam_before[k][n]) for n, t in s.items())
    assert task.steps == 5  # skipped steps still count as iterations (freeze schedule, resume)

    mode["kind"] = "other"
    with pytest.raises(ValueError, match="a bug"):
        task.train_step(iter([batches[2]]))

    mode["kind"] = None
    assert task.train_step(iter([batches[2]]))["skipped"] == 0.0

    # the trainer counts consecutive skips and stops the run
    mode["kind"] = "singular"
    with pytest.raises(NonFiniteLossError, match="3 non-finite losses in a row"):
        trainer.fit()
    assert "step skipped" in (cfg.run_dir / "log.jsonl").read_text()


def test_is_linalg_failure():
    assert is_linalg_failure(torch.linalg.LinAlgError("x"))
    assert is_linalg_failure(RuntimeError("inverse: input is Singular"))
    assert is_linalg_failure(RuntimeError("SVD did not converge"))
    assert not is_linalg_failure(RuntimeError("CUDA out of memory"))
    assert not is_linalg_failure(ValueError("singular"))


# ------------------------------------------------------------------------------------------------- freeze


def test_rrdb_frozen_for_the_first_fraction_then_trained(tmp_path, images):
    cfg = load_run_config(
        write_config(tmp_path, images["hr"], options={"freeze_rrdb_fraction": 0.5}), ["train.total_iters=6"]
    )
    trainer = make_trainer(cfg)
    task = trainer.task
    assert task.freeze_iters == 3
    groups = {g["name"]: g["params"] for g in task.optimizers["g"].param_groups}
    rrdb_ids = {id(p) for p in groups["rrdb"]}
    assert rrdb_ids == {id(p) for p in rrdb_state_params(task)}  # in the optimiser from the start
    unused = {
        n: p.detach().clone() for n, p in task.model.named_parameters() if n in set(task.model.unused_parameter_names())
    }
    batches = first_batches(trainer, 6)
    rrdb0, flow0 = rrdb_state(task), flow_state(task)
    for i in range(3):
        stats = task.train_step(iter([batches[i]]))
        assert stats["rrdb_frozen"] == 1.0 and stats["skipped"] == 0.0
        assert all(not p.requires_grad for p in groups["rrdb"])
    assert same(rrdb0, rrdb_state(task))  # encoder unchanged while frozen
    assert not same(flow0, flow_state(task))  # the flow trained
    stats = task.train_step(iter([batches[3]]))
    assert stats["rrdb_frozen"] == 0.0
    changed = rrdb_state(task)
    assert all(not torch.equal(rrdb0[k], changed[k]) for k in rrdb0)  # every used encoder weight moved
    assert same(unused, {n: p.detach() for n, p in task.model.named_parameters() if n in unused})
    assert all(not p.requires_grad for n, p in task.model.named_parameters() if n in unused)


def rrdb_state_params(task: SRFlowTask) -> list[torch.nn.Parameter]:
    used = set(task.model.unused_parameter_names())
    return [p for n, p in task.model.named_parameters() if n.startswith("RRDB.") and n not in used]


def test_rrdb_pretrained_loads_and_checks_the_config(tmp_path, images):
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.models.registry import build_model

    rrdb = build_model("rrdbnet", {"nf": 8, "nb": 2, "gc": 4, "scale": 4})
    good = save_checkpoint(tmp_path / "rrdb.safetensors", rrdb.state_dict(), "rrdbnet", {"nf": 8, "nb": 2, "gc": 4})
    cfg = load_run_config(write_config(tmp_path / "a", images["hr"], options={"rrdb_pretrained": str(good)}))
    task = make_trainer(cfg).task
    assert torch.equal(task.model.RRDB.RRDB_trunk[1].RDB3.conv5.weight, rrdb.body[1].rdb3.conv5.weight)
    assert torch.equal(task.model.RRDB.trunk_conv.bias, rrdb.conv_body.bias)

    wide = build_model("rrdbnet", {"nf": 16, "nb": 2, "gc": 4, "scale": 4})
    bad = save_checkpoint(tmp_path / "wide.safetensors", wide.state_dict(), "rrdbnet", {"nf": 16, "nb": 2, "gc": 4})
    cfg = load_run_config(write_config(tmp_path / "b", images["hr"], options={"rrdb_pretrained": str(bad)}))
    with pytest.raises(GensrError, match=r"task.rrdb_pretrained: .*nf 16.*needs nf 8"):
        make_trainer(cfg)
    cfg = load_run_config(write_config(tmp_path / "c", images["hr"], options={"rrdb_pretrained": "missing.pth"}))
    with pytest.raises(GensrError, match="task.rrdb_pretrained: missing.pth"):
        make_trainer(cfg)


def test_model_pretrained_may_change_the_guards_but_not_the_weights_layout(tmp_path, images):
    """A fine-tune under tighter reverse-pass guards loads a model saved with other guards (and heat); a
    config that shapes the weights (K) must still match."""
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.models.registry import build_model

    source = build_model("srflow", {**TINY, "scale": 4})
    path = save_checkpoint(tmp_path / "flow.safetensors", source.state_dict(), "srflow", dict(TINY))
    tighter = {**TINY, "net_input_bound": 4.0, "min_scale": 0.1, "heat": 0.8}
    pretrained = [f"task.model.pretrained={path}"]
    cfg = load_run_config(write_config(tmp_path / "a", images["hr"], model=tighter), pretrained)
    model = make_trainer(cfg).task.model
    assert model.config.net_input_bound == 4.0 and model.config.min_scale == 0.1 and model.config.heat == 0.8
    assert same(model.state_dict(), source.state_dict())

    cfg = load_run_config(write_config(tmp_path / "b", images["hr"], model={**TINY, "K": 3}), pretrained)
    with pytest.raises(GensrError, match=r"task.model.pretrained: .*differs from task.model"):
        make_trainer(cfg)


# ------------------------------------------------------------------------------------------------- precision


def test_bf16_autocast_keeps_the_objective_float32_and_finite(tmp_path, images, monkeypatch):
    cfg = load_run_config(write_config(tmp_path, images["hr"]))
    trainer = make_trainer(cfg)
    task = trainer.task
    monkeypatch.setattr(task, "autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    batch = first_batches(trainer, 1)[0]
    stats = task.train_step(iter([batch]))  # ActNorm init + one step under bf16 autocast
    assert stats["skipped"] == 0.0 and math.isfinite(stats["loss"])
    out = task.objective(batch["hr"], batch["lr"])
    for k in ("logp", "nll", "bpp", "bpd", "loss"):
        assert out[k].dtype == torch.float32 and bool(torch.isfinite(out[k]).all()), k
    with task.autocast():
        conds = task.model.conditions(batch["lr"])
    assert conds[0].dtype == torch.bfloat16  # autocast really was active in the encoder
    fp32 = -task.model(batch["hr"], batch["lr"], add_noise=False)["logp"].mean()
    with task.autocast():
        bf16 = -task.model(batch["hr"], batch["lr"], add_noise=False)["logp"].mean()
    assert bf16.dtype == torch.float32 and abs(bf16.item() - fp32.item()) < 0.05 * abs(fp32.item()) + 0.1


# ------------------------------------------------------------------------------------------------- validation


def test_validation_reports_mean_and_samples_without_touching_the_global_rng(tmp_path, images):
    cfg = load_run_config(
        write_config(tmp_path, images["hr"]),
        [f"task.data.val.hr_dir={images['held']}", "train.total_iters=2", "train.eval_every=2"],
    )
    trainer = make_trainer(cfg)
    trainer.fit()
    val = [json.loads(x) for x in (cfg.run_dir / "log.jsonl").read_text().splitlines()]
    val = [r for r in val if r.get("split") == "val"]
    assert len(val) == 1
    for k in ("psnr_y", "ssim_y", "lr_psnr", "sample_psnr_y", "sample_lr_psnr"):
        assert math.isfinite(val[0][k]), k
    samples = sorted((cfg.run_dir / "val" / "iter_0000002" / "samples").glob("*.png"))
    assert [p.name for p in samples] == [f"img{i}_t0.9_0.png" for i in range(3)]
    assert (cfg.run_dir / "val" / "iter_0000002" / "img0.png").is_file()  # the tau=0 mean

    task, net = trainer.task, trainer.task.inference_network()
    state = torch.get_rng_state()
    a = task.extra_evaluation(7, None, net, tmp_path / "v1")
    assert torch.equal(state, torch.get_rng_state())  # local generator only
    b = task.extra_evaluation(7, None, net, tmp_path / "v2")
    assert a == b and (tmp_path / "v1" / "samples" / "img0_t0.9_0.png").is_file()  # reproducible


def test_super_resolve_is_the_deterministic_mean_for_odd_sizes():
    torch.manual_seed(0)
    from gensr.models.srflow import SRFlowConfig

    net = SRFlowNet(SRFlowConfig(**TINY)).eval()
    lr = torch.rand(1, 3, 7, 9)
    task = SRFlowTask.__new__(SRFlowTask)
    task.device = torch.device("cpu")
    a = task.super_resolve(net, lr)
    b = task.super_resolve(net, lr)
    assert a.shape == (1, 3, 28, 36) and torch.equal(a, b)
    padded = torch.nn.functional.pad(lr, (0, 1, 0, 1), mode="reflect")
    with torch.no_grad():
        assert torch.allclose(a, net.decode(padded, heat=0.0)[..., :28, :36].clamp(0, 1))
    s = task._sampler(net).sample(lr, 0.9, num_samples=2, seed=3)
    assert s.shape == (2, 3, 28, 36) and not torch.equal(s[0], s[1])


# ------------------------------------------------------------------------------------------------- configs


@pytest.mark.parametrize(
    "name, scale, batch, lr, taps",
    [
        ("srflow_x4", 4, 12, 2.5e-4, [1, 8, 15, 22]),
        ("srflow_x8", 8, 16, 5e-4, [1, 3, 5, 7]),
        ("srflow_x4_small", 4, 8, 5e-4, [0, 1, 2, 3]),
        ("srflow_x4_small_k8", 4, 8, 5e-4, [0, 1, 2, 3]),
    ],
)
def test_shipped_configs(name, scale, batch, lr, taps):
    from gensr.config import from_dict
    from gensr.models.srflow import SRFlowConfig
    from gensr.tasks.srflow import SRFlowOptions

    cfg = load_run_config(REPO / "configs" / f"{name}.yaml")
    opts = from_dict(SRFlowOptions, cfg.task)
    assert opts.kind == "srflow" and opts.scale == scale and opts.model.arch == "srflow"
    assert opts.data.train.augment == "hflip" and opts.data.train.batch_size == batch
    assert cfg.optim.lr == lr and cfg.optim.betas == [0.9, 0.99]
    frac = [m / cfg.train.total_iters for m in cfg.schedule.milestones]
    assert frac == [0.5, 0.75, 0.9, 0.95] and cfg.schedule.gamma == 0.5
    mc = from_dict(SRFlowConfig, {**opts.model.config, "scale": opts.scale})
    assert mc.rrdb_blocks == taps and mc.scale == scale
    assert opts.freeze_rrdb_fraction == 0.5 and opts.rrdb_pretrained
    if name.startswith("srflow_x4_small"):
        assert cfg.train.threads == 1 and opts.data.train.patch_size in range(64, 97)
        assert (mc.nf, mc.nb, mc.gc) == (32, 4, 16) and mc.cond_channels == 160
        from gensr.models.rrdbnet import RRDBNet, RRDBNetConfig

        net = SRFlowNet(mc)  # the shipped default's weights (nf 32, nb 4, gc 16) fit its encoder
        from gensr.checkpoints.srflow_official import rrdb_encoder_state
        from gensr.models.srflow import load_rrdb_encoder

        load_rrdb_encoder(net, rrdb_encoder_state(RRDBNet(RRDBNetConfig(nf=32, nb=4, gc=16)).state_dict()))
    if name == "srflow_x4_small_k8":
        assert mc.K == 8 and cfg.train.precision == "bf16" and mc.net_input_bound == 12.0
    if name == "srflow_x4":
        assert mc.K == 16 and mc.L == 3 and mc.hidden == 64 and opts.data.train.patch_size == 160
        assert cfg.schedule.milestones == [100000, 150000, 180000, 190000]


def test_shipped_srflow_fine_tune_chain():
    """Stages 2 and 3 of the shipped srflow: each fine-tunes the previous stage's output (same weights layout,
    tighter net_input_bound) at stage 1's last lr, constant, with the encoder frozen throughout."""
    from gensr.config import from_dict
    from gensr.models.srflow import SRFlowConfig
    from gensr.tasks.srflow import SRFlowOptions

    def load(name):
        cfg = load_run_config(REPO / "configs" / f"{name}.yaml")
        opts = from_dict(SRFlowOptions, cfg.task)
        return cfg, opts, from_dict(SRFlowConfig, {**opts.model.config, "scale": opts.scale})

    cfg1, _, mc1 = load("srflow_x4_small_k8")
    last_lr = cfg1.optim.lr * cfg1.schedule.gamma ** len(cfg1.schedule.milestones)
    previous, bound = "srflow_x4_small_k8", mc1.net_input_bound
    for name in ("srflow_x4_small_k8_guard4", "srflow_x4_small_k8_guard3"):
        cfg, opts, mc = load(name)
        assert opts.model.pretrained == f"runs/{previous}/model.safetensors" and not opts.rrdb_pretrained
        assert dataclasses.replace(mc, net_input_bound=mc1.net_input_bound) == mc1
        assert mc.net_input_bound < bound and opts.freeze_rrdb_fraction == 1.0
        assert cfg.schedule.kind == "constant" and cfg.optim.lr == last_lr and cfg.train.precision == "bf16"
        previous, bound = name, mc.net_input_bound


def test_stage_4_trains_stage_3_grown_to_k12():
    """Stage 4 (configs/srflow_x4_small_k12.yaml) starts from stage 3's model grown to K 12 by
    ``gensr convert --grow-k 12``: same model otherwise, same training bound, encoder frozen, lr halved at
    50/75/90 %."""
    from gensr.config import from_dict
    from gensr.models.srflow import SRFlowConfig
    from gensr.tasks.srflow import SRFlowOptions

    def load(name):
        cfg = load_run_config(REPO / "configs" / f"{name}.yaml")
        opts = from_dict(SRFlowOptions, cfg.task)
        return cfg, opts, from_dict(SRFlowConfig, {**opts.model.config, "scale": opts.scale})

    _, _, mc3 = load("srflow_x4_small_k8_guard3")
    cfg, opts, mc = load("srflow_x4_small_k12")
    assert opts.model.pretrained == "runs/srflow_x4_small_k12_grown.safetensors" and not opts.rrdb_pretrained
    assert mc == dataclasses.replace(mc3, K=12) and opts.freeze_rrdb_fraction == 1.0
    assert [m / cfg.train.total_iters for m in cfg.schedule.milestones] == [0.5, 0.75, 0.9]
    assert cfg.train.precision == "bf16" and cfg.train.threads == 1
    text = (REPO / "configs" / "srflow_x4_small_k12.yaml").read_text()
    assert "guard3/model.safetensors --grow-k 12 -o runs/srflow_x4_small_k12_grown.safetensors" in text
