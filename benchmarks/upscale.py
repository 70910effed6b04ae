"""Speed and peak memory of ``gensr`` x4 upscaling with the paper's RRDBNet (23 blocks, random weights).

Prints, per configuration, milliseconds per output megapixel end to end (CPU tensor in -> clamped CPU float
tensor out, through :class:`gensr.inference.upscale.Upscaler`, host<->device copies included) and model
time alone, plus peak memory, then Markdown table rows for benchmarks/RESULTS.md.

* CPU (always): fp32 on a small input (default 64x64 -> 256x256), few repetitions. Peak memory is the rise
  of the process's maximum resident set size (``getrusage``) during the first, measured upscale, over the
  resident size with the model loaded.
* CUDA (when present): bf16 autocast + channels_last on 480x270 -> 1920x1080 (``--compile`` adds
  ``torch.compile``). Peak memory is ``torch.cuda.max_memory_allocated`` during the timed runs.
  On the CPU the runner uses channels_last too (oneDNN), so the label says so.

Usage::

    python benchmarks/upscale.py                      # CPU, plus CUDA when available
    python benchmarks/upscale.py --cpu-size 128x128 --reps 5
    python benchmarks/upscale.py --skip-cpu --compile # GPU only, with torch.compile
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from benchcommon import current_rss_bytes, machine, max_rss_bytes, parse_size

from gensr.inference.upscale import Upscaler
from gensr.models.registry import build_model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(
    device: str, precision: str, hw: tuple[int, int], reps: int, warmup: int, compile_model: bool, tile: int
) -> dict:
    torch.manual_seed(0)
    net = build_model("rrdbnet")  # x4, nf 64, nb 23, gc 32: 16,697,987 parameters
    up = Upscaler(net, device=device, precision=precision, tile=tile)
    dev = up.device
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if compile_model:
        up.runner.model = torch.compile(up.runner.model)
    x = torch.rand(1, 3, *hw)
    out_mp = hw[0] * hw[1] * up.scale**2 / 1e6

    rss_before = current_rss_bytes()
    t0 = time.perf_counter()
    up.run(x)  # first call: cuDNN tuning / compilation; on the CPU, the measured peak
    first_s = time.perf_counter() - t0
    peak_cpu = max(0, max_rss_bytes() - rss_before)
    for _ in range(warmup):
        up.run(x)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    end_to_end = []
    for _ in range(reps):
        _sync(dev)
        t0 = time.perf_counter()
        up.run(x)
        end_to_end.append(time.perf_counter() - t0)

    xd = up.runner._prepare(x)  # model time alone: input already on the device, output left there
    model_only = []
    with torch.no_grad():
        for _ in range(reps):
            _sync(dev)
            t0 = time.perf_counter()
            if up.runner.dtype == torch.float32:
                up.runner.model(xd)
            else:
                with torch.autocast(device_type=dev.type, dtype=up.runner.dtype):
                    up.runner.model(xd)
            _sync(dev)
            model_only.append(time.perf_counter() - t0)

    peak = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else peak_cpu
    return {
        "device": dev.type,
        "precision": up.precision
        + (" + channels_last" if up.runner.channels_last else "")
        + (" + compile" if compile_model else ""),
        "input": f"{hw[1]}x{hw[0]}",
        "output": f"{hw[1] * up.scale}x{hw[0] * up.scale}",
        "ms_per_mp": statistics.median(end_to_end) * 1e3 / out_mp,
        "model_ms_per_mp": statistics.median(model_only) * 1e3 / out_mp,
        "first_s": first_s,
        "peak_gib": peak / 2**30,
        "peak_kind": "max_memory_allocated" if dev.type == "cuda" else "max RSS rise",
        "reps": reps,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-size", type=parse_size, default=(64, 64), metavar="WxH", help="CPU input (default 64x64)")
    p.add_argument("--gpu-size", type=parse_size, default=(270, 480), metavar="WxH", help="GPU input (480x270)")
    p.add_argument("--reps", type=int, default=2, help="timed repetitions on the CPU (median reported)")
    p.add_argument("--gpu-reps", type=int, default=20, help="timed repetitions on the GPU")
    p.add_argument("--compile", action="store_true", help="also run the GPU case with torch.compile")
    p.add_argument("--tile", type=int, default=0, help="tile size (0 = whole image)")
    p.add_argument("--skip-cpu", action="store_true")
    args = p.parse_args(argv)

    runs = []
    if not args.skip_cpu:
        runs.append(bench("cpu", "fp32", args.cpu_size, args.reps, 0, False, args.tile))
    if torch.cuda.is_available():
        runs.append(bench("cuda", "bf16", args.gpu_size, args.gpu_reps, 5, False, args.tile))
        if args.compile:
            runs.append(bench("cuda", "bf16", args.gpu_size, args.gpu_reps, 5, True, args.tile))
    else:
        print("(no CUDA device: GPU case skipped)", file=sys.stderr)

    desc = machine()
    print(f"machine: {desc}")
    for r in runs:
        print(
            f"{r['device']:>4} {r['precision']:<28} {r['input']} -> {r['output']}: "
            f"{r['ms_per_mp']:.1f} ms/MP end to end, {r['model_ms_per_mp']:.1f} ms/MP model only, "
            f"peak {r['peak_gib']:.3f} GiB ({r['peak_kind']}), first call {r['first_s']:.2f} s, "
            f"median of {r['reps']}"
        )
    print()
    print("| machine | device | precision | input -> output | ms/MP end to end | model only | peak memory |")
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {desc} | {r['device']} | {r['precision']} | {r['input']} -> {r['output']} | "
            f"{r['ms_per_mp']:.1f} | {r['model_ms_per_mp']:.1f} | "
            f"{r['peak_gib']:.3f} GiB ({r['peak_kind']}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
