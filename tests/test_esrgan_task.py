"""ESRGAN task: tiny end-to-end runs (feature matching and VGG perceptual), exact resume, the step's
gradient flow (D frozen in the G part, separate real/fake D forwards, loss formula), non-finite skips,
bad input caught before training, validation grids and the shipped configs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import make_trainer, read_training_state
from gensr.data.datasets import SRTrainDataset
from gensr.engine.config import load_run_config
from gensr.engine.distributed import DistInfo
from gensr.errors import GensrError, NonFiniteLossError
from gensr.nn.vgg import WEIGHTS_ENV
from image_helpers import write_smooth_images

REPO = Path(__file__).resolve().parent.parent
VGG_CONVS = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
VGG_CHANNELS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    """Six smooth random 48x40 images."""
    return write_smooth_images(tmp_path_factory.mktemp("hr"), seed=2)


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory) -> Path:
    """Random VGG19 weights in torchvision's layout (features.N.* plus classifier.* stand-ins)."""
    g = torch.Generator().manual_seed(0)
    sd, cin = {}, 3
    for idx, cout in zip(VGG_CONVS, VGG_CHANNELS, strict=True):
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2.0 / (9 * cin)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.zeros(cout)
        cin = cout
    for i in (0, 3, 6):
        sd[f"classifier.{i}.weight"] = torch.zeros(2, 2)
        sd[f"classifier.{i}.bias"] = torch.zeros(2)
    path = tmp_path_factory.mktemp("vgg") / "vgg19-random.pth"
    torch.save(sd, path)
    return path


@pytest.fixture(scope="module")
def psnr_model(tmp_path_factory, image_folder) -> Path:
    """A tiny PSNR-task RRDBNet (nf 8, nb 1, gc 4) trained for 3 steps and exported."""
    tmp = tmp_path_factory.mktemp("psnr")
    cfg = {
        "name": "p", "output_dir": str(tmp / "run"),
        "task": {
            "kind": "psnr", "scale": 4,
            "model": {"arch": "rrdbnet", "config": {"nf": 8, "nb": 1, "gc": 4}},
            "data": {"train": {"hr_dirs": [str(image_folder)], "patch_size": 32, "batch_size": 4, "num_workers": 0}},
        },
        "optim": {"lr": 2e-3},
        "train": {"total_iters": 3, "checkpoint_every": 3, "log_every": 1, "threads": 1},
    }  # fmt: skip
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    exported = make_trainer(load_run_config(tmp / "cfg.yaml")).fit()
    assert exported is not None and exported.name == "model.safetensors"
    return exported


def write_config(tmp: Path, hr: Path, pretrained: Path, perceptual: dict, **extra) -> Path:
    cfg = {
        "name": "e", "output_dir": str(tmp / "run"),
        "task": {
            "kind": "esrgan", "scale": 4,
            "model": {"arch": "rrdbnet", "config": {"nf": 8, "nb": 1, "gc": 4}, "pretrained": str(pretrained)},
            "data": {"train": {"hr_dirs": [str(hr)], "patch_size": 32, "batch_size": 4, "num_workers": 0}},
            "perceptual": perceptual,
            "discriminator": {"arch": "vgg_discriminator", "config": {"nf": 4, "input_size": 32}},
        },
        "optim": {"lr": 1e-3},
        "schedule": {"kind": "multistep", "milestones": [2], "gamma": 0.5},
        "train": {"total_iters": 4, "checkpoint_every": 2, "log_every": 1, "threads": 1},
    }  # fmt: skip
    cfg.update(extra)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "cfg.yaml"


FM = {"kind": "feature_matching"}


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [
        {k: v for k, v in r.items() if k not in ("time", "sec_per_iter")} for r in rows if r.get("split") == "train"
    ]


