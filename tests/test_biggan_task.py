"""BigGAN task: exact resume (several D steps, accumulation, a relativistic loss), accumulation = one big batch,
the step's structure, the non-finite guard, EMA over buffers, evaluation with a classifier, export, config errors,
the orthogonal regulariser against autograd, the shipped configs, and (slow) a tiny BigGAN that learns its classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from biggan_helpers import biggan_config, mean_colour_class, tiny_generator, write_shapes_npz
from conftest import make_trainer, read_training_state
from gensr.engine.config import load_run_config
from gensr.engine.distributed import DistInfo, unwrap
from gensr.errors import GensrError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    """3 classes x 16 synthetic 32 px images (red squares, green discs, blue stripes)."""
    return write_shapes_npz(tmp_path_factory.mktemp("data") / "shapes.npz", 16)


def make_task(cfg_path: Path, *overrides: str):
    from gensr.tasks.biggan import BigGANTask

    torch.manual_seed(0)
    return BigGANTask.from_config(load_run_config(cfg_path, list(overrides)), DistInfo())


def train_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    drop = ("time", "sec_per_iter")
    return [{k: v for k, v in r.items() if k not in drop} for r in rows if r.get("split") == "train"]


class Recorder:
    """A stand-in run logger: keeps messages and image tags."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.tags: list[str] = []

    def message(self, text: str) -> None:
        self.messages.append(text)

    def images(self, iteration: int, tag: str, grid: torch.Tensor) -> None:
        self.tags.append(tag)


# ---------------------------------------------------------------------------------------------- resume


@pytest.mark.parametrize(
    "task, iters",
    [({"loss": "hinge", "d_steps": 2, "accumulate": 2}, 8), ({"loss": "rasgan", "d_steps": 1, "accumulate": 2}, 4)],
    ids=["hinge-d2-acc2", "rasgan-acc2"],
)
def test_resume_equals_uninterrupted_run(tmp_path, shapes, task, iters):
    train = {"total_iters": iters, "checkpoint_every": iters // 2, "log_every": 1, "eval_every": 0, "threads": 1}
    full = load_run_config(biggan_config(tmp_path / "a", shapes, task, train=train))
    make_trainer(full).fit()
    reference = train_rows(full.run_dir)
    assert len(reference) == iters and all(r["skipped"] == 0 for r in reference)

    cfg_b = biggan_config(tmp_path / "b", shapes, task, train=train)
    make_trainer(load_run_config(cfg_b, [f"train.total_iters={iters // 2}"])).fit()
    rest = load_run_config(cfg_b)
    make_trainer(rest, resume="auto").fit()
    assert train_rows(rest.run_dir) == reference  # every loss and singular value, bit-identical on the CPU
    name = f"iter_{iters:07d}.safetensors"
    a = read_training_state(full.run_dir / "checkpoints" / name)
    b = read_training_state(rest.run_dir / "checkpoints" / name)
    for net in ("g", "d"):
        for k, v in a["task"]["networks"][net].items():
            assert torch.equal(v, b["task"]["networks"][net][k]), (net, k)
    for k, v in a["ema"]["shadow"].items():
        assert torch.equal(v, b["ema"]["shadow"][k]), k


def test_batches_per_step(tmp_path, shapes):
    cfg = biggan_config(tmp_path, shapes)
    assert make_task(cfg, "task.d_steps=2", "task.accumulate=2").batches_per_step == 4
    assert make_task(cfg, "task.d_steps=4", "task.accumulate=1").batches_per_step == 4
    assert make_task(cfg, "task.d_steps=2", "task.accumulate=3", "task.loss=rahinge").batches_per_step == 6


# ---------------------------------------------------------------------------------------------- the step


def d_gradients(cfg: Path, accumulate: int, batch: int, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """D's gradient after one D update of ``accumulate`` sub-batches of ``batch`` (the optimiser step skipped),
    with G and D deterministic (G in eval mode: no batch statistics; D in eval mode: a fixed sigma)."""
    task = make_task(cfg, f"task.accumulate={accumulate}", f"task.data.batch_size={batch}", "task.data.hflip=false")
    unwrap(task.networks["g"]).eval()
    d = task.networks["d"].eval()
    chunks = iter(zip(z.split(batch), y.split(batch), strict=True))
    task._latents = lambda n: next(chunks)
    task.optimizers["d"].step = lambda: None
    assert task._d_update(task.train_data(0, 0, 0, 1), {})
    return {k: p.grad.clone() for k, p in d.named_parameters()}


def test_gradient_accumulation_equals_one_big_batch(tmp_path, shapes):
    cfg = biggan_config(tmp_path, shapes)
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(16, 16, generator=g), torch.randint(0, 3, (16,), generator=g)  # dim_z 16: 4 chunks of 4
    big = d_gradients(cfg, 1, 16, z, y)
    acc = d_gradients(cfg, 4, 4, z, y)
    for k, v in big.items():
        assert v.abs().max() > 0, k
        assert (acc[k] - v).abs().max() <= 1e-5 * v.abs().max(), k  # float32 summation order only


def test_one_iteration_pulls_its_batches_and_freezes_d_in_the_g_part(tmp_path, shapes):
    task = make_task(biggan_config(tmp_path, shapes), "task.g_batch_size=6", "task.loss=rahinge")
    d = unwrap(task.networks["d"])
    calls: list[tuple[int, bool]] = []
    inputs: list[torch.Tensor] = []
    d.register_forward_pre_hook(lambda m, args: calls.append((args[0].shape[0], d.linear.weight.requires_grad)))
    d.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach().clone()))
    pulled = []
    source = task.train_data(0, 0, 0, 1)

    def counting():
        for batch in source:
            pulled.append(batch["x"].shape[0])
            yield batch

    stats = task.train_step(counting())
    assert stats["skipped"] == 0 and len(pulled) == task.batches_per_step == 2 * 2
    d_part = [(8, True)] * 8  # 2 D steps x 2 sub-batches x (real, fake), D trainable
    g_part = [(8, False), (6, False)] * 2  # per sub-batch: a real batch (relativistic) and the fake, D frozen
    assert calls == d_part + g_part
    # G's relativistic term pairs each fake sub-batch with the real sub-batch of the last D update
    assert torch.equal(inputs[8], inputs[4]) and torch.equal(inputs[10], inputs[6])
    assert all(p.requires_grad for p in d.parameters())
    assert {"loss", "g_loss", "ortho", "d_loss", "g_sv_max", "d_sv_mean"} <= set(stats)
    assert stats["ortho"] > 0 and abs(stats["loss"] - stats["g_loss"] - stats["ortho"]) < 1e-5


