"""``gensr degrade``: make LR images the way SR benchmarks do.

Each HR image is mod-cropped (top-left) to a multiple of the scale, then shrunk with the MATLAB-exact
bicubic ``imresize(img, 1/scale)`` on its integer samples (rounded after each 1-D pass, as MATLAB does on
uint8), which reproduces the EDSR/BasicSR ``LR_bicubic`` files bit for bit. ``--padding replicate`` gives
the SelfExSR variant. Bit depth (8/16) and gray are kept; alpha is shrunk the same way. The output keeps
the input's file name (so its format); PNG is the lossless choice, JPEG outputs are allowed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="HR image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the LR images")
    p.add_argument("-s", "--scale", required=True, type=int, help="integer downscaling factor")
    p.add_argument(
        "--padding",
        choices=("symmetric", "replicate"),
        default="symmetric",
        help="border handling: symmetric (MATLAB, default) or replicate (SelfExSR files)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import OutputPolicy, ensure_writable_dir
    from gensr.imresize import imresize, modcrop
    from gensr.io import list_images, read_image, write_image

    if args.scale < 1:
        raise GensrError(f"--scale must be a positive integer, got {args.scale}")
    files = list_images(args.inputs)
    outdir = Path(args.output)
    if outdir.exists() and not outdir.is_dir():
        raise GensrError(f"{outdir}: output path exists and is not a folder")

    # Refuse before writing anything: two inputs with one name, an output that would replace an input, or
    # an existing output without --overwrite.
    policy = OutputPolicy(files, overwrite=args.overwrite)
    for f in files:
        policy.claim(outdir / f.name, source=f)
    ensure_writable_dir(outdir)

    factor = 1.0 / args.scale
    for f in files:
        img = read_image(f)
        h, w = img.size
        if h < args.scale or w < args.scale:
            raise GensrError(f"{f}: {w}x{h} is smaller than the scale {args.scale}")
        lr = imresize(modcrop(img.pixels, args.scale), factor, padding=args.padding)
        alpha = None
        if img.alpha is not None:
            alpha = imresize(modcrop(img.alpha, args.scale), factor, padding=args.padding)
        write_image(outdir / f.name, lr, alpha, bit_depth=img.bit_depth, gray=img.is_gray, overwrite=args.overwrite)
    print(f"wrote {len(files)} image(s) to {outdir} (x{args.scale}, {args.padding} padding)", file=sys.stderr)
    return 0
