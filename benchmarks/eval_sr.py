"""Y-PSNR / SSIM / LR-PSNR of an SR model and of bicubic on Set5, Set14 and BSD100 (the papers' conventions).

LR inputs are made from the mod-cropped HR with the MATLAB-exact bicubic (for Set5 these equal the standard
LR_bicubic files bit for bit). SR outputs are clamped and rounded to uint8, then scored on BT.601 Y (float,
BasicSR style) with ``scale`` pixels shaved per side; SSIM is MATLAB's (11x11 Gaussian, sigma 1.5); LR-PSNR is
RGB, SR downscaled with the MATLAB bicubic vs the LR. Bicubic is MATLAB ``imresize(lr, 4)`` on uint8.

    python benchmarks/eval_sr.py --model default            # prints a Markdown table
    python benchmarks/eval_sr.py --model my.safetensors --json scores.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from gensr.checkpoints.loader import load_model
from gensr.imresize import imresize, modcrop
from gensr.io import pixels_to_tensor, read_array, tensor_to_pixels
from gensr.metrics.fidelity import lr_psnr, psnr, ssim

SETS = ("Set5", "Set14", "BSD100")


def default_root() -> Path:
    env = os.environ.get("GENSR_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def score(sr: np.ndarray, hr: np.ndarray, lr: np.ndarray, scale: int) -> tuple[float, float, float]:
    return (
        psnr(sr, hr, crop_border=scale, y_channel=True),
        ssim(sr, hr, crop_border=scale, y_channel=True),
        lr_psnr(sr, lr, scale),
    )


@torch.no_grad()
def run_model(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    """(h, w, C) uint8 -> (sh, sw, C) uint8; a gray LR (C = 1) runs as RGB and the output is averaged back to
    gray, as ``gensr upscale`` does."""
    rgb = np.repeat(lr, 3, axis=2) if lr.shape[2] == 1 else lr
    y = model(pixels_to_tensor(rgb)).clamp(0, 1)
    if lr.shape[2] == 1:
        y = y.mean(1, keepdim=True)
    return tensor_to_pixels(y)


def evaluate(model_name: str, root: Path, scale: int, sets: tuple[str, ...] = SETS) -> dict:
    model = load_model(model_name).eval()
    results: dict = {}
    for name in sets:
        rows_m, rows_b = [], []
        t0 = time.perf_counter()
        paths = sorted((root / name / "HR").glob("*.png"))
        if not paths:
            raise SystemExit(f"eval_sr: no HR images in {root / name / 'HR'}")
        for path in paths:
            hr = modcrop(read_array(path), scale)  # gray stays gray (Set14 bridge): scored on its own values
            lr = imresize(hr, 1 / scale)
            rows_m.append(score(run_model(model, lr), hr, lr, scale))
            rows_b.append(score(imresize(lr, float(scale)), hr, lr, scale))  # MATLAB imresize(lr, 4) on uint8
        m, b = np.mean(rows_m, axis=0), np.mean(rows_b, axis=0)
        results[name] = {
            "images": len(rows_m),
            "model": {"psnr_y": m[0], "ssim_y": m[1], "lr_psnr": m[2]},
            "bicubic": {"psnr_y": b[0], "ssim_y": b[1], "lr_psnr": b[2]},
            "seconds": time.perf_counter() - t0,
        }
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--datasets", type=Path, default=default_root())
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = evaluate(args.model, args.datasets, args.scale, tuple(args.sets))
    print(f"model {args.model}, x{args.scale}; {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print("| set | images | bicubic Y-PSNR / SSIM | model Y-PSNR / SSIM | gain (dB) | model LR-PSNR |")
    print("|---|---|---|---|---|---|")
    for name, r in res.items():
        m, b = r["model"], r["bicubic"]
        print(
            f"| {name} | {r['images']} | {b['psnr_y']:.2f} / {b['ssim_y']:.4f} | {m['psnr_y']:.2f} / {m['ssim_y']:.4f}"
            f" | {m['psnr_y'] - b['psnr_y']:+.2f} | {m['lr_psnr']:.2f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
