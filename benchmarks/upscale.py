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

Side by side with the official ESRGAN code (``--official-esrgan DIR``, a folder holding ``RRDBNet_arch.py`` of
``xinntao/ESRGAN``; it is imported from there, never copied): the official forward (fp32, NCHW, as its test.py
runs it) and gensr's :class:`Upscaler` (end to end, fp32 and bf16) run the SAME weights (official key layout,
read through gensr's checkpoint loader) in one process, interleaved round by round, at each thread count.
Two models: the paper's x4 RRDBNet (nf 64, nb 23, gc 32; random weights) and the shipped ``default`` (nf 32,
nb 4, gc 16; its own weights). Reported: seconds per output megapixel (median wall time), the speed-up over the
official forward (median of the per-round ratios, wall and process CPU time: robust on a shared machine), and
the fraction of this core's practical peak (a 256->256 3x3 oneDNN convolution timed in the same process)::

    python benchmarks/upscale.py --official-esrgan /tmp/esrgan_official --threads 1,2 --reps 5
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from benchcommon import LoadRange, cpu_model, current_rss_bytes, machine, max_rss_bytes, parse_size

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


# ------------------------------------------------------------------------------------ official vs gensr


def macs_per_lr_pixel(nf: int, nb: int, gc: int, in_ch: int = 3, out_ch: int = 3) -> int:
    """Multiply-accumulates of the x4 RRDBNet per LR pixel (3x3 convs; up/HR convs at 4x or 16x the pixels)."""
    rdb = sum((nf + k * gc) * gc for k in range(4)) + (nf + 4 * gc) * nf
    lr = in_ch * nf + 3 * nb * rdb + nf * nf
    return 9 * (lr + (4 + 16 + 16) * nf * nf + 16 * nf * out_ch)