def snapshot(task) -> dict[str, torch.Tensor]:
    out = {}
    for name in ("g", "d"):
        for k, v in unwrap(task.networks[name]).state_dict().items():
            out[f"{name}.{k}"] = v.clone()
        for i, state in task.optimizers[name].state.items():
            for k, v in state.items():
                out[f"opt_{name}.{i}.{k}"] = v.clone()
    return out


@pytest.mark.parametrize("d_steps", [3, 1], ids=["in-the-2nd-of-3-d-steps", "in-the-g-step"])
def test_a_non_finite_loss_skips_the_whole_iteration(tmp_path, shapes, d_steps):
    task = make_task(biggan_config(tmp_path, shapes), "task.accumulate=1", f"task.d_steps={d_steps}")
    batches = task.train_data(0, 0, 0, 1)
    task.train_step(batches)  # optimiser states exist from here on
    before = snapshot(task)
    d = unwrap(task.networks["d"])
    count = [0]

    def poison(module, args, output):
        count[0] += 1
        return output * float("nan") if count[0] == 3 else output  # 2nd D step's real batch, or the G step

    handle = d.register_forward_hook(poison)
    pulled = []

    def counting():
        for batch in batches:
            pulled.append(1)
            yield batch

    stats = task.train_step(counting())
    handle.remove()
    assert stats["skipped"] == 1 and np.isnan(stats["loss"])
    assert len(pulled) == task.batches_per_step  # the data position stays a function of the iteration
    after = snapshot(task)
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # the D update(s) already made and every buffer change were undone
    assert task.train_step(batches)["skipped"] == 0


