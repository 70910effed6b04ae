"""Time and peak memory of BigGAN training iterations and of class-conditional generation, through the real code.

* **Training**: :meth:`gensr.tasks.biggan.BigGANTask.train_step` with one D update and one G update per
  iteration ("D+G", ``d_steps 1``, no accumulation), batch 64 for D's real and fake halves and for G, hinge loss,
  Adam; random uint8 images as the data (speed does not depend on them).
* **Generation**: :func:`gensr.inference.generation.generate` (no grad, eval mode, fp32, uint8 output), images per
  second (measured on the fp32 rows).

Configurations:

* CPU (unless ``--skip-cpu``), one thread by default (``--threads``): 32 px at ``--cpu-ch`` widths (default 16,
  the CPU recipe of ``configs/biggan_cifar_cpu.yaml``; 64 is the GPU CIFAR recipe and ~16x slower), fp32 and bf16
  autocast + channels_last. Times are wall time and process CPU time per iteration (on a machine shared with
  other jobs the CPU time is the better estimate of a dedicated thread). Peak memory: the process's peak RSS.
* CUDA (when present): 32 px ch 64 (CIFAR recipe) and 128 px ch 96 (the ImageNet recipe: hier, shared, attention
  at 64), fp32 and bf16. Peak memory: ``torch.cuda.max_memory_allocated`` over the timed steps.

Prints one Markdown table with the machine. Never fails on a slow machine (there are no time limits); a
configuration that runs out of memory is listed as such.

Usage::

    python benchmarks/biggan.py                          # CPU 32 px ch 16 (+ CUDA rows when a GPU is present)
    python benchmarks/biggan.py --cpu-ch 16,32 --steps 3
    python benchmarks/biggan.py --skip-cpu --steps 20    # GPU only
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from benchcommon import machine, max_rss_bytes

IMAGENET128 = {"resolution": 128, "ch": 96, "dim_z": 120, "shared": True, "hier": True, "attn": [64], "init": "ortho"}
CIFAR = {"resolution": 32, "ch": 64, "dim_z": 128, "shared": False, "hier": False, "attn": [], "init": "N02"}


def write_data(folder: Path, resolution: int) -> Path:
    """640 random uint8 images of ``resolution`` px in 10 classes, as an x/y .npz."""
    path = folder / f"random_{resolution}.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (640, resolution, resolution, 3), dtype=np.uint8)
        np.savez(path, x=x, y=np.arange(640, dtype=np.int64) % 10)
    return path


def make_task(folder: Path, generator: dict, n_classes: int, device: str, precision: str, batch: int):
    from gensr.engine.config import load_run_config
    from gensr.engine.distributed import DistInfo
    from gensr.tasks.biggan import BigGANTask

    cfg = {
        "name": "bench", "output_dir": str(folder / "run"),
        "task": {
            "kind": "biggan", "generator": {**generator, "n_classes": n_classes},
            "discriminator": {"attn": generator["attn"]},
            "data": {"train": str(write_data(folder, generator["resolution"])), "batch_size": batch},
            "d_steps": 1, "accumulate": 1, "sv_log_every": 0, "eval": {"classifier": None},
        },
        "optim": {"lr": 1e-4, "betas": [0.0, 0.999], "networks": {"d": {"lr": 4e-4}}},
        "train": {"device": device, "precision": precision, "channels_last": True},
    }  # fmt: skip
    (folder / "bench.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(0)
    return BigGANTask.from_config(load_run_config(folder / "bench.yaml"), DistInfo(device=torch.device(device)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_train(task, steps: int, warmup: int) -> dict:
    dev = task.device
    batches = task.train_data(0, 0, 0, 1)
    for _ in range(warmup):
        task.train_step(batches)
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        task.train_step(batches)  # returns Python floats: the step ends with a device sync
        _sync(dev)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_ms": 1000 * statistics.median(wall), "cpu_ms": 1000 * statistics.median(cpu), "memory": _memory(dev)}


def bench_generate(task, images: int, batch: int) -> dict:
    from gensr.engine.distributed import unwrap
    from gensr.inference.generation import generate

    g = unwrap(task.networks["g"]).eval()
    dev = task.device
    generate(g, [0], min(batch, images), batch_size=batch)  # warm-up
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    per_class = max(1, images // 10)
    t0 = time.perf_counter()
    x, _ = generate(g, list(range(10)), per_class, batch_size=batch)
    _sync(dev)
    return {"img_per_s": len(x) / (time.perf_counter() - t0), "memory": _memory(dev)}


def _memory(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(dev) / 2**30:.2f} GiB"
    return f"{max_rss_bytes() / 2**30:.2f} GiB RSS"


def runs(args: argparse.Namespace) -> list[tuple[str, str, dict, int, str]]:
    """(device, label, generator settings, n_classes, precision) to run."""
    out = []
    if not args.skip_cpu:
        for ch in (int(c) for c in args.cpu_ch.split(",")):
            for precision in ("fp32", "bf16"):
                out.append(("cpu", f"32 px ch {ch}", {**CIFAR, "ch": ch, "shared": True, "hier": True}, 10, precision))
    if not args.skip_cuda and torch.cuda.is_available():
        for precision in ("fp32", "bf16"):
            out.append(("cuda", "32 px ch 64 (CIFAR)", CIFAR, 10, precision))
            out.append(("cuda", "128 px ch 96 (ImageNet)", IMAGENET128, 1000, precision))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=64, help="training batch (D real, D fake and G; default 64)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    p.add_argument("--images", type=int, default=500, help="images generated for the images/s figure")
    p.add_argument("--gen-batch", type=int, default=100, help="generation batch (default 100)")
    p.add_argument("--cpu-ch", default="16", help="CPU widths, comma-separated (default 16)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-cuda", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    todo = runs(args)
    if not todo:
        print("nothing to run (no CUDA device and --skip-cpu)", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="gensr-bench-biggan-") as tmp:
        for device, label, generator, n_classes, precision in todo:
            print(f"running {device} {label} {precision} ...", file=sys.stderr, flush=True)
            row = {"device": device, "label": label, "precision": precision}
            try:
                task = make_task(Path(tmp), generator, n_classes, device, precision, args.batch)
                row.update(bench_train(task, args.steps, args.warmup))
                if precision == "fp32":  # generation always runs in fp32 (the eval path)
                    row["gen"] = bench_generate(task, args.images, args.gen_batch)
                del task
            except torch.OutOfMemoryError:
                row["oom"] = True
                if device == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
    print(f"\nBigGAN: training iteration (1 D update + 1 G update, batch {args.batch}, hinge, Adam) and generation\n")
    print(f"Machine: {machine()}\n")
    print("| device | model | precision | train ms/iter (wall) | train ms/iter (CPU time) | train peak memory "
          "| generation images/s | generation peak memory |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r.get("oom"):
            print(f"| {r['device']} | {r['label']} | {r['precision']} | out of memory | | | | |")
            continue
        name = r["device"] if r["device"] == "cpu" else torch.cuda.get_device_name(0)
        gen = f"{r['gen']['img_per_s']:.1f} | {r['gen']['memory']}" if "gen" in r else "(fp32 row) |"
        print(f"| {name} | {r['label']} | {r['precision']} | {r['wall_ms']:.0f} | {r['cpu_ms']:.0f} | {r['memory']} "
              f"| {gen} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
