"""The model-card pictures in docs/images: GAN vs PSNR crops, and SRFlow samples beside ESRGAN and GT.

* ``esrgan_comparison.png``: one row per crop, columns bicubic | PSNR model | ESRGAN | GT.
* ``srflow_samples.png``: one row per crop, columns bicubic | SRFlow tau 0 (mean) | three SRFlow samples at
  tau 0.9 | per-pixel std of 10 samples (x4, gray) | ESRGAN | GT.

The LR inputs are the MATLAB-bicubic x4 downscales of the full mod-cropped HR images (the whole image is
upscaled, then cropped), so borders play no part. Crops are shown enlarged 2x with nearest-neighbour.

    python benchmarks/make_figures.py --overwrite           # shipped models -> docs/images/
    python benchmarks/make_figures.py --psnr default --esrgan run/model.safetensors --srflow other.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from eval_sr import default_root, run_model
from PIL import Image, ImageDraw, ImageFont

from gensr.checkpoints.loader import load_model
from gensr.imresize import imresize, modcrop
from gensr.inference.flow_sampling import FlowSampler
from gensr.io import pixels_to_tensor, read_array, tensor_to_pixels, write_image

# (set, image, top, left) of each HR crop; CROP x CROP HR pixels (multiples of 4)
CROPS = (("Set14", "baboon", 300, 24), ("Set14", "zebra", 72, 292), ("BSD100", "8023", 120, 180))
SRFLOW_CROPS = (("Set14", "baboon", 300, 24), ("Set14", "zebra", 72, 292))
CROP = 96
ZOOM = 2
LABEL_H = 22


def _font(size: int = 14) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def grid(rows: list[list[np.ndarray]], labels: list[str]) -> np.ndarray:
    """Rows of equal-size (h, w, 3) uint8 tiles under one header line of column labels -> one uint8 image."""
    h, w = rows[0][0].shape[:2]
    tw, th = w * ZOOM, h * ZOOM
    gap = 4
    canvas = Image.new("RGB", (len(labels) * (tw + gap) - gap, LABEL_H + len(rows) * (th + gap) - gap), "white")
    draw, font = ImageDraw.Draw(canvas), _font()
    for c, label in enumerate(labels):
        draw.text((c * (tw + gap) + tw // 2, LABEL_H // 2), label, fill="black", font=font, anchor="mm")
    for r, row in enumerate(rows):
        for c, tile in enumerate(row):
            im = Image.fromarray(tile).resize((tw, th), Image.Resampling.NEAREST)
            canvas.paste(im, (c * (tw + gap), LABEL_H + r * (th + gap)))
    return np.asarray(canvas)


def load_case(root: Path, set_name: str, image: str) -> tuple[np.ndarray, np.ndarray]:
    """(HR mod-cropped to 4, its x4 MATLAB-bicubic LR), both RGB uint8."""
    hr = modcrop(read_array(root / set_name / "HR" / f"{image}.png"), 4)
    if hr.shape[2] == 1:
        hr = np.repeat(hr, 3, axis=2)
    return hr, imresize(hr, 0.25)


def crop(img: np.ndarray, top: int, left: int) -> np.ndarray:
    return img[top : top + CROP, left : left + CROP]


def esrgan_figure(root: Path, psnr_model: str, esrgan_model: str) -> np.ndarray:
    psnr_net, gan_net = load_model(psnr_model).eval(), load_model(esrgan_model).eval()
    rows = []
    for set_name, image, top, left in CROPS:
        hr, lr = load_case(root, set_name, image)
        outs = [imresize(lr, 4.0), run_model(psnr_net, lr), run_model(gan_net, lr), hr]
        rows.append([crop(o, top, left) for o in outs])
    return grid(rows, ["bicubic", "PSNR model", "ESRGAN", "GT"])


def srflow_figure(root: Path, srflow_model: str, esrgan_model: str, temperature: float) -> np.ndarray:
    sampler, gan_net = FlowSampler(srflow_model, device="cpu", batch_size=10), load_model(esrgan_model).eval()
    rows = []
    for set_name, image, top, left in SRFLOW_CROPS:
        hr, lr = load_case(root, set_name, image)
        x = pixels_to_tensor(lr)
        mean = sampler.sample(x, temperature=0.0, seed=0)
        draws = sampler.sample(x, temperature=temperature, num_samples=10, seed=0)
        as_u8 = np.stack([tensor_to_pixels(d) for d in draws])
        std = np.clip(as_u8.astype(np.float64).std(axis=0).mean(axis=2) * 4, 0, 255).astype(np.uint8)
        outs = [
            imresize(lr, 4.0),
            tensor_to_pixels(mean),
            *as_u8[:3],
            np.repeat(std[:, :, None], 3, axis=2),
            run_model(gan_net, lr),
            hr,
        ]
        rows.append([crop(o, top, left) for o in outs])
    labels = ["bicubic", "SRFlow t=0", *(f"t={temperature} #{i + 1}" for i in range(3)), "std x4", "ESRGAN", "GT"]
    return grid(rows, labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", type=Path, default=default_root())
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "images")
    ap.add_argument("--psnr", default="default")
    ap.add_argument("--esrgan", default="esrgan")
    ap.add_argument("--srflow", default="srflow", help="SRFlow model; 'none' skips the SRFlow picture")
    ap.add_argument("--temperature", type=float, default=0.9)
    ap.add_argument("--overwrite", action="store_true", help="replace existing pictures")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    args.out.mkdir(parents=True, exist_ok=True)
    esrgan_pic = esrgan_figure(args.datasets, args.psnr, args.esrgan)
    path = write_image(args.out / "esrgan_comparison.png", esrgan_pic, overwrite=args.overwrite)
    print(f"wrote {path}")
    if args.srflow != "none":
        pic = srflow_figure(args.datasets, args.srflow, args.esrgan, args.temperature)
        print(f"wrote {write_image(args.out / 'srflow_samples.png', pic, overwrite=args.overwrite)}")


if __name__ == "__main__":
    main()
