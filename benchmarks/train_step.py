"""Time and peak memory of one ESRGAN training iteration at the paper's size, through the real task.

The step is :meth:`gensr.tasks.esrgan.ESRGANTask.train_step` (G part with D frozen, D part, both Adam steps)
with the paper's setting: batch 16, HR patch 128 (LR 32), 23-block RRDBNet (nf 64, gc 32), the VGG-128
discriminator, VGG19 conv5_4 perceptual loss + 5e-3 RaGAN + 1e-2 L1. All weights are random (a random
"PSNR" generator and random VGG19 weights written to a temporary folder); speed does not depend on them.
Batches are random tensors on the host, copied to the device inside the step as in training.

Configurations:

* CPU (always, unless ``--skip-cpu``): eager fp32. The paper size is slow on a CPU: shrink it with
  ``--cpu-batch`` / ``--cpu-steps``. Peak memory is the process's peak resident set size (``getrusage``),
  and its rise over the resident size before the first step.
* CUDA (when present): eager fp32 (PyTorch defaults: cuDNN may use TF32), bf16 autocast + channels_last,
  and bf16 + channels_last + ``torch.compile`` (compilation happens in the warm-up steps, not timed).
  Peak memory is ``torch.cuda.max_memory_allocated`` over the timed steps.

Prints one Markdown table (ms per iteration: median and mean over the timed steps) with the machine.

Usage::

    python benchmarks/train_step.py                               # CPU (paper size!) + CUDA if present
    python benchmarks/train_step.py --cpu-batch 2 --cpu-steps 2   # a quick CPU check
    python benchmarks/train_step.py --skip-cpu --steps 20         # GPU only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchcommon import machine, max_rss_bytes


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


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


def run_config(g_path: Path, vgg_path: Path, device: str, batch: int, patch: int, precision: str,
               channels_last: bool, compile_: bool, out_dir: Path):  # fmt: skip
    from gensr.config import from_dict
    from gensr.engine.config import RunConfig

    tree = {
        "name": "bench", "task": "esrgan", "scale": 4, "output_dir": str(out_dir),
        "model": {"arch": "rrdbnet", "config": {"scale": 4, "nf": 64, "nb": 23, "gc": 32},
                  "pretrained": str(g_path)},
        "data": {"train": {"patch_size": patch, "batch_size": batch}},
        "optim": {"lr": 1e-4, "betas": [0.9, 0.999]},
        "train": {"device": device, "precision": precision, "channels_last": channels_last, "compile": compile_},
        "task_options": {
            "perceptual": {"kind": "vgg", "layers": "esrgan", "weights_path": str(vgg_path)},
            "discriminator": {"arch": "vgg_discriminator", "config": {"nf": 64, "input_size": patch}},
        },
    }  # fmt: skip
    return from_dict(RunConfig, tree, where="benchmark config")


def bench(g_path: Path, vgg_path: Path, device: str, mode: str, batch: int, patch: int, steps: int,
          warmup: int, out_dir: Path) -> dict:  # fmt: skip
    from gensr.engine.distributed import DistInfo
    from gensr.tasks.esrgan import ESRGANTask

    precision, channels_last, compile_ = {
        "fp32": ("fp32", False, False),
        "bf16+cl": ("bf16", True, False),
        "bf16+cl+compile": ("bf16", True, True),
    }[mode]
    cfg = run_config(g_path, vgg_path, device, batch, patch, precision, channels_last, compile_, out_dir)
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    task = ESRGANTask(cfg, DistInfo(device=dev))
    gen = torch.Generator().manual_seed(0)
    batches = [
        {"lr": torch.rand(batch, 3, patch // 4, patch // 4, generator=gen),
         "hr": torch.rand(batch, 3, patch, patch, generator=gen)}
        for _ in range(2)
    ]  # fmt: skip

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    rss0 = _rss_bytes()
    for i in range(warmup):
        task.train_step(batches[i % 2])
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    times, skipped = [], 0
    for i in range(steps):
        t0 = time.perf_counter()
        stats = task.train_step(batches[i % 2])  # returns Python floats: the step ends with a device sync
        sync()
        times.append(time.perf_counter() - t0)
        skipped += int(stats["skipped"])
    if dev.type == "cuda":
        memory = f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB (max allocated)"
    else:
        peak = max_rss_bytes()
        memory = f"{peak / 2**30:.2f} GiB peak RSS (+{max(peak - rss0, 0) / 2**30:.2f} in the steps)"
    del task
    return {
        "device": str(dev) if dev.type == "cpu" else torch.cuda.get_device_name(dev),
        "mode": mode,
        "batch": batch,
        "patch": patch,
        "steps": steps,
        "median_ms": 1000 * statistics.median(times),
        "mean_ms": 1000 * statistics.fmean(times),
        "img_per_s": batch / statistics.median(times),
        "memory": memory,
        "skipped": skipped,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=16, help="batch size (paper: 16)")
    p.add_argument("--patch", type=int, default=128, help="HR patch side, a power of two (paper: 128)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--cpu-batch", type=int, default=None, help="batch on the CPU (default: --batch)")
    p.add_argument("--cpu-steps", type=int, default=None, help="timed steps on the CPU (default: --steps)")
    p.add_argument("--cpu-warmup", type=int, default=1, help="untimed steps on the CPU")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-cuda", action="store_true")
    p.add_argument("--modes", default="fp32,bf16+cl,bf16+cl+compile", help="CUDA modes, comma-separated")
    args = p.parse_args(argv)

    runs: list[tuple[str, str, int, int, int]] = []
    if not args.skip_cpu:
        runs.append(("cpu", "fp32", args.cpu_batch or args.batch, args.cpu_steps or args.steps, args.cpu_warmup))
    if not args.skip_cuda and torch.cuda.is_available():
        for mode in args.modes.split(","):
            runs.append(("cuda", mode.strip(), args.batch, args.steps, args.warmup))
    if not runs:
        print("nothing to run (no CUDA device and --skip-cpu)", file=sys.stderr)
        return 1

    rows = []
    with tempfile.TemporaryDirectory(prefix="gensr-bench-") as tmp:
        g_path, vgg_path = write_random_weights(Path(tmp))
        for device, mode, batch, steps, warmup in runs:
            print(f"running {device} {mode} batch {batch} ({warmup} warm-up + {steps} timed steps) ...",
                  file=sys.stderr, flush=True)  # fmt: skip
            try:
                rows.append(bench(g_path, vgg_path, device, mode, batch, args.patch, steps, warmup, Path(tmp)))
            except torch.OutOfMemoryError:
                print(f"  {device} {mode}: out of memory", file=sys.stderr)

    print(f"\nESRGAN training step (23-block RRDBNet x4, VGG-{args.patch} D, VGG19 conv5_4 perceptual + RaGAN + L1, "
          f"Adam G and D)\n\nMachine: {machine()}\n")  # fmt: skip
    print("| device | precision | batch | HR patch | ms/iter (median) | ms/iter (mean) | HR patches/s | peak memory |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['device']} | {r['mode']} | {r['batch']} | {r['patch']} | {r['median_ms']:.1f} | "
            f"{r['mean_ms']:.1f} | {r['img_per_s']:.2f} | {r['memory']} |"
        )
    if any(r["skipped"] for r in rows):
        print("\nwarning: some timed steps were skipped (non-finite loss)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