def test_ema_of_g_averages_parameters_and_buffers(tmp_path, shapes):
    cfg = load_run_config(biggan_config(tmp_path, shapes, ema={"enabled": True, "decay": 0.5, "start_iter": 2,
                                                               "buffers": "average"}))  # fmt: skip
    trainer = make_trainer(cfg)
    g = unwrap(trainer.task.networks["g"])
    key, pkey = "blocks.0.0.bn1.stored_mean", "linear.weight"
    expected = {key: g.state_dict()[key].clone(), pkey: g.state_dict()[pkey].clone()}
    batches = trainer.task.train_data(cfg.seed, 0, 0, 1)
    for i in range(1, 4):
        stats = trainer.task.train_step(batches)
        trainer.iteration = i
        trainer._after_step(stats)
        for k in expected:
            now = g.state_dict()[k]
            expected[k] = now.clone() if i < 2 else 0.5 * expected[k] + 0.5 * now
    shadow = trainer.ema.shadow.state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(shadow[k], v, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(shadow[k], g.state_dict()[k])
    trainer.close()


# ---------------------------------------------------------------------------------------------- evaluation


@pytest.fixture(scope="module")
def classifier_file(tmp_path_factory) -> Path:
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.models.classifier import CifarResNet, ClassifierConfig

    torch.manual_seed(0)
    clf = CifarResNet(ClassifierConfig(num_classes=3, widths=(4, 8), blocks=1))
    return save_checkpoint(tmp_path_factory.mktemp("clf") / "clf.safetensors", clf.state_dict(), "cifar_classifier",
                           {"num_classes": 3, "widths": [4, 8], "blocks": 1})  # fmt: skip


def test_evaluate_with_a_classifier(tmp_path, shapes, classifier_file):
    task = make_task(biggan_config(tmp_path, shapes, {"eval": {"samples": 30, "classifier": str(classifier_file),
                                                               "standing_stats": 2, "batch_size": 8}}))  # fmt: skip
    g = unwrap(task.networks["g"]).eval()
    log = Recorder()
    state = [v.clone() for v in g.state_dict().values()]
    rng = torch.get_rng_state()
    scores = task.evaluate(7, log, g)
    assert torch.equal(torch.get_rng_state(), rng)  # never the global RNG
    assert all(torch.equal(a, b) for a, b in zip(state, g.state_dict().values(), strict=True))  # stats on a copy
    assert {"classifier_acc", "classifier_acc_min_class", "classifier_fd", "g_sv_max", "d_sv_max"} <= set(scores)
    assert 0 <= scores["classifier_acc_min_class"] <= scores["classifier_acc"] <= 1 and scores["classifier_fd"] > 0
    grid = task.run.run_dir / "eval" / "iter_0000007" / "class_grid.png"
    from gensr.io import read_array

    assert read_array(grid).shape == (3 * 34 - 2, 10 * 34 - 2, 3)  # one row per class
    caches = list((task.run.run_dir / "eval").glob("classifier_ref_*.npz"))
    assert len(caches) == 1
    assert task.evaluate(7, log, g) == scores  # seeded by the iteration; cached reference statistics
    assert not log.messages and log.tags == ["eval/class_grid"] * 2


def test_evaluate_without_the_classifier_notes_it_once(tmp_path, shapes):
    task = make_task(biggan_config(tmp_path, shapes, {"eval": {"samples": 6, "classifier": str(tmp_path / "no.st"),
                                                               "standing_stats": 0}}))  # fmt: skip
    log = Recorder()
    g = unwrap(task.networks["g"]).eval()
    for it in (1, 2):
        assert set(task.evaluate(it, log, g)) == {"g_sv_max", "g_sv_mean", "d_sv_max", "d_sv_mean"}
    assert len(log.messages) == 1 and "no.st" in log.messages[0]


def test_export_is_the_ema_generator_and_keeps_the_best(tmp_path, shapes, classifier_file):
    cfg = biggan_config(
        tmp_path, shapes, {"eval": {"samples": 6, "classifier": str(classifier_file), "standing_stats": 1}},
        train={"total_iters": 2, "checkpoint_every": 2, "log_every": 1, "eval_every": 1, "threads": 1,
               "best_metric": "classifier_acc", "keep_best": 1},
    )  # fmt: skip
    trainer = make_trainer(load_run_config(cfg))
    path = trainer.fit()
    from gensr.checkpoints.gensr_format import read_checkpoint
    from gensr.checkpoints.loader import load_model

    model = load_model(path)
    assert type(model).__name__ == "BigGANGenerator" and model.n_classes == 3
    for k, v in trainer.ema.shadow.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    meta = read_checkpoint(path).meta
    assert meta["class_names"] == ["0", "1", "2"] and meta["ema"] is True
    assert len(list((trainer.run_dir / "models" / "best").glob("*.safetensors"))) == 1


# ---------------------------------------------------------------------------------------------- config errors


def test_config_mistakes_are_one_line(tmp_path, shapes):
    from gensr.tasks.biggan import BigGANTask

    cfg = biggan_config(tmp_path, shapes)
    cases = [
        (["task.generator.resolution=64"], "images are 32x32, but task.generator.resolution is 64"),
        (["task.loss=nope"], "unknown GAN loss"),
        (["task.loss=rsgan", "task.g_batch_size=4"], "g_batch_size must equal data.batch_size"),
        (["task.generator.n_classes=2"], "smaller than the 3 classes"),
        (["task.d_steps=0"], "d_steps must be >= 1"),
        (["task.eval.truncation=3"], "truncation must be"),
        (["task.generator.attn=[8]", "task.generator.ch=1"], "divisible by 8"),
    ]
    for overrides, message in cases:
        with pytest.raises(GensrError, match=message) as info:
            make_task(cfg, *overrides)
        assert "\n" not in str(info.value)
    run = load_run_config(cfg, [f"task.data.train={tmp_path / 'missing.npz'}"])
    from gensr.config import from_dict

    with pytest.raises(GensrError, match="task.data.train: .*missing.npz: no such file"):
        BigGANTask.check(from_dict(BigGANTask.Options, run.task, where="task"), run)


@pytest.mark.parametrize("name", ["biggan_imagenet128", "biggan_cifar", "biggan_cifar_cpu"])
def test_shipped_configs_parse(name):
    from gensr.config import from_dict
    from gensr.tasks.biggan import BigGANTask

    cfg = load_run_config(REPO / "configs" / f"{name}.yaml")
    options = from_dict(BigGANTask.Options, cfg.task, where="task")
    assert options.loss == "hinge" and cfg.optim.betas == [0.0, 0.999] and cfg.ema.buffers == "average"
    if name == "biggan_imagenet128":
        assert (options.d_steps, options.accumulate, options.data.batch_size) == (2, 8, 256)
        assert cfg.optim.lr == 5e-5 and cfg.optim.for_network("d").lr == 2e-4 and cfg.ema.start_iter == 20_000


# ---------------------------------------------------------------------------------------------- ortho


def test_ortho_gradient_matches_autograd_and_the_analytic_form():
    from gensr.losses.regularizers import orthogonal_regularization

    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    beta = 1e-4
    loss = orthogonal_regularization([w, v], beta)
    gw, gv = torch.autograd.grad(loss, [w, v])
    for p, grad in ((w, gw), (v, gv)):
        m = p.detach().reshape(p.shape[0], -1)
        off = m @ m.T * (1 - torch.eye(m.shape[0], dtype=m.dtype))
        assert torch.allclose(loss.new_tensor(0) + (off**2).sum() * beta, orthogonal_regularization([p], beta))
        analytic = (4 * beta * off @ m).reshape(p.shape)
        torch.testing.assert_close(grad, analytic)
        biggan_pytorch = (2 * beta * off @ m).reshape(p.shape)  # utils.ortho adds half of it
        torch.testing.assert_close(grad, 2 * biggan_pytorch)
    assert torch.autograd.gradcheck(lambda a: orthogonal_regularization([a], 0.1), (v,))
    q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))  # orthogonal rows, any norms: no penalty
    assert orthogonal_regularization([q * torch.tensor([[1.0], [2.0], [3.0], [0.5]], dtype=torch.float64)]) < 1e-20


