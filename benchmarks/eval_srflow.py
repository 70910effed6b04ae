"""SRFlow on Set5, Set14 and BSD100: fidelity of the mean and of samples, LR consistency and diversity.

For every HR image (mod-cropped; LR made with the MATLAB-exact bicubic, as in ``eval_sr.py``):

* **mean**: the tau = 0 output (all latents zero) -> Y-PSNR / SSIM (border = scale) and LR-PSNR (RGB);
* **samples**: ``--samples`` (10) draws at ``--temperature`` (0.9), seed = image index -> Y-PSNR / SSIM and
  LR-PSNR averaged over the samples, the best single sample's Y-PSNR, and the diversity across the samples:
  ``pixel_std`` (mean per-pixel std, grey levels) and the NTIRE score with pixel-space distance maps
  (``gensr.metrics.diversity``);
* with ``--lr-consistency K`` (default 5; 0 = off) also the same samples after K back-projection passes
  (``gensr.inference.consistency``, a post-processing step, not the model): Y-PSNR / SSIM and LR-PSNR.

Under the table: the lowest LR-PSNR of any returned sample of a set and how many samples the sampler re-drew
(broken regions, see ``gensr.inference.flow_sampling``). An infinite PSNR (an output identical to its reference
after rounding, e.g. a back-projected sample of a flat image) is named there and left out of its mean.

Every output is clamped and rounded to uint8 before scoring. Gray HR images are sampled as RGB and averaged
back to gray, as ``gensr sample`` does. Figures are means over the images of a set.

    python benchmarks/eval_srflow.py --model srflow                  # prints a Markdown table
    python benchmarks/eval_srflow.py --model run/model.safetensors --sets Set5 --json scores.json

Parallel shards (image i of a set goes to shard i mod N and keeps seed i, so the merged table is the one a single
run gives): run ``--shard 0/2 --json a.json`` and ``--shard 1/2 --json b.json`` at the same time, then
``--merge a.json b.json``. An image whose sampling raises (a sample that stays broken after its re-draws) is
listed under the table and left out of the means.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from benchcommon import machine
from eval_sr import SETS, default_root, score

from gensr.errors import GensrError
from gensr.imresize import imresize, modcrop
from gensr.inference.consistency import enforce_lr_consistency
from gensr.inference.flow_sampling import FlowSampler
from gensr.io import pixels_to_tensor, read_array, tensor_to_pixels
from gensr.metrics.diversity import ntire_diversity_score, pixel_distance_maps, pixel_std

ROW_KEYS = ("mean_psnr_y", "mean_ssim_y", "mean_lr_psnr", "sample_psnr_y", "sample_ssim_y", "best_sample_psnr_y",
            "sample_lr_psnr", "pixel_std", "ntire_pixel_diversity")  # fmt: skip


def to_uint8(batch: torch.Tensor, gray: bool) -> list[np.ndarray]:
    """(N, 3, H, W) float in [0, 1] -> N (H, W, C) uint8 arrays (C = 1 when ``gray``)."""
    if gray:
        batch = batch.mean(1, keepdim=True)
    return [tensor_to_pixels(t) for t in batch]


def evaluate_image(
    sampler: FlowSampler, hr: np.ndarray, scale: int, temperature: float, samples: int, seed: int, bp: int = 0
) -> dict[str, float]:
    """Scores of one mod-cropped HR image (H, W, C) uint8; see the module docstring."""
    lr = imresize(hr, 1 / scale)
    gray = lr.shape[2] == 1
    rgb = np.repeat(lr, 3, axis=2) if gray else lr
    x = pixels_to_tensor(rgb)
    mean = to_uint8(sampler.sample(x, temperature=0.0, num_samples=1, seed=seed), gray)[0]
    raw = sampler.sample(x, temperature=temperature, num_samples=samples, seed=seed)
    draws = to_uint8(raw, gray)
    m = score(mean, hr, lr, scale)
    s = np.array([score(d, hr, lr, scale) for d in draws])
    row = {
        "mean_psnr_y": m[0],
        "mean_ssim_y": m[1],
        "mean_lr_psnr": m[2],
        "sample_psnr_y": float(s[:, 0].mean()),
        "sample_ssim_y": float(s[:, 1].mean()),
        "sample_lr_psnr": float(s[:, 2].mean()),
        "best_sample_psnr_y": float(s[:, 0].max()),
        "min_sample_lr_psnr": float(s[:, 2].min()),
    }
    if samples >= 2:
        row["pixel_std"] = pixel_std(draws)
        row["ntire_pixel_diversity"] = ntire_diversity_score(pixel_distance_maps(draws, hr))
    if bp:
        fixed = to_uint8(enforce_lr_consistency(raw, x, scale, bp), gray)
        f = np.array([score(d, hr, lr, scale) for d in fixed])
        row.update(bp_psnr_y=float(f[:, 0].mean()), bp_ssim_y=float(f[:, 1].mean()), bp_lr_psnr=float(f[:, 2].mean()))
    return row


def evaluate(
    model: str,
    root: Path,
    sets: list[str],
    scale: int,
    temperature: float,
    samples: int,
    batch_size: int,
    bp: int = 0,
    shard: tuple[int, int] = (0, 1),
) -> dict:
    """Per-set results: ``images``, ``seconds``, per-image ``rows`` (with ``image`` and ``seed``), their means."""
    sampler = FlowSampler(model, batch_size=batch_size)
    if sampler.scale != scale:
        raise SystemExit(f"{model}: an x{sampler.scale} model, but --scale is {scale}")
    results: dict = {}
    for name in sets:
        rows, failures = [], []
        t0 = time.perf_counter()
        for i, path in enumerate(sorted((root / name / "HR").glob("*.png"))):
            if i % shard[1] != shard[0]:
                continue
            hr = modcrop(read_array(path), scale)
            redrawn = sampler.stats["redrawn_samples"]
            try:
                row = evaluate_image(sampler, hr, scale, temperature, samples, seed=i, bp=bp)
                row["redrawn_samples"] = sampler.stats["redrawn_samples"] - redrawn
            except GensrError as e:  # a sample that stays broken: reported, not averaged
                failures.append({"image": path.stem, "seed": i, "error": str(e)})
                continue
            rows.append({"image": path.stem, "seed": i, **row})
        results[name] = summarise(rows, failures, time.perf_counter() - t0)
    return results


def summarise(rows: list[dict], failures: list[dict], seconds: float) -> dict:
    """Means over per-image rows (as :func:`evaluate_image` returns, plus ``image`` and ``seed``; the minimum of
    ``min_sample_lr_psnr``, the sum of ``redrawn_samples``); ``failures`` (images whose sampling raised) are
    listed and left out."""
    keys = [k for k in rows[0] if k not in ("image", "seed")] if rows else []
    out: dict = {"images": len(rows), "seconds": seconds, "rows": rows, "failures": failures, "infinite": {}}
    reduce = {"min_sample_lr_psnr": np.min, "redrawn_samples": np.sum}
    for k in keys:
        values = np.array([r[k] for r in rows], dtype=float)
        finite = values[np.isfinite(values)]
        if len(finite) < len(values):  # a PSNR of an output identical to its reference (after rounding)
            out["infinite"][k] = [r["image"] for r, v in zip(rows, values, strict=True) if not np.isfinite(v)]
        out[k] = float(reduce.get(k, np.mean)(finite)) if len(finite) else float("inf")
    return out


def merge(paths: list[Path]) -> dict:
    """Joins the JSON files of ``--shard`` runs into one result; refuses overlapping or mixed shards."""
    parts = [json.loads(p.read_text()) for p in paths]
    if any(part.get("_settings") != parts[0].get("_settings") for part in parts):
        raise SystemExit("--merge: the files were made with different settings")
    merged: dict = {"_settings": parts[0].get("_settings")}
    for name in [k for k in parts[0] if not k.startswith("_")]:
        rows = [row for part in parts for row in part[name]["rows"]]
        failures = [row for part in parts for row in part[name].get("failures", [])]
        if len({row["seed"] for row in rows + failures}) != len(rows) + len(failures):
            raise SystemExit(f"--merge: {name} has an image in more than one file")
        seconds = sum(p[name]["seconds"] for p in parts)
        merged[name] = summarise(sorted(rows, key=lambda r: r["seed"]), failures, seconds)
    return merged


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard: expected K/N, got {text!r}") from None
    if not 0 <= k < n:
        raise SystemExit(f"--shard: need 0 <= K < N, got {text!r}")
    return k, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="srflow", help="shipped name or SRFlow checkpoint")
    ap.add_argument("--datasets", type=Path, default=default_root())
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--samples", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=10, help="decoder passes per forward")
    ap.add_argument("--lr-consistency", type=int, default=5, metavar="K", help="back-projection passes (0 = off)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--shard", default="0/1", metavar="K/N", help="evaluate images i with i mod N == K (seed i)")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON", help="print the table of --shard runs' files")
    args = ap.parse_args()
    settings = [str(args.model), args.scale, args.temperature, args.samples, args.lr_consistency]
    if args.merge:
        res = merge(args.merge)
        args.model, args.scale, args.temperature, args.samples, args.lr_consistency = res["_settings"]
    else:
        res = evaluate(
            args.model,
            args.datasets,
            args.sets,
            args.scale,
            args.temperature,
            args.samples,
            args.batch_size,
            args.lr_consistency,
            parse_shard(args.shard),
        )
        res["_settings"] = settings
    if args.json and not args.merge:
        args.json.write_text(json.dumps(res, indent=2))
    res = {k: v for k, v in res.items() if not k.startswith("_")}
    print(f"model {args.model}, x{args.scale}, tau {args.temperature}, {args.samples} samples; {machine()}")
    print(
        "| set | images | mean Y-PSNR / SSIM | mean LR-PSNR | sample Y-PSNR / SSIM | best-of-N Y-PSNR "
        "| sample LR-PSNR | pixel std | NTIRE pixel div. |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    nan = float("nan")
    for name, r in res.items():
        g = {k: r.get(k, nan) for k in ROW_KEYS}
        print(
            f"| {name} | {r['images']} | {g['mean_psnr_y']:.2f} / {g['mean_ssim_y']:.4f} | {g['mean_lr_psnr']:.2f}"
            f" | {g['sample_psnr_y']:.2f} / {g['sample_ssim_y']:.4f} | {g['best_sample_psnr_y']:.2f}"
            f" | {g['sample_lr_psnr']:.2f} | {g['pixel_std']:.2f} | {g['ntire_pixel_diversity']:.2f} |"
        )
    if args.lr_consistency:
        print(f"\nthe same samples after {args.lr_consistency} back-projection passes (post-processing):")
        print("| set | sample Y-PSNR / SSIM | sample LR-PSNR |")
        print("|---|---|---|")
        for name, r in res.items():
            g = {k: r.get(k, nan) for k in ("bp_psnr_y", "bp_ssim_y", "bp_lr_psnr")}
            print(f"| {name} | {g['bp_psnr_y']:.2f} / {g['bp_ssim_y']:.4f} | {g['bp_lr_psnr']:.2f} |")
    print("\nlowest LR-PSNR of any returned sample; samples whose broken regions the sampler re-drew:")
    for name, r in res.items():
        low, redrawn = r.get("min_sample_lr_psnr", nan), r.get("redrawn_samples", nan)
        print(f"- {name}: {low:.2f} dB; {redrawn:.0f} of {r['images'] * args.samples} samples re-drawn")
    for name, r in res.items():
        for key, images in r.get("infinite", {}).items():
            print(f"- {name} {key}: infinite (identical to the reference after rounding) on {', '.join(images)};"
                  " left out of that mean")  # fmt: skip
    failed = [(name, f) for name, r in res.items() for f in r.get("failures", [])]
    if failed:
        print(f"\n{len(failed)} image(s) left out of the means (a sample stayed broken after its re-draws):")
        for name, f in failed:
            print(f"- {name} {f['image']} (seed {f['seed']}): {f['error']}")


if __name__ == "__main__":
    main()
