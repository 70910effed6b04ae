"""``gensr generate``: class-conditional images from a BigGAN generator (gensr file or official checkpoint).

Writes ``DIR/<class>_<k>_s<seed>.png`` for k = 0 .. num-1 of each class in ``--classes`` (default: every
class) and ``DIR/grid_s<seed>.png`` (one row per class, up to 64 classes x 32 images; ``--no-grid`` skips it).
Image k of every class uses the same z, which depends only on the seed and k (see
:mod:`gensr.inference.generation`). ``--npz OUT.npz`` also writes every image as ``x`` uint8 (N, H, W, 3) and
``y`` int64 (N,) for metric tools (e.g. ``gensr fid``). ``--interpolate z`` writes one sheet
``interp_z_s<seed>.png`` (one row per class, z moving from image 0's to image 1's over ``--steps``);
``--interpolate class`` needs two classes and writes ``interp_class_<a>-<b>_s<seed>.png`` (``--num`` rows, each one
z, the class input moving from a to b).

Truncation: ``--truncation T`` with ``--truncation-mode resample`` (default; the paper's: z entries with
|z| > T are redrawn) or ``scale`` (T x truncnorm(-2, 2), the TF-Hub convention, required for BigGAN-deep ports,
whose BN statistics it also selects). Without ``--truncation`` z ~ N(0, I).

Every setting and output name is checked before anything is generated; existing files are refused unless
``--overwrite``; each file is written atomically. Mistakes are one line and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gensr.errors import GensrError

DEFAULT_MODEL = "biggan_cifar"
GRID_MAX_CLASSES = 64
GRID_MAX_PER_CLASS = 32
MAX_SEED = 2**63 - 1


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "-m", "--model", default=None, metavar="NAME_OR_CKPT",
        help=f"a BigGAN generator file (gensr .safetensors, BigGAN-PyTorch G_ema.pth, pytorch-pretrained-BigGAN) "
        f"or a shipped name (default: {DEFAULT_MODEL})",
    )  # fmt: skip
    p.add_argument("--classes", default=None, metavar="LIST", help="class indices, e.g. 0,3,7 (default: all)")
    p.add_argument("-n", "--num", type=int, default=8, metavar="N", help="images per class (default 8)")
    p.add_argument("--truncation", type=float, default=None, metavar="T", help="truncation in (0, 2] (default: none)")
    p.add_argument(
        "--truncation-mode", choices=("resample", "scale"), default="resample",
        help="resample: redraw |z| > T (the paper's); scale: T x truncnorm(-2, 2) (TF-Hub, BigGAN-deep)",
    )  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--interpolate", choices=("z", "class"), default=None, help="write an interpolation sheet instead")
    p.add_argument("--steps", type=int, default=8, metavar="S", help="interpolation steps (default 8)")
    p.add_argument("--npz", default=None, metavar="OUT.npz", help="also write all images as x (uint8 NHWC), y (int64)")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=True, help="write a class grid")
    p.add_argument(
        "--standing-stats", type=int, default=0, metavar="K",
        help="re-estimate the BN statistics with K batches at this truncation first (default 0: the file's)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="images per forward (default 64)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line")


def parse_classes(text: str | None) -> list[int] | None:
    """'0,3, 7' -> [0, 3, 7]; None stays None; GensrError for anything else."""
    if text is None:
        return None
    parts = [t.strip() for t in text.split(",")]
    if not parts or any(not t for t in parts):
        raise GensrError(f"--classes {text!r}: expected comma-separated class indices, e.g. 0,3,7")
    try:
        values = [int(t) for t in parts]
    except ValueError:
        raise GensrError(f"--classes {text!r}: expected comma-separated class indices, e.g. 0,3,7") from None
    if len(set(values)) != len(values):
        raise GensrError(f"--classes {text!r}: a class is listed twice")
    return values


def _check_args(args: argparse.Namespace) -> None:
    """Settings that need no model."""
    from gensr.inference.generation import MAX_IMAGES, check_truncation

    check_truncation(args.truncation, args.truncation_mode)
    if not 1 <= args.num <= MAX_IMAGES:
        raise GensrError(f"--num must be an integer in 1..{MAX_IMAGES}, got {args.num}")
    if not 0 <= args.seed <= MAX_SEED:
        raise GensrError(f"--seed must be in 0..{MAX_SEED}, got {args.seed}")
    if args.batch_size < 1:
        raise GensrError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.standing_stats < 0:
        raise GensrError(f"--standing-stats must be >= 0, got {args.standing_stats}")
    if args.interpolate and not 2 <= args.steps <= 256:
        raise GensrError(f"--steps must be in 2..256, got {args.steps}")
    if args.interpolate and args.npz:
        raise GensrError("--npz writes plain samples; it cannot be combined with --interpolate")
    if args.npz and Path(args.npz).suffix.lower() != ".npz":
        raise GensrError(f"{args.npz}: --npz needs a file name ending in .npz")


def _model_path(name: str | None) -> tuple[str, Path]:
    """(name, file) of ``--model``; the default is the shipped CIFAR-10 generator."""
    from gensr.checkpoints.shipped import resolve_model_path

    name = name or DEFAULT_MODEL
    return name, resolve_model_path(name)


def _plan(args: argparse.Namespace, classes: list[int], res: int) -> dict[str, Path]:
    """Output name -> path (claimed later); sheet sizes checked against the pixel limit."""
    from gensr.io.limits import check_output_size

    out = Path(args.output).expanduser()
    s = args.seed
    if args.interpolate == "z":
        check_output_size(len(classes) * (res + 2), args.steps * (res + 2), "interpolation sheet")
        return {"sheet": out / f"interp_z_s{s}.png"}
    if args.interpolate == "class":
        if len(classes) != 2:
            raise GensrError(f"--interpolate class needs exactly two --classes, got {len(classes)}")
        check_output_size(args.num * (res + 2), args.steps * (res + 2), "interpolation sheet")
        return {"sheet": out / f"interp_class_{classes[0]}-{classes[1]}_s{s}.png"}
    plan = {f"{c}_{k}": out / f"{c}_{k}_s{s}.png" for c in classes for k in range(args.num)}
    if args.grid:
        rows, cols = min(len(classes), GRID_MAX_CLASSES), min(args.num, GRID_MAX_PER_CLASS)
        check_output_size(rows * (res + 2), cols * (res + 2), "class grid (use --no-grid)")
        plan["grid"] = out / f"grid_s{s}.png"
    if args.npz:
        plan["npz"] = Path(args.npz).expanduser()
    return plan


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import OutputPolicy, ensure_writable_dir
    from gensr.inference.generation import MAX_IMAGES, load_generator
    from gensr.inference.precision import resolve_device

    _check_args(args)
    requested = parse_classes(args.classes)
    name, path = _model_path(args.model)
    device = resolve_device(args.device)
    net = load_generator(path, device)
    classes = requested if requested is not None else list(range(net.n_classes))
    bad = [c for c in classes if not 0 <= c < net.n_classes]
    if bad:
        raise GensrError(f"--classes: {bad[0]} is not a class of {name} (it has classes 0..{net.n_classes - 1})")
    if not args.interpolate and args.num * len(classes) > MAX_IMAGES:
        raise GensrError(f"--num {args.num} x {len(classes)} classes is over the limit of {MAX_IMAGES} images")
    plan = _plan(args, classes, net.resolution)
    policy = OutputPolicy([path], overwrite=args.overwrite)
    for target in plan.values():
        policy.claim(target)
    ensure_writable_dir(Path(args.output).expanduser())
    written = _write_sheet(args, net, classes, plan) if args.interpolate else _write_samples(args, net, classes, plan)
    if not args.quiet:
        print(f"{name}: wrote {written} file(s) to {args.output}", file=sys.stderr)
    return 0


def _common(args: argparse.Namespace) -> dict:
    return {
        "truncation": args.truncation, "truncation_mode": args.truncation_mode, "seed": args.seed,
        "batch_size": args.batch_size, "standing_stats": args.standing_stats,
    }  # fmt: skip


def _write_samples(args: argparse.Namespace, net, classes: list[int], plan: dict[str, Path]) -> int:
    import io

    import numpy as np

    from gensr.fileutil import write_bytes_atomic
    from gensr.inference.generation import class_grid, generate
    from gensr.io import write_image

    images, labels = generate(net, classes, args.num, **_common(args))
    npz = None
    if args.npz:
        buf = io.BytesIO()
        np.savez(buf, x=images, y=labels.astype(np.int64))
        npz = buf.getvalue()
    for i, (img, c) in enumerate(zip(images, labels, strict=True)):
        write_image(plan[f"{c}_{i % args.num}"], img, overwrite=args.overwrite)
    if "grid" in plan:
        shown = classes[:GRID_MAX_CLASSES]
        write_image(plan["grid"], class_grid(images, labels, shown, GRID_MAX_PER_CLASS), overwrite=args.overwrite)
    if npz is not None:
        write_bytes_atomic(plan["npz"], npz, overwrite=args.overwrite)
    return len(plan)


def _write_sheet(args: argparse.Namespace, net, classes: list[int], plan: dict[str, Path]) -> int:
    from gensr.inference.generation import interpolation_sheet, tile_rows
    from gensr.io import write_image

    frames = interpolation_sheet(net, args.interpolate, classes, args.steps, args.num, **_common(args))
    write_image(plan["sheet"], tile_rows(list(frames)), overwrite=args.overwrite)
    return 1


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["generate", *sys.argv[1:]]))