def load_official(folder: Path):
    """The official ``RRDBNet_arch`` module, imported from ``folder`` (not copied, not put on sys.path)."""
    path = folder / "RRDBNet_arch.py"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (--official-esrgan takes a checkout of xinntao/ESRGAN)")
    spec = importlib.util.spec_from_file_location("esrgan_official_arch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _official_names(sd: dict) -> dict:
    """gensr (BasicSR v1) RRDBNet keys -> the official intermediate layout (``RRDB_trunk.i.RDBk.convj``)."""
    top = {"conv_body": "trunk_conv", "conv_up1": "upconv1", "conv_up2": "upconv2", "conv_hr": "HRconv"}
    out = {}
    for key, value in sd.items():
        head, _, rest = key.partition(".")
        if head == "body":
            i, rdb, conv = rest.split(".", 2)
            key = f"RRDB_trunk.{i}.{rdb.upper()}.{conv}"
        else:
            key = f"{top.get(head, head)}.{rest}"
        out[key] = value
    return out


def paired_models(official_mod, cfg: dict, shipped: str | None, tmp: Path):
    """(official RRDBNet, gensr RRDBNet) holding the same weights; gensr's goes through its official-file loader."""
    from gensr.checkpoints.loader import load_model

    torch.manual_seed(0)
    official = official_mod.RRDBNet(3, 3, cfg["nf"], cfg["nb"], cfg["gc"]).eval()
    if shipped is not None:  # the shipped weights, renamed to the official layout
        official.load_state_dict(_official_names(load_model(shipped).state_dict()), strict=True)
    path = tmp / "official.pth"
    torch.save(official.state_dict(), path)
    return official, load_model(path).eval()


def _timed(fn) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def peak_gflops(dtype: torch.dtype, hw: tuple[int, int] = (64, 64), reps: int = 3) -> float:
    """Best GFLOP/s per thread of a 256 -> 256 3x3 channels_last oneDNN convolution: the practical peak (on a
    Zen 4 core 110 fp32 / 220 bf16, against 115 / 230 of a register-only FMA / VDPBF16PS loop)."""
    conv = torch.nn.Conv2d(256, 256, 3, 1, 1).to(dtype=dtype, memory_format=torch.channels_last).eval()
    x = torch.rand(1, 256, *hw, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        best = min(_timed(lambda: conv(x))[1] for _ in range(reps))  # CPU time: the core's speed, not its share
    return 2 * 9 * 256 * 256 * hw[0] * hw[1] / best / 1e9 / torch.get_num_threads()


def _variants(official, gensr_net, x: torch.Tensor, ablations: bool) -> dict:
    """name -> callable, each producing the clamped float32 output of ``x``."""
    import gensr.nn.rrdb as rrdb_mod

    ups = {p: Upscaler(copy.deepcopy(gensr_net), device="cpu", precision=p) for p in ("fp32", "bf16")}
    out = {
        "official fp32": lambda: official(x).float().clamp_(0, 1),
        "gensr fp32": lambda: ups["fp32"].run(x),
        "gensr bf16": lambda: ups["bf16"].run(x),
    }
    if ablations:  # what the changes bought: the previous paths (unfused activations; bf16 autocast on fp32 weights)
        previous = Upscaler(copy.deepcopy(gensr_net), device="cpu", precision="bf16")
        previous.runner.low_model = None  # bf16 autocast on the fp32 weights

        def unfused(fn):
            def call():
                rrdb_mod._fuse_failed.update((torch.float32, torch.bfloat16))
                try:
                    return fn()
                finally:
                    rrdb_mod._fuse_failed.clear()

            return call

        out["gensr fp32, unfused (before)"] = unfused(out["gensr fp32"])
        out["gensr bf16 autocast (before)"] = lambda: previous.run(x)  # autocast never fuses
    return out


def compare_official(args) -> int:
    official_mod = load_official(Path(args.official_esrgan).expanduser())
    models = [("x4 RRDBNet nf64 nb23 gc32 (random)", {"nf": 64, "nb": 23, "gc": 32}, None, args.size)]
    if not args.skip_default:
        models.append(("shipped default nf32 nb4 gc16", {"nf": 32, "nb": 4, "gc": 16}, "default", args.default_size))
    load = LoadRange()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gensr-bench-") as tmp, torch.no_grad():
        for label, cfg, shipped, hw in models:
            official, gnet = paired_models(official_mod, cfg, shipped, Path(tmp))
            torch.manual_seed(1)
            x = torch.rand(1, 3, *hw)
            ref = official(x).clamp(0, 1)
            flop_mp = 2 * macs_per_lr_pixel(**cfg) / 16 * 1e6
            mp = hw[0] * hw[1] * 16 / 1e6
            for threads in args.threads:
                torch.set_num_threads(threads)
                load.sample()
                peaks = {"fp32": peak_gflops(torch.float32), "bf16": peak_gflops(torch.bfloat16)}
                variants = _variants(official, gnet, x, args.ablations)
                diffs = {name: float((fn() - ref).abs().max()) for name, fn in variants.items()}  # also warms up
                wall = {name: [] for name in variants}
                cpu = {name: [] for name in variants}
                for _ in range(args.reps):
                    for name, fn in variants.items():
                        w, c = _timed(fn)
                        wall[name].append(w)
                        cpu[name].append(c)
                load.sample()
                for name in variants:
                    rows.append(_row(label, hw, threads, name, wall, cpu, mp, flop_mp, peaks, diffs[name]))
    _print_comparison(rows, load, args)
    return 0


def _row(label, hw, threads, name, wall, cpu, mp, flop_mp, peaks, diff) -> dict:
    ref = "official fp32"
    dtype = "bf16" if "bf16" in name else "fp32"
    per_thread_gflops = flop_mp / (statistics.median(cpu[name]) / mp) / 1e9 / threads
    return {
        "model": label,
        "size": f"{hw[1]}x{hw[0]} -> {hw[1] * 4}x{hw[0] * 4}",
        "threads": threads,
        "variant": name,
        "s_per_mp": statistics.median(wall[name]) / mp,
        "x_wall": statistics.median(o / v for o, v in zip(wall[ref], wall[name], strict=True)),
        "x_cpu": statistics.median(o / v for o, v in zip(cpu[ref], cpu[name], strict=True)),
        "peak": per_thread_gflops / peaks[dtype],
        "peak_gflops": peaks[dtype],
        "max_diff": diff,
    }


def _print_comparison(rows: list[dict], load: LoadRange, args) -> None:
    print(f"machine: {cpu_model()}; torch {torch.__version__}; load average (1 min) during the run: {load}")
    print(f"command: python benchmarks/upscale.py {' '.join(sys.argv[1:])}")
    print()
    print("| model | LR -> HR | threads | variant | s per output MP (wall) | x official (wall) | x official (CPU time) "
          "| of peak | max abs diff vs official fp32 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['model']} | {r['size']} | {r['threads']} | {r['variant']} | {r['s_per_mp']:.2f} | "
            f"{r['x_wall']:.2f} | {r['x_cpu']:.2f} | {100 * r['peak']:.0f} % of {r['peak_gflops']:.0f} GFLOP/s | "
            f"{r['max_diff']:.1e} |"
        )
    print()
    print("x official: median over rounds of (official time / variant time) in the same round. 'of peak': the "
          "variant's FLOP rate per thread (process CPU time) over the best rate of a 256->256 3x3 conv of that "
          "dtype timed in the same process.")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cpu-size", type=parse_size, default=(64, 64), metavar="WxH", help="CPU input (default 64x64)")
    p.add_argument("--gpu-size", type=parse_size, default=(270, 480), metavar="WxH", help="GPU input (480x270)")
    p.add_argument("--reps", type=int, default=2, help="timed repetitions on the CPU (median reported)")
    p.add_argument("--gpu-reps", type=int, default=20, help="timed repetitions on the GPU")
    p.add_argument("--compile", action="store_true", help="also run the GPU case with torch.compile")
    p.add_argument("--tile", type=int, default=0, help="tile size (0 = whole image)")
    p.add_argument("--skip-cpu", action="store_true")
    p.add_argument("--official-esrgan", metavar="DIR", help="compare with the official RRDBNet_arch.py in DIR")
    p.add_argument("--size", type=parse_size, default=(64, 64), metavar="WxH", help="LR size, 23-block net (64x64)")
    p.add_argument("--default-size", type=parse_size, default=(128, 128), metavar="WxH", help="LR size, default")
    p.add_argument("--threads", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2], help="e.g. 1,2")
    p.add_argument("--skip-default", action="store_true", help="only the 23-block net in the comparison")
    p.add_argument("--ablations", action="store_true", help="also time the previous bf16/fp32 paths")
    args = p.parse_args(argv)
    if args.official_esrgan:
        return compare_official(args)

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
