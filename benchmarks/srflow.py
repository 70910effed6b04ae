"""Speed and peak memory of SRFlow sampling and training (the released 4x layout, 39.5M params, random weights).

Two configurations per device:

* **fp32 eager** (the official code's way): fp32, one sample per decoder pass, the 1x1-conv inverses
  recomputed (``torch.inverse`` in float64) at every call, NCHW.
* **fast**: the same :class:`gensr.inference.flow_sampling.FlowSampler` with all samples of an image in one
  decoder pass and the cached inverses; on CUDA also bf16 autocast for the convolutions (flow state,
  log-determinants, scales and inverses stay float32) and channels_last; ``--compile`` adds
  ``torch.compile`` of the RRDB encoder and the coupling networks.

Sampling figure: milliseconds per output megapixel per sample (temperature 0.9, ``--samples`` per image,
the LR encoder run once per image in both configurations), median of the timed repetitions after one
warm-up. Training figure: milliseconds per optimiser step (Adam, NLL with dequantisation noise) of a batch of
HR crops, default 12 x 160 px as released; the CPU defaults shrink batch and size (``--cpu-train-batch``,
``--cpu-train-size``). Peak memory: ``torch.cuda.max_memory_allocated`` on CUDA; on the CPU the rise of the
process's maximum resident set size during the first (warm-up) call (so it depends on the order of the
cases). Besides wall time the process CPU time is reported: on a shared machine it is the steadier number
(with one thread it is the compute cost; with several it is their sum).

Usage::

    python benchmarks/srflow.py                                   # CPU (small sizes), plus CUDA if present
    python benchmarks/srflow.py --cpu-lr-size 16x16 --cpu-train-size 32 --cpu-train-batch 1
    python benchmarks/srflow.py --skip-cpu --compile              # GPU only, with torch.compile
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time

import torch
from benchcommon import current_rss_bytes, machine, max_rss_bytes, parse_size

from gensr.imresize import imresize
from gensr.inference.flow_sampling import FlowSampler
from gensr.models.registry import build_model
from gensr.nn.flow import CondAffineSeparatedAndCond, _InvConvBase


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _no_inverse_cache(model: torch.nn.Module) -> None:
    """Make every 1x1 conv recompute its inverse at each call (the official behaviour)."""
    for m in model.modules():
        if isinstance(m, _InvConvBase):
            m._can_cache = lambda: False  # instance attribute shadows the method


def _compile(model: torch.nn.Module) -> None:
    model.RRDB.compile()
    for m in model.modules():
        if isinstance(m, CondAffineSeparatedAndCond):
            m.fAffine.compile()
            m.fFeatures.compile()


def _label(device: torch.device, fast: bool, compiled: bool) -> str:
    if not fast:
        return "fp32 eager"
    parts = ["bf16 autocast", "channels_last"] if device.type == "cuda" else ["fp32"]
    parts += ["batched samples", "cached inverses"]
    if compiled:
        parts.append("compile")
    return " + ".join(parts)


def bench_sampling(device: str, fast: bool, lr_hw: tuple[int, int], samples: int, reps: int, compiled: bool) -> dict:
    torch.manual_seed(0)
    net = build_model("srflow")
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    sampler = FlowSampler(
        net,
        device=dev,
        precision="bf16" if fast and cuda else "fp32",
        batch_size=samples if fast else 1,
        channels_last=fast and cuda,
    )
    if not fast:
        _no_inverse_cache(net)
    if compiled:
        _compile(net)
    if cuda:
        torch.backends.cudnn.benchmark = True
    lr = torch.rand(1, 3, *lr_hw)
    s = sampler.scale
    out_mp = lr_hw[0] * lr_hw[1] * s**2 / 1e6

    rss_before = current_rss_bytes()
    t0 = time.perf_counter()
    sampler.sample(lr, temperature=0.9, num_samples=samples, seed=0)
    first_s = time.perf_counter() - t0
    peak_cpu = max(0, max_rss_bytes() - rss_before)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times = [], []
    for r in range(reps):
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        sampler.sample(lr, temperature=0.9, num_samples=samples, seed=r + 1)
        _sync(dev)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(dev) if cuda else peak_cpu
    return {
        "what": "sampling",
        "device": dev.type,
        "config": _label(dev, fast, compiled),
        "shape": f"LR {lr_hw[1]}x{lr_hw[0]} -> {lr_hw[1] * s}x{lr_hw[0] * s}, {samples} samples",
        "value": statistics.median(times) * 1e3 / (out_mp * samples),
        "cpu_value": statistics.median(cpu_times) * 1e3 / (out_mp * samples),
        "unit": "ms/MP/sample",
        "first_s": first_s,
        "peak_gib": peak / 2**30,
        "reps": reps,
    }


def bench_training(device: str, fast: bool, batch: int, size: int, steps: int, compiled: bool) -> dict:
    torch.manual_seed(0)
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    net = build_model("srflow").to(dev).train()
    if fast and cuda:
        net.to(memory_format=torch.channels_last)
    if compiled:
        _compile(net)
    if cuda:
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2.5e-4, betas=(0.9, 0.99))
    hr = torch.rand(batch, 3, size, size, device=dev)
    lr = imresize(hr, 1.0 / net.scale).clamp(0, 1)
    if fast and cuda:
        hr = hr.contiguous(memory_format=torch.channels_last)
        lr = lr.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if fast and cuda else contextlib.nullcontext()

    def step() -> float:
        with autocast:
            loss = net(hr, lr)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach())

    rss_before = current_rss_bytes()
    t0 = time.perf_counter()
    step()  # ActNorm data init, cuDNN tuning / compilation
    first_s = time.perf_counter() - t0
    peak_cpu = max(0, max_rss_bytes() - rss_before)
    if cuda:
        torch.cuda.reset_peak_memory_stats(dev)
    times, cpu_times, losses = [], [], []
    for _ in range(steps):
        _sync(dev)
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        _sync(dev)
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = torch.cuda.max_memory_allocated(dev) if cuda else peak_cpu
    label = _label(dev, fast, compiled).replace(" + batched samples + cached inverses", "")
    return {
        "what": "training",
        "device": dev.type,
        "config": label,
        "shape": f"batch {batch} x {size} px HR",
        "value": statistics.median(times) * 1e3,
        "cpu_value": statistics.median(cpu_times) * 1e3,
        "unit": "ms/iter",
        "first_s": first_s,
        "peak_gib": peak / 2**30,
        "reps": steps,
        "loss": losses[-1],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-lr-size", type=parse_size, default=(24, 24), metavar="WxH", help="CPU LR (default 24x24)")
    p.add_argument("--gpu-lr-size", type=parse_size, default=(256, 256), metavar="WxH", help="GPU LR (default 256x256)")
    p.add_argument("--samples", type=int, default=4, help="samples per image (default 4)")
    p.add_argument("--reps", type=int, default=1, help="timed repetitions on the CPU (default 1)")
    p.add_argument("--gpu-reps", type=int, default=5, help="timed repetitions on the GPU (default 5)")
    p.add_argument("--train-batch", type=int, default=12, help="GPU training batch (default 12)")
    p.add_argument("--train-size", type=int, default=160, help="GPU training HR crop (default 160)")
    p.add_argument("--cpu-train-batch", type=int, default=2, help="CPU training batch (default 2)")
    p.add_argument("--cpu-train-size", type=int, default=64, help="CPU training HR crop (default 64)")
    p.add_argument("--train-steps", type=int, default=3, help="timed training steps (default 3)")
    p.add_argument("--compile", action="store_true", help="also run the fast GPU cases with torch.compile")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--skip-sample", action="store_true")
    args = p.parse_args(argv)

    cases: list = []  # (function, arguments)
    if not args.skip_cpu:
        for fast in (False, True):
            if not args.skip_sample:
                cases.append((bench_sampling, ("cpu", fast, args.cpu_lr_size, args.samples, args.reps, False)))
            if not args.skip_train and not fast:  # on the CPU the fast training step is the eager one
                steps = max(1, args.train_steps - 1)
                cases.append((bench_training, ("cpu", fast, args.cpu_train_batch, args.cpu_train_size, steps, False)))
    if torch.cuda.is_available():
        variants = [(False, False), (True, False)] + ([(True, True)] if args.compile else [])
        for fast, comp in variants:
            if not args.skip_sample:
                cases.append((bench_sampling, ("cuda", fast, args.gpu_lr_size, args.samples, args.gpu_reps, comp)))
            if not args.skip_train:
                train = ("cuda", fast, args.train_batch, args.train_size, args.train_steps, comp)
                cases.append((bench_training, train))
    else:
        print("(no CUDA device: GPU cases skipped)", file=sys.stderr)

    rows = []
    for fn, fn_args in cases:
        r = fn(*fn_args)
        rows.append(r)
        print(
            f"{r['what']:<8} {r['device']:>4} {r['config']:<62} {r['shape']}: {r['value']:.1f} {r['unit']} "
            f"(process CPU time {r['cpu_value']:.1f}), "
            f"peak {r['peak_gib']:.3f} GiB, first call {r['first_s']:.2f} s, median of {r['reps']}",
            file=sys.stderr,
            flush=True,
        )
    desc = machine()
    print(f"machine: {desc}\n")
    print("| task | device | configuration | shape | wall time | process CPU time | peak memory |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        kind = "max_memory_allocated" if r["device"] == "cuda" else "max RSS rise"
        print(
            f"| {r['what']} | {r['device']} | {r['config']} | {r['shape']} | {r['value']:.1f} {r['unit']} | "
            f"{r['cpu_value']:.1f} {r['unit']} | "
            f"{r['peak_gib']:.3f} GiB ({kind}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
