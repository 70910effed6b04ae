"""Validation on whole images: PSNR/SSIM on Y (border = scale), LR-PSNR, and saved SR images."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from gensr.metrics.fidelity import lr_psnr as lr_psnr_metric
from gensr.metrics.fidelity import psnr, ssim


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(1|, 3, H, W) float in [0, 1] -> (H, W, 3) uint8, clamped and rounded."""
    t = t.detach().float().cpu()
    if t.dim() == 4:
        t = t[0]
    return (t.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


@torch.no_grad()
def validate(
    sr_fn: Callable[[torch.Tensor], torch.Tensor],
    dataset: Dataset,
    scale: int,
    device: torch.device,
    out_dir: Path | None = None,
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Mean Y-PSNR/SSIM (crop ``scale``) and RGB LR-PSNR over ``dataset``; returns (means, first SR images)."""
    rows, previews = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        lr = item["lr"].unsqueeze(0).to(device)
        sr = sr_fn(lr).float().cpu()
        sr8, hr8, lr8 = to_uint8(sr), to_uint8(item["hr"]), to_uint8(item["lr"])
        rows.append(
            (
                psnr(sr8, hr8, crop_border=scale, y_channel=True),
                ssim(sr8, hr8, crop_border=scale, y_channel=True),
                lr_psnr_metric(sr8, lr8, scale),
            )
        )
        if out_dir is not None:
            from gensr.io import write_image

            write_image(out_dir / f"{item['name']}.png", sr8)
        if len(previews) < 4:
            previews.append(sr.clamp(0, 1)[0])
    arr = np.array(rows, dtype=np.float64)
    means = {
        "psnr_y": float(arr[:, 0].mean()),
        "ssim_y": float(arr[:, 1].mean()),
        "lr_psnr": float(arr[:, 2].mean()),
    }
    return means, previews