def one_batch(hr: Path, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    ds = SRTrainDataset([hr], 4, 32, seed=5)
    items = [ds[i] for i in range(n)]
    return torch.stack([it["lr"] for it in items]), torch.stack([it["hr"] for it in items])


def make_task(cfg_path: Path, *overrides: str):
    from gensr.tasks.esrgan import ESRGANTask

    return ESRGANTask.from_config(load_run_config(cfg_path, list(overrides)), DistInfo())


# ---------------------------------------------------------------------------------------------- end to end


def test_feature_matching_run_trains_both_networks(tmp_path, image_folder, psnr_model):
    cfg = load_run_config(write_config(tmp_path, image_folder, psnr_model, FM))
    trainer = make_trainer(cfg)
    g0 = {k: v.clone() for k, v in trainer.task.networks["g"].state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.task.networks["d"].state_dict().items()}
    exported = trainer.fit()
    rows = train_rows(cfg.run_dir)
    assert len(rows) == 4
    for r in rows:
        assert r["skipped"] == 0.0
        for k in ("loss", "g_pixel", "g_percep", "g_gan", "d_loss", "d_real", "d_fake"):
            assert math.isfinite(r[k]), (k, r)
        assert r["g_percep"] > 0 and r["g_pixel"] > 0 and r["g_gan"] > 0
        assert r["loss"] == pytest.approx(r["g_pixel"] + r["g_percep"] + r["g_gan"], rel=1e-5)
    g1, d1 = trainer.task.networks["g"].state_dict(), trainer.task.networks["d"].state_dict()
    assert any(not torch.equal(g0[k], g1[k]) for k in g0)
    assert any(not torch.equal(d0[k], d1[k]) for k in d0)
    assert [round(r["lr"], 10) for r in rows] == [1e-3, 5e-4, 5e-4, 5e-4]  # milestone 2, gamma 0.5
    from gensr.checkpoints.gensr_format import read_checkpoint

    ck = read_checkpoint(exported)
    assert ck.arch == "rrdbnet" and ck.config["nf"] == 8 and ck.meta["task"] == "esrgan"
    assert set(ck.state_dict) == set(g1)  # G only, no discriminator in the exported model


def test_vgg_perceptual_resume_equals_uninterrupted_run(tmp_path, image_folder, psnr_model, vgg_file):
    percep = {"kind": "vgg", "weights_path": str(vgg_file)}
    full = load_run_config(write_config(tmp_path / "a", image_folder, psnr_model, percep))
    make_trainer(full).fit()
    reference = train_rows(full.run_dir)
    assert len(reference) == 4 and all(math.isfinite(r["g_percep"]) and r["g_percep"] > 0 for r in reference)

    cfg_b = write_config(tmp_path / "b", image_folder, psnr_model, percep)
    make_trainer(load_run_config(cfg_b, ["train.total_iters=2"])).fit()
    rest = load_run_config(cfg_b)
    make_trainer(rest, resume="auto").fit()
    assert train_rows(rest.run_dir) == reference  # bit-identical on CPU, G and D losses alike
    a = read_training_state(full.run_dir / "checkpoints" / "iter_0000004.safetensors")["task"]["networks"]
    b = read_training_state(rest.run_dir / "checkpoints" / "iter_0000004.safetensors")["task"]["networks"]
    for net in ("g", "d"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), (net, k)


# ---------------------------------------------------------------------------------------------- the step


def test_generator_part_freezes_d_and_uses_separate_forwards(tmp_path, image_folder, psnr_model):
    task = make_task(write_config(tmp_path, image_folder, psnr_model, FM))
    d, g = task.networks["d"], task.networks["g"]
    batches: list[int] = []
    d.register_forward_pre_hook(lambda mod, args, kwargs: batches.append(args[0].shape[0]), with_kwargs=True)
    lr, hr = one_batch(image_folder)
    fake, terms = task.generator_backward(lr, hr)
    assert batches == [4, 4]  # real, then fake: never one concatenated batch
    assert all(p.grad is None for p in d.parameters())  # D frozen during the G part
    assert all(p.requires_grad for p in d.parameters())  # ... and unfrozen afterwards
    assert all(p.grad is not None for p in g.parameters())
    assert d.training and not fake.requires_grad

    # The loss is ESRGAN's, written out independently: 1e-2 L1 + 5e-3 RaGAN_G + 1 * feature matching,
    # and its gradient reaches G through D(fake) (values and G gradients both checked).
    sr = g(lr)
    with torch.no_grad():
        c_r, f_r = d(hr, return_features=True)
    c_f, f_f = d(sr, return_features=True)
    bce = F.binary_cross_entropy_with_logits
    ragan_g = 0.5 * (bce(c_r - c_f.mean(), torch.zeros_like(c_r)) + bce(c_f - c_r.mean(), torch.ones_like(c_f)))
    fm = sum((a - b).abs().mean() for a, b in zip(f_f, f_r, strict=True)) / len(f_r)
    pix = (sr - hr).abs().mean()
    assert terms["g_gan"].item() == pytest.approx(5e-3 * ragan_g.item(), rel=1e-5)
    assert terms["g_pixel"].item() == pytest.approx(1e-2 * pix.item(), rel=1e-5)
    assert terms["g_percep"].item() == pytest.approx(fm.item(), rel=1e-5)
    manual = torch.autograd.grad(1e-2 * pix + 5e-3 * ragan_g + fm, list(g.parameters()))
    pixel_only = torch.autograd.grad(1e-2 * (g(lr) - hr).abs().mean(), list(g.parameters()))
    for m, p in zip(manual, g.parameters(), strict=True):
        torch.testing.assert_close(p.grad, m, rtol=1e-4, atol=1e-8)
    assert any(not torch.allclose(m, q, rtol=1e-3, atol=1e-8) for m, q in zip(manual, pixel_only, strict=True))

    batches.clear()
    g_grads = [p.grad.clone() for p in g.parameters()]
    d_terms = task.gan.discriminator_backward(hr, fake)
    assert batches == [4, 4]
    assert all(p.grad is not None for p in d.parameters())
    assert all(torch.equal(a, p.grad) for a, p in zip(g_grads, g.parameters(), strict=True))  # D part: no G grad
    with torch.no_grad():
        c_r, c_f = d(hr), d(fake)
    ragan_d = 0.5 * (bce(c_r - c_f.mean(), torch.ones_like(c_r)) + bce(c_f - c_r.mean(), torch.zeros_like(c_f)))
    assert d_terms["d_loss"].item() == pytest.approx(ragan_d.item(), rel=1e-5)


@pytest.mark.parametrize(
    ("gan_type", "disc"),
    [
        ("wgan-gp", "vgg_discriminator"),
        ("hinge", "unet_discriminator"),
        ("ralsgan", "unet_discriminator"),
        ("vanilla", "vgg_discriminator"),
    ],
)
def test_other_losses_and_unet_discriminator_step(tmp_path, image_folder, psnr_model, gan_type, disc):
    d_cfg = {"nf": 4, "input_size": 32} if disc == "vgg_discriminator" else {"nf": 4}
    task = make_task(
        write_config(tmp_path, image_folder, psnr_model, FM),
        f"task.gan_type={gan_type}",
        f"task.discriminator={json.dumps({'arch': disc, 'config': d_cfg})}",
    )
    lr, hr = one_batch(image_folder)
    d0 = [p.detach().clone() for p in task.networks["d"].parameters()]
    stats = task.train_step(iter([{"lr": lr, "hr": hr}]))
    assert stats["skipped"] == 0.0 and all(math.isfinite(v) for v in stats.values()), stats
    assert any(not torch.equal(a, p) for a, p in zip(d0, task.networks["d"].parameters(), strict=True))


def test_nonfinite_losses_skip_without_changing_anything(tmp_path, image_folder, psnr_model, monkeypatch):
    task = make_task(write_config(tmp_path, image_folder, psnr_model, FM))
    lr, hr = one_batch(image_folder)
    before = {n: {k: v.clone() for k, v in task.networks[n].state_dict().items()} for n in ("g", "d")}

    def unchanged() -> bool:
        return all(
            torch.equal(before[n][k], v)
            for n in ("g", "d")
            for k, v in task.networks[n].state_dict().items()
            if "running" not in k and "num_batches" not in k  # BN statistics move with every train forward
        )

    monkeypatch.setattr(task.gan.adversarial, "d_loss", lambda r, f: (r * math.nan).mean())
    stats = task.train_step(iter([{"lr": lr, "hr": hr}]))
    assert stats["skipped"] == 1.0 and math.isnan(stats["d_loss"]) and math.isfinite(stats["g_pixel"])
    assert unchanged() and all(p.grad is None for n in ("g", "d") for p in task.networks[n].parameters())
    monkeypatch.undo()
    monkeypatch.setattr(task, "pixel_fn", lambda a, b: (a * math.inf).mean())
    stats = task.train_step(iter([{"lr": lr, "hr": hr}]))
    assert stats["skipped"] == 1.0 and math.isnan(stats["loss"])
    assert unchanged()
    monkeypatch.undo()
    assert task.train_step(iter([{"lr": lr, "hr": hr}]))["skipped"] == 0.0
    assert not unchanged()


def test_trainer_stops_after_max_nonfinite(tmp_path, image_folder, psnr_model, monkeypatch):
    cfg = load_run_config(write_config(tmp_path, image_folder, psnr_model, FM), ["train.max_nonfinite=2"])
    trainer = make_trainer(cfg)
    monkeypatch.setattr(trainer.task, "pixel_fn", lambda a, b: (a * math.nan).mean())
    with pytest.raises(NonFiniteLossError, match="Last good checkpoint"):
        trainer.fit()
    assert trainer.iteration == 2


# ---------------------------------------------------------------------------------------------- bad input


BAD = [
    (["task.model.pretrained=null"], "model.pretrained is required"),
    (["task.model.pretrained=/nonexistent/psnr.safetensors"], "model.pretrained: .*no such checkpoint"),
    (["task.discriminator.config.input_size=64"], "input_size 64 does not match task.data.train.patch_size 32"),
    (["task.data.train.patch_size=48", "task.discriminator.config={nf: 4}"], "power of two"),
    (["task.discriminator.arch=patchgan"], "discriminator: arch must be one of"),
    (["task.gan_type=ragan2"], "gan_type: unknown GAN loss 'ragan2'"),
    (["task.pixel_loss=l3"], "pixel_loss: unknown pixel loss 'l3'"),
    (["task.perceptual={kind: vgg, weights_path: /nonexistent/vgg19.pth}"], "VGG19 weights file not found"),
    (["task.perceptual={kind: vgg}"], "VGG19 weights are needed"),
    (["task.perceptual={kind: lpips}"], "perceptual: kind must be one of"),
    (["task.bogus=1"], "unknown key"),
    (["optim.networks={d: {lr: 1e-4, momentum: 0.9}}"], "networks.d: unknown key"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD)
def test_bad_input_fails_before_training(tmp_path, image_folder, psnr_model, monkeypatch, overrides, message):
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    path = write_config(tmp_path, image_folder, psnr_model, FM)
    with pytest.raises(GensrError, match=message) as info:
        make_trainer(load_run_config(path, overrides))  # config errors at load, the rest before any training
    assert "\n" not in str(info.value)
    assert not (tmp_path / "run").exists()  # nothing written


def test_cli_bad_input_exits_2_with_one_line(tmp_path, image_folder, psnr_model):
    override, needle = "task.discriminator.config.input_size=16", "input_size 16 does not match"
    path = write_config(tmp_path, image_folder, psnr_model, FM)
    r = subprocess.run(
        [sys.executable, "-m", "gensr", "train", str(path), override], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gensr: error:") and needle in lines[0]
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------------------------------------- validation


def test_validation_grids(tmp_path, image_folder, psnr_model):
    val = {"hr_dir": str(image_folder)}
    cfg_path = write_config(tmp_path, image_folder, psnr_model, FM)
    cfg = load_run_config(cfg_path, [f"task.data.val={json.dumps(val)}", "task.grid_images=2", "train.eval_every=100"])
    trainer = make_trainer(cfg)
    task = trainer.task
    with torch.no_grad():  # make the GAN G differ from the PSNR model
        for p in task.networks["g"].parameters():
            p.add_(0.01)
    rng = torch.get_rng_state()
    means = trainer.evaluate()
    assert torch.equal(rng, torch.get_rng_state())  # validation leaves the global RNG alone
    assert math.isfinite(means["psnr_y"])
    grids = sorted((cfg.run_dir / "val" / "iter_0000000").glob("grid_*.png"))
    assert [p.name for p in grids] == ["grid_img0.png", "grid_img1.png"]
    from gensr.data.datasets import SRValDataset
    from gensr.io import read_array

    grid = read_array(grids[0]).astype(np.float64) / 255.0
    assert grid.shape == (40, 5 * 48 + 4 * 4, 3)
    item = SRValDataset(image_folder, 4)[0]
    panel = [grid[:, i * 52 : i * 52 + 48].transpose(2, 0, 1) for i in range(5)]
    lr = item["lr"][None]
    with torch.no_grad():
        expected = [
            F.interpolate(lr, scale_factor=4, mode="nearest")[0],
            None,
            task.psnr_net(lr)[0].clamp(0, 1),
            task.networks["g"](lr)[0].clamp(0, 1),
            item["hr"],
        ]
    for i, e in enumerate(expected):
        if e is not None:
            assert np.abs(panel[i] - e.numpy()).max() <= 0.5 / 255 + 1e-6, i
    assert np.abs(panel[2] - panel[3]).max() > 2 / 255  # PSNR model and GAN panels differ


# ---------------------------------------------------------------------------------------------- configs


def test_shipped_configs_are_consistent():
    from gensr.config import from_dict
    from gensr.tasks.esrgan import ESRGANOptions, discriminator_config

    paper = load_run_config(REPO / "configs" / "esrgan_x4.yaml")
    opts = from_dict(ESRGANOptions, paper.task)
    assert opts.kind == "esrgan" and opts.scale == 4 and opts.model.config == {"nf": 64, "nb": 23, "gc": 32}
    assert opts.model.pretrained == "runs/rrdb_psnr_x4/model.safetensors"
    assert (opts.gan_type, opts.gan_weight, opts.pixel_weight, opts.pixel_loss) == ("rasgan", 5e-3, 1e-2, "l1")
    assert (opts.perceptual.kind, opts.perceptual.layers, opts.perceptual.weight) == ("vgg", "esrgan", 1.0)
    assert discriminator_config(opts.discriminator, opts.data.train.patch_size)["input_size"] == 128
    assert paper.schedule.milestones == [50000, 100000, 200000, 300000] and paper.schedule.gamma == 0.5
    assert paper.optim.lr == 1e-4 and paper.train.total_iters == 400000 and opts.data.train.batch_size == 16

    small = load_run_config(REPO / "configs" / "esrgan_x4_small.yaml")
    sopts = from_dict(ESRGANOptions, small.task)
    assert sopts.model.pretrained == "default" and sopts.model.config == {"nf": 32, "nb": 4, "gc": 16}
    assert sopts.perceptual.kind == "feature_matching" and small.train.threads == 1
    assert discriminator_config(sopts.discriminator, sopts.data.train.patch_size)["input_size"] == (
        sopts.data.train.patch_size
    )
