"""SRFlow sampling robustness: is every sample of every Set5, Set14 and BSD100 image consistent with its LR?

For every HR image (mod-cropped to the scale; LR = ``LR_bicubic/X4`` where the set has it (Set5), else the
MATLAB-exact bicubic downscale of the HR, ``gensr.imresize.imresize``), ``--samples`` (10) samples at
``--temperature`` (0.9) are drawn with seed = image index, exactly as ``gensr sample`` would draw them (the
sampler checks every sample and re-draws broken regions, see ``gensr.inference.flow_sampling``). Each sample
is rounded to uint8 (gray images: the channel mean, as ``gensr sample`` writes them) and scored by LR-PSNR:
RGB PSNR of its MATLAB-bicubic downscale against the LR (``gensr.metrics.fidelity.lr_psnr``).

Printed per set: images, samples, min / mean LR-PSNR, how many samples are below ``--min-lr-psnr`` (40 dB),
the lowest LR-PSNR of any 8 x 8 LR-pixel region of any returned sample (the sampler's own check, before uint8
rounding), the sampler's re-drawn regions and samples, images whose sampling raised GensrError, and the time. The exit
status is 1 when any sample is below the limit or any image failed.

    OMP_NUM_THREADS=1 python benchmarks/srflow_robustness.py                # the shipped srflow, all three sets
    python benchmarks/srflow_robustness.py --sets Set5 --json robust.json
    python benchmarks/srflow_robustness.py --no-guards   # the official arithmetic, no output check (the old code)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from benchcommon import machine
from eval_sr import SETS, default_root

from gensr.errors import GensrError
from gensr.imresize import imresize, modcrop
from gensr.inference.flow_sampling import FlowSampler, region_lr_psnr
from gensr.io import pixels_to_tensor, read_array, tensor_to_pixels
from gensr.metrics.fidelity import lr_psnr


def lr_for(root: Path, name: str, path: Path, hr: np.ndarray, scale: int) -> np.ndarray:
    """The set's own LR file (``LR_bicubic/X{s}/<stem>x{s}.png``) when there is one, else imresize(hr, 1/s)."""
    own = root / name / "LR_bicubic" / f"X{scale}" / f"{path.stem}x{scale}.png"
    if own.is_file():
        lr = read_array(own)
        if lr.shape[:2] == (hr.shape[0] // scale, hr.shape[1] // scale):
            return lr
    return imresize(hr, 1 / scale)


def disable_guards(sampler: FlowSampler) -> None:
    """The old behaviour: the official reverse arithmetic and no output check."""
    from gensr.nn.flow import CondAffineSeparatedAndCond, Split2d

    for m in sampler.model.modules():
        if isinstance(m, CondAffineSeparatedAndCond):
            m.input_bound, m.min_scale = 0.0, 0.0
        elif isinstance(m, Split2d):
            m.input_bound, m.max_logs = 0.0, 0.0
    sampler.min_region_psnr, sampler.redraws = 0.0, 0


def sample_scores(sampler: FlowSampler, hr: np.ndarray, lr: np.ndarray, args, seed: int) -> list[tuple[float, float]]:
    """(LR-PSNR, lowest region LR-PSNR) of each uint8 sample of one image."""
    gray = lr.shape[2] == 1
    x = pixels_to_tensor(np.repeat(lr, 3, axis=2) if gray else lr)
    out = sampler.sample(x, temperature=args.temperature, num_samples=args.samples, seed=seed)
    regions = region_lr_psnr(out, x, args.scale).flatten(1).amin(1).tolist()
    if gray:
        out = out.mean(1, keepdim=True)
    return [(lr_psnr(tensor_to_pixels(o), lr, args.scale), r) for o, r in zip(out, regions, strict=True)]


def run_set(sampler: FlowSampler, root: Path, name: str, args) -> dict:
    before = dict(sampler.stats)
    scores: dict[str, list[tuple[float, float]]] = {}
    errors: dict[str, str] = {}
    t0 = time.perf_counter()
    for i, path in enumerate(sorted((root / name / "HR").glob("*.png"))):
        hr = modcrop(read_array(path), args.scale)
        lr = lr_for(root, name, path, hr, args.scale)
        try:
            scores[path.name] = sample_scores(sampler, hr, lr, args, seed=i)
        except GensrError as exc:
            errors[path.name] = str(exc)
        low = [round(v, 2) for v, _ in scores.get(path.name, []) if v < args.min_lr_psnr]
        if low or path.name in errors:
            print(f"  {name}/{path.name} (seed {i}): {errors.get(path.name) or f'below the limit: {low}'}", flush=True)
    values = [v for vs in scores.values() for v, _ in vs]
    regions = [r for vs in scores.values() for _, r in vs]
    return {
        "images": len(scores) + len(errors),
        "samples": len(values),
        "min_lr_psnr": min(values) if values else float("nan"),
        "mean_lr_psnr": float(np.mean(values)) if values else float("nan"),
        "below_limit": sum(v < args.min_lr_psnr for v in values),
        "min_region_lr_psnr": min(regions) if regions else float("nan"),
        "redrawn_regions": sampler.stats["redrawn_regions"] - before["redrawn_regions"],
        "redrawn_samples": sampler.stats["redrawn_samples"] - before["redrawn_samples"],
        "errors": errors,
        "seconds": time.perf_counter() - t0,
        "scores": scores,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="srflow", help="shipped name or SRFlow checkpoint")
    ap.add_argument("--datasets", type=Path, default=default_root())
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=10, help="decoder passes per forward")
    ap.add_argument("--min-lr-psnr", type=float, default=40.0, help="every sample must reach this (dB)")
    ap.add_argument("--no-guards", action="store_true", help="official reverse arithmetic and no output check")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sampler = FlowSampler(args.model, device="cpu", batch_size=args.batch_size)
    if sampler.scale != args.scale:
        raise SystemExit(f"{args.model}: an x{sampler.scale} model, but --scale is {args.scale}")
    if args.no_guards:
        disable_guards(sampler)
    results = {name: run_set(sampler, args.datasets, name, args) for name in args.sets}
    guards = "guards off, no output check" if args.no_guards else "guards and output check on"
    print(f"model {args.model}, x{args.scale}, tau {args.temperature}, {args.samples} samples/image ({guards})")
    print(machine())
    head = "| set | images | samples | min LR-PSNR | mean LR-PSNR | < limit | min region | re-drawn (samples) |"
    print(head + " errors | time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['images']} | {r['samples']} | {r['min_lr_psnr']:.2f} | {r['mean_lr_psnr']:.2f} "
            f"| {r['below_limit']} | {r['min_region_lr_psnr']:.1f} "
            f"| {r['redrawn_regions']} ({r['redrawn_samples']}) | {len(r['errors'])} "
            f"| {r['seconds'] / 60:.1f} min |"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args), **results}, indent=1, default=str))
    ok = all(r["below_limit"] == 0 and not r["errors"] for r in results.values())
    print(f"every sample >= {args.min_lr_psnr:g} dB: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
