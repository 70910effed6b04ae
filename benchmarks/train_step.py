"""Seconds per training iteration of run configs' real task steps, precision modes side by side.

For each config (default: the three shipped CPU recipes ``configs/rrdb_psnr_x4_cpu.yaml``, ``esrgan_x4_small.yaml``
and ``srflow_x4_small_k8.yaml``) one task is built per mode from the same seed -- the same initial weights -- and
the modes step in turn on the same batches (fp32 step i, bf16 step i, ...), so a busy shared machine slows them
alike and the losses can be compared step by step. The step is the task's own ``train_step`` (forward,
losses, backward, Adam; ESRGAN: G and D parts); batches come from the task's own training data (its first
``warmup + steps`` batches, prepared before timing).

Modes: ``fp32`` (eager, NCHW: on the CPU the task uses channels_last only with bf16), ``bf16+cl`` (bf16 autocast
and channels_last, ``train.precision: bf16``), ``bf16+cl+compile`` (``train.compile: true``; compilation
happens in the warm-up steps). Reported per config and mode: median wall seconds per iteration, the median
per-step ratio of the first mode's time to this mode's (wall and process CPU time), and the mean of each
logged scalar over the timed steps (loss; SRFlow: bits per pixel -- the NLL -- stays float32 under autocast).

The paper's ESRGAN step (23-block G, VGG-128 D, VGG19 conv5_4 perceptual loss; random weights written to a
temporary folder) is ``--paper-esrgan``; shrink it with ``--set task.data.train.batch_size=2`` on a CPU.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/train_step.py                       # shipped CPU recipes, fp32 vs bf16+cl
    python benchmarks/train_step.py configs/srflow_x4_small_k8.yaml --steps 40  # one config, more steps
    python benchmarks/train_step.py --paper-esrgan --device cuda --modes fp32,bf16+cl,bf16+cl+compile
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchcommon import LoadRange, cpu_model, machine

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CPU_CONFIGS = (
    "configs/rrdb_psnr_x4_cpu.yaml",
    "configs/esrgan_x4_small.yaml",
    "configs/srflow_x4_small_k8.yaml",
)
MODES = {
    "fp32": ["train.precision=fp32", "train.channels_last=false", "train.compile=false"],
    "bf16+cl": ["train.precision=bf16", "train.channels_last=true", "train.compile=false"],
    "bf16+cl+compile": ["train.precision=bf16", "train.channels_last=true", "train.compile=true"],
}
NOT_AVERAGED = ("skipped", "skip_reason", "rrdb_frozen", "lr")


def write_random_weights(folder: Path) -> tuple[Path, Path]:
    """A random paper-size RRDBNet as a gensr checkpoint and random VGG19 weights (torchvision layout)."""
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.models.registry import arch_of, build_model, model_config_dict
    from gensr.nn.vgg import build_vgg19_features

    torch.manual_seed(0)
    g = build_model("rrdbnet", {"scale": 4, "nf": 64, "nb": 23, "gc": 32})
    g_path = save_checkpoint(folder / "psnr.safetensors", g.state_dict(), arch_of(g), model_config_dict(g))
    vgg = {f"features.{k}": v for k, v in build_vgg19_features().state_dict().items()}
    vgg_path = folder / "vgg19-random.pth"
    torch.save(vgg, vgg_path)
    return g_path, vgg_path


def build_task(config: Path, mode: str, device: str, overrides: list[str], out_dir: Path):
    """The config's task for ``mode``, seeded so that every mode starts from the same weights."""
    from gensr.engine.config import load_run_config
    from gensr.engine.distributed import DistInfo
    from gensr.tasks import get_task_class

    sets = [*overrides, *MODES[mode], f"train.device={device}", f"output_dir={out_dir / mode}"]
    run = load_run_config(config, sets)
    torch.manual_seed(run.seed)
    return get_task_class(run.task_kind).from_config(run, DistInfo(device=torch.device(device)))


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_config(config: Path, modes: list[str], args, out_dir: Path) -> list[dict]:
    tasks = {m: build_task(config, m, args.device, args.set, out_dir) for m in modes}
    first = tasks[modes[0]]
    data = first.train_data(first.run.seed, 0, 0, 1)
    n_batches = (args.warmup + args.steps) * first.batches_per_step
    batches = list(itertools.islice(data, n_batches))
    wall = {m: [] for m in modes}
    cpu = {m: [] for m in modes}
    logs = {m: [] for m in modes}
    for step in range(args.warmup + args.steps):
        chunk = batches[step * first.batches_per_step : (step + 1) * first.batches_per_step]
        for m in modes:
            _sync(args.device)
            w0, c0 = time.perf_counter(), time.process_time()
            stats = tasks[m].train_step(iter(chunk))
            _sync(args.device)
            if step >= args.warmup:
                wall[m].append(time.perf_counter() - w0)
                cpu[m].append(time.process_time() - c0)
                logs[m].append(stats)
    rows = []
    for m in modes:
        scalars = {k: statistics.fmean(s[k] for s in logs[m]) for k in logs[m][0] if k not in NOT_AVERAGED}
        diffs = [a["loss"] - b["loss"] for a, b in zip(logs[m], logs[modes[0]], strict=True)]
        se = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
        rows.append({
            "config": config.name, "mode": m, "s_per_it": statistics.median(wall[m]),
            "loss_diff": statistics.fmean(diffs), "loss_diff_se": se,
            "x_wall": statistics.median(a / b for a, b in zip(wall[modes[0]], wall[m], strict=True)),
            "x_cpu": statistics.median(a / b for a, b in zip(cpu[modes[0]], cpu[m], strict=True)),
            "skipped": sum(int(s.get("skipped", 0)) for s in logs[m]), "scalars": scalars,
        })  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="*", help="run configs (default: the shipped CPU recipes)")
    p.add_argument("--modes", default="fp32,bf16+cl", help=f"comma-separated, of {', '.join(MODES)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    p.add_argument("--paper-esrgan", action="store_true", help="configs/esrgan_x4.yaml with random G/VGG weights")
    args = p.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",")]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        p.error(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(MODES)}")
    torch.set_num_threads(args.threads)
    load = LoadRange()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gensr-bench-") as tmp:
        configs = [Path(c) for c in args.configs]
        if args.paper_esrgan:
            g_path, vgg_path = write_random_weights(Path(tmp))
            args.set += [f"task.model.pretrained={g_path}", f"task.perceptual.weights_path={vgg_path}"]
            configs.append(ROOT / "configs" / "esrgan_x4.yaml")
        if not configs:
            configs = [ROOT / c for c in SHIPPED_CPU_CONFIGS]
        for config in configs:
            print(f"{config.name}: {len(modes)} modes, {args.warmup} + {args.steps} steps ...", file=sys.stderr)
            load.sample()
            rows += bench_config(config, modes, args, Path(tmp))
            load.sample()
    print(f"\nmachine: {machine()}\ncpu: {cpu_model()}; load average (1 min) during the run: {load}")
    print(f"command: python benchmarks/train_step.py {' '.join(sys.argv[1:])}\n")
    print(f"| config | mode | s/iteration (median) | x {modes[0]} (wall) | x {modes[0]} (CPU time) | mean over the "
          f"timed steps | loss - {modes[0]} loss (per step: mean +- s.e.) | skipped |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        scalars = ", ".join(f"{k} {v:.4f}" for k, v in r["scalars"].items())
        print(f"| {r['config']} | {r['mode']} | {r['s_per_it']:.3f} | {r['x_wall']:.2f} | {r['x_cpu']:.2f} | "
              f"{scalars} | {r['loss_diff']:+.4f} +- {r['loss_diff_se']:.4f} | {r['skipped']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
