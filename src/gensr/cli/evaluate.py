"""``gensr eval``: score SR images against ground truth (PSNR, SSIM, LR-PSNR).

Pairing is by file stem. For every GT image ``<stem>.<ext>`` the SR folder must hold one image named, in this
order of preference, ``<stem><suffix>`` (when ``--sr-suffix`` is given), ``<stem>`` or ``<stem>x<scale>``
(the EDSR/Set5 ``LR_bicubic`` naming, e.g. ``babyx4.png``); the LR folder (``--lr``) is searched the same way.
SR images without a GT are ignored.

The GT is mod-cropped (top-left) to a multiple of the scale, and the SR must have exactly that size.
PSNR and SSIM follow the MATLAB/BasicSR conventions of :mod:`gensr.metrics.fidelity` (RGB by default, ``--y``
for BT.601 Y, ``--round-y`` for MATLAB's integer Y, ``--crop-border`` pixels shaved per side, default 0).
LR-PSNR is always RGB over the whole LR image (the SRFlow/NTIRE convention): the SR downscaled with the
MATLAB bicubic against the ``--lr`` image when given, else against the mod-cropped GT downscaled the same way.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sr", required=True, metavar="DIR", help="folder of super-resolved images")
    p.add_argument("--gt", required=True, metavar="DIR", help="folder of ground-truth HR images")
    p.add_argument("-s", "--scale", required=True, type=int, help="SR scale factor (GT is mod-cropped to it)")
    p.add_argument("--y", action="store_true", help="score BT.601 Y (MATLAB rgb2ycbcr) instead of RGB")
    p.add_argument(
        "--round-y",
        action="store_true",
        help="with --y: round Y to integers as MATLAB does on uint8 (default: float Y)",
    )
    p.add_argument(
        "--crop-border", type=int, default=0, metavar="N", help="pixels shaved per side (default 0)"
    )
    p.add_argument("--lr", metavar="DIR", help="folder of LR inputs for LR-PSNR (default: the GT downscaled)")
    p.add_argument(
        "--sr-suffix", default="", metavar="SUFFIX", help="SR file stem = GT stem + SUFFIX (e.g. _x4)"
    )
    p.add_argument("--json", metavar="FILE", help="also write per-image scores, means and settings as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")


def _index(folder: Path, what: str) -> dict[str, list[Path]]:
    """stem -> image files in ``folder`` (one level, image extensions only)."""
    from gensr.io import IMAGE_EXTENSIONS

    if not folder.exists():
        raise GensrError(f"{folder}: {what} folder does not exist")
    if not folder.is_dir():
        raise GensrError(f"{folder}: {what} path is not a folder")
    exts = {e.lower() for e in IMAGE_EXTENSIONS}
    index: dict[str, list[Path]] = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in exts:
            index.setdefault(f.stem, []).append(f)
    if not index:
        raise GensrError(f"{folder}: no images in the {what} folder")
    return index


def _match(stem: str, index: dict[str, list[Path]], suffix: str, scale: int) -> Path | None:
    candidates = ([stem + suffix] if suffix else []) + [stem, f"{stem}x{scale}"]
    for c in candidates:
        files = index.get(c)
        if files:
            if len(files) > 1:
                raise GensrError(
                    f"{files[0].parent}: ambiguous match for '{stem}': {', '.join(f.name for f in files)}"
                )
            return files[0]
    return None


def _suffix_hint(stem: str, sr_index: dict[str, list[Path]]) -> str:
    """A ``--sr-suffix`` suggestion when SR names extend the GT stem (``baby_x4`` for ``baby``)."""
    longer = sorted(s for s in sr_index if s.startswith(stem) and s != stem)
    if not longer:
        return ""
    return f"; SR names look like '{longer[0]}': try --sr-suffix {longer[0][len(stem):]}"


def _size(a) -> str:
    return f"{a.shape[1]}x{a.shape[0]}"


def _fmt(x: float, digits: int) -> str:
    return "inf" if math.isinf(x) else f"{x:.{digits}f}"


def _json_number(x: float):
    return "inf" if math.isinf(x) else x


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from gensr.fileutil import OutputPolicy, write_json_atomic
    from gensr.imresize import modcrop
    from gensr.io import read_array
    from gensr.metrics.fidelity import lr_consistency_target, lr_psnr, psnr, ssim

    if args.scale < 1:
        raise GensrError(f"--scale must be a positive integer, got {args.scale}")
    if args.crop_border < 0:
        raise GensrError(f"--crop-border must be >= 0, got {args.crop_border}")
    if args.round_y and not args.y:
        raise GensrError("--round-y only applies with --y")
    scale = args.scale

    gt_index = _index(Path(args.gt), "GT")
    sr_index = _index(Path(args.sr), "SR")
    lr_index = _index(Path(args.lr), "LR") if args.lr else None

    pairs = []
    for stem in sorted(gt_index):
        gt_files = gt_index[stem]
        if len(gt_files) > 1:
            raise GensrError(
                f"{args.gt}: several GT images share the name '{stem}': {', '.join(f.name for f in gt_files)}"
            )
        sr_file = _match(stem, sr_index, args.sr_suffix, scale)
        if sr_file is None:
            tried = ", ".join(
                dict.fromkeys(([stem + args.sr_suffix] if args.sr_suffix else []) + [stem, f"{stem}x{scale}"])
            )
            raise GensrError(
                f"{gt_files[0]}: no matching SR image in {args.sr} (tried stems {tried})"
                + _suffix_hint(stem, sr_index)
            )
        lr_file = None
        if lr_index is not None:
            lr_file = _match(stem, lr_index, args.sr_suffix, scale)
            if lr_file is None:
                raise GensrError(f"{gt_files[0]}: no matching LR image in {args.lr}")
        pairs.append((stem, gt_files[0], sr_file, lr_file))
    if args.json:  # checked before any work: never replaces an input or an existing file without --overwrite
        policy = OutputPolicy([f for pair in pairs for f in pair[1:] if f is not None], overwrite=args.overwrite)
        policy.claim(args.json)

    rows = []
    opts = dict(crop_border=args.crop_border, y_channel=args.y, round_y=args.round_y)
    for stem, gt_file, sr_file, lr_file in pairs:
        gt = read_array(gt_file)
        sr = read_array(sr_file)
        gt_mc = modcrop(gt, scale)
        if gt_mc.shape[0] == 0 or gt_mc.shape[1] == 0:
            raise GensrError(f"{gt_file}: {_size(gt)} is smaller than the scale {scale}")
        if sr.shape[:2] != gt_mc.shape[:2]:
            raise GensrError(
                f"{sr_file}: size {_size(sr)} does not match GT {gt_file.name} "
                f"mod-cropped to x{scale} ({_size(gt_mc)})"
            )
        if args.crop_border and (
            gt_mc.shape[0] <= 2 * args.crop_border + 10 or gt_mc.shape[1] <= 2 * args.crop_border + 10
        ):
            raise GensrError(
                f"{gt_file}: {_size(gt_mc)} is too small for --crop-border {args.crop_border} and SSIM"
            )
        if lr_file is not None:
            lr = read_array(lr_file)
            want = (gt_mc.shape[0] // scale, gt_mc.shape[1] // scale)
            if lr.shape[:2] != want:
                raise GensrError(
                    f"{lr_file}: LR size {_size(lr)} is not the SR size / {scale} ({want[1]}x{want[0]})"
                )
        else:
            lr = lr_consistency_target(gt_mc, scale)
        try:
            row = {
                "name": stem,
                "psnr": psnr(sr, gt_mc, **opts),
                "ssim": ssim(sr, gt_mc, **opts),
                "lr_psnr": lr_psnr(sr, lr, scale),
            }
        except ValueError as exc:
            raise GensrError(f"{sr_file}: {exc}") from None
        rows.append(row)

    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "lr_psnr")}

    width = max(4, *(len(r["name"]) for r in rows))
    channel = ("Y (rounded)" if args.round_y else "Y") if args.y else "RGB"
    print(
        f"x{scale}, {channel}, crop border {args.crop_border}; LR-PSNR: RGB vs "
        f"{'--lr images' if args.lr else 'GT downscaled'}"
    )
    print(f"{'name':<{width}}  {'PSNR':>8}  {'SSIM':>6}  {'LR-PSNR':>8}")
    for r in rows + [dict(name="mean", **mean)]:
        cells = (_fmt(r["psnr"], 4), _fmt(r["ssim"], 4), _fmt(r["lr_psnr"], 4))
        print(f"{r['name']:<{width}}  {cells[0]:>8}  {cells[1]:>6}  {cells[2]:>8}")

    if args.json:
        doc = {
            "images": [{k: _json_number(v) if k != "name" else v for k, v in r.items()} for r in rows],
            "mean": {k: _json_number(v) for k, v in mean.items()},
            "settings": {
                "sr": str(args.sr),
                "gt": str(args.gt),
                "lr": str(args.lr) if args.lr else None,
                "scale": scale,
                "y_channel": bool(args.y),
                "round_y": bool(args.round_y),
                "crop_border": args.crop_border,
                "sr_suffix": args.sr_suffix,
                "gt_modcrop": scale,
                "ssim": "MATLAB-style: 11x11 Gaussian sigma 1.5, valid, no downsampling, channel mean",
                "lr_psnr": "RGB, whole image, MATLAB bicubic downscale of SR vs "
                + ("the --lr images" if args.lr else "the mod-cropped GT downscaled the same way"),
                "inf": 'PSNR of identical images is written as the string "inf"',
            },
        }
        write_json_atomic(args.json, doc, overwrite=args.overwrite)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