def test_ortho_parameters_skip_embeddings_and_cbn_linears():
    from gensr.losses.regularizers import ortho_parameters

    shared = {n for n, _ in ortho_parameters(tiny_generator(3, g_attn=[16], ch=8))}
    assert "shared.weight" not in shared and not any(".bn1." in n or ".bn2." in n for n in shared)
    assert {"linear.weight", "blocks.0.0.conv1.weight", "blocks.0.0.conv_sc.weight", "output_layer.2.weight",
            "blocks.1.1.theta.weight"} <= shared  # fmt: skip
    plain = {n for n, _ in ortho_parameters(tiny_generator(3, shared=False, hier=False))}
    assert not any(".bn1." in n or ".bn2." in n for n in plain) and "blocks.2.0.conv2.weight" in plain


# ---------------------------------------------------------------------------------------------- learning


@pytest.mark.slow
def test_a_tiny_biggan_learns_its_classes(tmp_path):
    """200 iterations on 3 very distinct synthetic classes: the EMA generator's samples carry their class's
    colour (a rule-based classifier gets them right far above the 1/3 of chance)."""
    from gensr.inference.generation import generate

    data = write_shapes_npz(tmp_path / "shapes.npz", 64)
    cfg = biggan_config(
        tmp_path, data, {"d_steps": 1, "accumulate": 1, "sv_log_every": 0},
        optim={"lr": 1e-3, "betas": [0.0, 0.999]},
        ema={"enabled": True, "decay": 0.98, "start_iter": 60, "buffers": "average"},
        train={"total_iters": 200, "checkpoint_every": 200, "log_every": 50, "eval_every": 0, "threads": 1},
    )  # fmt: skip
    exported = make_trainer(load_run_config(cfg)).fit()
    x, y = generate(str(exported), num=40, seed=0, device="cpu", standing_stats=4)
    accuracy = float((mean_colour_class(x) == y).mean())
    assert accuracy > 0.7, accuracy
    x, y = generate(tiny_generator(3), num=40, seed=0, device="cpu")  # untrained: no class colour
    assert float((mean_colour_class(x) == y).mean()) < 0.5
