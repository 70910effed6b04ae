"""``gensr niqe-fit HR_DIR -o model.npz``: fit a NIQE model on a folder of pristine images (MATLAB ``fitniqe``).

Every image of the folder (one level, the usual image extensions) is read; the blocks whose sharpness is at
least ``--sharpness-threshold`` times that of the image's sharpest block are kept, and the mean and covariance
of their 36 NIQE features over all images make the model (:mod:`gensr.metrics.niqe`). Images smaller than one
block are skipped (and counted on stderr). The output ``.npz`` has the key layout of MATLAB's/BasicSR's model
file (plus ``block_size`` and ``sharpness_threshold``), so ``niqe(img, load_niqe_params(path))`` uses it.
An existing output is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hr_dir", metavar="HR_DIR", help="folder of pristine (high-quality) images")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="model file to write (.npz)")
    p.add_argument(
        "--block-size", type=int, default=96, metavar="N", help="block side in pixels, positive and even (96)"
    )
    p.add_argument(
        "--sharpness-threshold",
        type=float,
        default=0.75,
        metavar="S",
        help="keep blocks at least S x as sharp as the image's sharpest, S in [0, 1] (0.75)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def _check_options(args: argparse.Namespace) -> None:
    if args.block_size < 2 or args.block_size % 2:
        raise GensrError(f"--block-size must be a positive even integer, got {args.block_size}")
    if not (0.0 <= args.sharpness_threshold <= 1.0):
        raise GensrError(f"--sharpness-threshold must be in [0, 1], got {args.sharpness_threshold}")
    folder = Path(args.hr_dir).expanduser()
    if not folder.exists():
        raise GensrError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise GensrError(f"{folder}: not a folder")


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import output_file
    from gensr.io import list_images, read_image
    from gensr.metrics.niqe import params_from_features, save_niqe_params, sharp_block_features

    _check_options(args)
    out = output_file(args.output, args.overwrite, (".npz",), "a .npz extension")
    files = list_images([args.hr_dir])  # GensrError for a folder without images
    kept, skipped = [], 0
    for f in files:
        pixels = read_image(f).pixels
        if min(pixels.shape[:2]) < args.block_size:
            skipped += 1
            continue
        try:
            kept.append(sharp_block_features(pixels, args.block_size, args.sharpness_threshold))
        except ValueError as exc:
            raise GensrError(f"{f}: {exc}") from None
    params = params_from_features(kept, args.block_size, args.sharpness_threshold)
    save_niqe_params(params, out)
    blocks = sum(len(k) for k in kept)
    note = f", {skipped} skipped (smaller than {args.block_size}x{args.block_size})" if skipped else ""
    print(
        f"fitted a NIQE model on {blocks} block(s) from {len(kept)} image(s){note}; wrote {out}",
        file=sys.stderr,
    )
    return 0
