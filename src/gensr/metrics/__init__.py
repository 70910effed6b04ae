"""Image quality metrics.

``fidelity`` (PSNR, SSIM, LR-PSNR, MATLAB Y conversion) and ``diversity`` are numpy-only and re-exported here;
heavier metrics (LPIPS, Inception-based) live in their own modules and are imported from there.
"""

from gensr.metrics.diversity import ntire_diversity_score, pixel_distance_maps, pixel_std
from gensr.metrics.fidelity import (
    lr_consistency_target,
    lr_psnr,
    mse,
    psnr,
    rgb_to_y,
    ssim,
    to_float255,
)

__all__ = [
    "lr_consistency_target",
    "lr_psnr",
    "mse",
    "ntire_diversity_score",
    "pixel_distance_maps",
    "pixel_std",
    "psnr",
    "rgb_to_y",
    "ssim",
    "to_float255",
]
