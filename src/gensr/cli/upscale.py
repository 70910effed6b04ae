"""``gensr upscale``: super-resolve image files with an RRDB/ESRGAN checkpoint or MATLAB bicubic.

Inputs are files, folders (their images, one level) and glob patterns. ``-o OUT`` is a folder when there
are several inputs, when it already is a folder, or when it has no image extension; otherwise it is the
output file. Output names are the input stem + ``--suffix`` + the extension: ``--ext auto`` keeps the
input's extension, except that an image with alpha whose format cannot hold alpha (JPEG, BMP) becomes PNG.

Bit depth, gray and alpha follow the input: 16-bit in gives 16-bit out (8 bits when the chosen format,
JPEG/WebP/BMP, cannot hold 16), gray stays gray (average of the network's three output channels), alpha is
upscaled separately (MATLAB bicubic, or the network with ``--alpha-upsampler model``).

Every file is written through a checked temporary file and moved into place, so there is never a partial
output. Existing outputs are refused unless ``--overwrite``, and no output may replace any input of the run
(checked for all inputs before any work). Processing stops at the first file that fails, with one line
``gensr: error: <file>: <problem>`` and exit status 2; the outputs already written stay. With ``--keep-going``
a failing image is skipped and every failure is listed at the end (exit status 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gensr.cli import add_model_config_argument
from gensr.errors import GensrError

EXTS = ("auto", "png", "jpg", "webp", "tif")
_NO_ALPHA = {".jpg", ".jpeg", ".bmp"}
_EIGHT_BIT_ONLY = {".jpg", ".jpeg", ".webp", ".bmp"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from gensr.checkpoints.shipped import shipped_names

    p.epilog = (
        "Outputs keep the input's bit depth (16-bit PNG/TIFF stay 16-bit), gray and alpha. With --tile the "
        "image stays in CPU memory and only tiles go to the GPU; on a CUDA out-of-memory error the image "
        "is retried with smaller tiles. Existing outputs are refused unless --overwrite. Processing stops at "
        "the first file that fails (exit status 2; --keep-going skips it); outputs already written are complete "
        "and stay."
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (or file, for a single input)")
    p.add_argument(
        "-m",
        "--model",
        default="default",
        metavar="NAME_OR_CKPT",
        help=f"a shipped model ({', '.join(shipped_names('sr'))}), 'bicubic', or a checkpoint file "
        "(gensr .safetensors, official ESRGAN/BasicSR/Real-ESRGAN .pth) (default: default)",
    )
    p.add_argument("-s", "--scale", type=int, default=None, help="upscaling factor for --model bicubic (default 4)")
    p.add_argument(
        "--outscale",
        type=float,
        default=None,
        metavar="F",
        help="resize the result to F x the input size (MATLAB bicubic; Real-ESRGAN uses LANCZOS4 here)",
    )
    p.add_argument("-t", "--tile", type=int, default=0, metavar="N", help="tile size in input pixels (0 = whole image)")
    p.add_argument(
        "--tile-overlap",
        type=int,
        default=None,
        metavar="M",
        help="overlap of neighbouring tiles in input pixels, feather-blended (default 32, or N/4 below 128)",
    )
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="tiles per forward pass (default 4)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="auto = bf16 on CUDA; on the CPU bf16 when the CPU has native bf16 (AVX512-BF16 or AMX) and the "
        "model is an RRDBNet (about 2x faster; Set5 Y-PSNR of the default -0.003 dB), else fp32. A non-finite "
        "low-precision result is recomputed in fp32",
    )
    _add_output_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-file lines")


def _add_output_arguments(p: argparse.ArgumentParser) -> None:
    """Device, output naming and format, interpolation and post-processing options of ``gensr upscale``."""
    add_model_config_argument(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps, ... (default: cuda if available)")
    p.add_argument("--suffix", default="", help="appended to each output file's stem (default: none)")
    p.add_argument(
        "--ext",
        choices=EXTS,
        default="auto",
        help="output format; auto = the input's (PNG for alpha images whose format cannot hold alpha)",
    )
    p.add_argument(
        "--interp-with",
        default=None,
        metavar="CKPT",
        help="blend --model with this checkpoint of the same architecture (network interpolation)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.8,
        metavar="A",
        help="interpolation weight of --interp-with: (1-A)*model + A*other (default 0.8)",
    )
    p.add_argument(
        "--alpha-upsampler",
        choices=("bicubic", "model"),
        default="bicubic",
        help="how the transparency channel is upscaled (default bicubic; 'model' costs a second pass)",
    )
    p.add_argument(
        "--lr-consistency",
        type=int,
        default=0,
        metavar="K",
        help="post-process with K back-projection passes so that the output's bicubic downscale matches the "
        "input (default 0 = raw model output)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument(
        "--keep-going",
        action="store_true",
        help="skip an image that fails, go on with the others, report them all at the end (exit status 2)",
    )


def _is_image_name(path: Path) -> bool:
    from gensr.io import IMAGE_EXTENSIONS

    return path.suffix.lower() in IMAGE_EXTENSIONS


def _plan_outputs(files: list[Path], out: Path, suffix: str, ext: str) -> tuple[bool, list[Path]]:
    """(out is a folder, predicted output path per input) with the names checked up front."""
    as_folder = len(files) > 1 or out.is_dir() or not _is_image_name(out)
    if as_folder and out.exists() and not out.is_dir():
        raise GensrError(f"{out}: output path exists and is not a folder")
    if not as_folder and ext != "auto" and out.suffix.lower().lstrip(".") != ext:
        raise GensrError(f"{out}: the output file's extension does not match --ext {ext}")
    if len(files) > 1 and _is_image_name(out) and not out.is_dir():
        raise GensrError(f"{out}: several inputs need an output folder, not an image file name")
    targets = [out] if not as_folder else [out / f"{f.stem}{suffix}{_ext_for(f, ext)}" for f in files]
    return as_folder, targets


def _ext_for(f: Path, ext: str, has_alpha: bool = False) -> str:
    if ext != "auto":
        return "." + ext
    suffix = f.suffix if f.suffix else ".png"
    if has_alpha and suffix.lower() in _NO_ALPHA:
        return ".png"
    return suffix


def _model_files(*names: str | None) -> list[Path]:
    """The checkpoint files among ``names`` (shipped names and 'bicubic' are not files of the user's)."""
    return [Path(n).expanduser() for n in names if n and Path(n).expanduser().is_file()]


def _make_upscaler(args: argparse.Namespace):
    """The engine for this run: the torch-free :class:`~gensr.inference.bicubic.BicubicUpscaler` for plain
    ``--model bicubic`` (no torch import: ~4x faster to start), else a :class:`~gensr.inference.upscale.Upscaler`."""
    plain = args.lr_consistency == 0 and args.device is None and args.interp_with is None and not args.model_config
    if args.model == "bicubic" and plain:
        from gensr.inference.bicubic import BicubicUpscaler, check_upscale_args

        check_upscale_args(args.tile, args.tile_overlap, args.batch_size, args.scale)
        return BicubicUpscaler(args.scale)
    import torch

    from gensr.inference.upscale import Upscaler

    upscaler = Upscaler(
        args.model,
        scale=args.scale,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        precision=args.precision,
        device=args.device,
        interp_with=args.interp_with,
        alpha=args.alpha,
        batch_size=args.batch_size,
        model_config=args.model_config,
    )
    if upscaler.device.type == "cuda" and args.tile > 0:
        torch.backends.cudnn.benchmark = True  # every tile has the same shape: tune the convolutions once
    return upscaler


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from gensr.fileutil import OutputPolicy, ensure_writable_dir
    from gensr.io import list_images

    if args.lr_consistency < 0:
        raise GensrError(f"--lr-consistency must be >= 0, got {args.lr_consistency}")
    files = list_images(args.inputs)
    out = Path(args.output).expanduser()
    as_folder, targets = _plan_outputs(files, out, args.suffix, args.ext)
    # One policy for the whole run, checked before any work: no output replaces any input (a later input
    # included) or an existing file without --overwrite, and no two inputs share an output.
    policy = OutputPolicy([*files, *_model_files(args.model, args.interp_with)], overwrite=args.overwrite)
    for f, t in zip(files, targets, strict=True):
        policy.claim(t, source=f)
    ensure_writable_dir(out if as_folder else (out.parent if str(out.parent) else Path(".")))

    upscaler = _make_upscaler(args)

    no_bars = args.quiet or not sys.stderr.isatty()  # bars only on a terminal, never in logs or pipes
    failed: list[str] = []
    bar = tqdm(list(zip(files, targets, strict=True)), desc="images", unit="img", leave=False,
               disable=no_bars or len(files) < 2)  # fmt: skip
    for f, planned in bar:
        try:
            _upscale_one(f, planned, as_folder, upscaler, policy, args, no_bars)
        except GensrError as exc:
            if not args.keep_going:
                raise
            failed.append(str(exc))
            tqdm.write(f"gensr: error: {exc} (skipped; --keep-going)", file=sys.stderr)
    bar.close()
    if failed:
        print(f"gensr: error: {len(failed)} of {len(files)} image(s) failed:", file=sys.stderr)
        for line in failed:
            print(f"  {line}", file=sys.stderr)
        return 2
    return 0


def _upscale_one(f: Path, planned: Path, as_folder: bool, upscaler, policy, args, no_bars: bool) -> None:
    """Read, upscale and write one image (its output was claimed as ``planned``)."""
    from tqdm import tqdm

    from gensr.inference.bicubic import BicubicUpscaler
    from gensr.io import read_image, write_image

    img = read_image(f)
    if img.frames > 1 and not args.quiet:
        tqdm.write(f"gensr: note: {f} has {img.frames} frames; only the first is upscaled", file=sys.stderr)
    target = planned
    if as_folder:
        target = planned.with_suffix(_ext_for(f, args.ext, img.has_alpha))
        if target != planned:  # an alpha image whose format cannot hold alpha becomes PNG
            policy.claim(target, source=f)
    if img.has_alpha and target.suffix.lower() in _NO_ALPHA:
        raise GensrError(f"{f}: has an alpha channel that {target.suffix} cannot store; use --ext png")
    bit_depth = 8 if target.suffix.lower() in _EIGHT_BIT_ONLY else img.bit_depth

    start = time.perf_counter()
    h, w = img.size
    if isinstance(upscaler, BicubicUpscaler):  # integer pixel arrays in and out, no torch
        result = upscaler.run(img.pixels, outscale=args.outscale, bit_depth=bit_depth)
        alpha = None if img.alpha is None else upscaler.run_alpha(img.alpha, result.shape[:2], bit_depth)
        oh, ow = result.shape[:2]
    else:
        result, alpha = _run_network(upscaler, img, f, args, no_bars)
        oh, ow = result.shape[-2:]
    write_image(target, result, alpha, bit_depth=bit_depth, gray=img.is_gray, overwrite=args.overwrite)
    if not args.quiet:
        tqdm.write(f"{f} -> {target} ({w}x{h} -> {ow}x{oh}, {time.perf_counter() - start:.2f} s)")


def _run_network(upscaler, img, f: Path, args, no_bars: bool):
    """(RGB or gray float tensor, alpha tensor or None) of one image through an :class:`Upscaler`."""
    from tqdm import tqdm

    h, w = img.size
    x = img.rgb_tensor()[:, :1] if img.is_gray else img.rgb_tensor()
    n_tiles = upscaler.tiles_for(h, w) * (2 if img.has_alpha and args.alpha_upsampler == "model" else 1)
    with tqdm(total=n_tiles, desc=f.name, unit="tile", leave=False, disable=no_bars or n_tiles < 2) as tiles:
        result = upscaler.run(x, outscale=args.outscale, progress=_Progress(tiles), lr_consistency=args.lr_consistency)
        alpha = None
        if img.has_alpha:
            alpha = upscaler.run_alpha(
                img.alpha_tensor(), tuple(result.shape[-2:]), args.alpha_upsampler, progress=_Progress(tiles)
            )
    return result, alpha


class _Progress:
    """Adapts ``progress(done, total)`` of one tiled pass to a tqdm bar shared by several passes."""

    def __init__(self, bar) -> None:
        self.bar = bar
        self.last = 0

    def __call__(self, done: int, total: int) -> None:
        if done < self.last:  # the pass restarted (smaller tiles after running out of GPU memory)
            self.last = 0
        self.bar.update(done - self.last)
        self.last = done


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["upscale", *sys.argv[1:]]))
