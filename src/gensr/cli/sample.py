"""``gensr sample``: draw diverse SR images from an SRFlow model for LR files, folders or glob patterns.

Output names: ``DIR/<stem>_t<temperature, 2 decimals>_seed<seed>_s<sample index, 3 digits>.<ext>``, e.g.
``out/baby_t0.90_seed0_s000.png ... out/baby_t0.90_seed0_s009.png`` (``gensr eval`` pairs them with their GT).
With the same seed, sample ``i`` of an image is the same whatever ``--num-samples``, ``--batch-size``,
``--tile`` or the device (it depends only on the seed, ``i``, the temperature and the LR size); every image uses
the same seed. Without ``--seed`` a random seed is drawn, printed and written into the names.

All inputs are read and all output names checked before any sampling, so a bad input or an existing output
(without ``--overwrite``) stops the command before anything is written; each file is written atomically, as
soon as its sample is made (memory does not grow with ``--num-samples``; at most 10,000 per image).
Gray inputs are replicated to RGB (the output is RGB); 16-bit inputs give 16-bit PNG/TIFF outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gensr.cli import add_model_config_argument
from gensr.errors import GensrError

EXTS = ("png", "jpg", "webp", "tif")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="LR", help="LR image files, folders or glob patterns")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "-m", "--model", default="srflow", metavar="NAME_OR_CKPT", help="SRFlow checkpoint (default: srflow)"
    )
    p.add_argument(
        "-t",
        "--temperature",
        type=float,
        default=None,
        metavar="TAU",
        help="latent std; 0 = deterministic mean (default: the model's heat, 0.9)",
    )
    p.add_argument("-n", "--num-samples", type=int, default=1, metavar="N", help="samples per image (default 1)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    p.add_argument("--batch-size", type=int, default=4, metavar="B", help="decoder passes per forward (default 4)")
    p.add_argument("--tile", type=int, default=0, metavar="N", help="tile size in LR pixels (0 = whole image)")
    p.add_argument("--tile-overlap", type=int, default=16, metavar="M", help="tile overlap in LR pixels (default 16)")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16", "fp16"),
        default="fp32",
        help="autocast dtype of the convolutions on CUDA (flow arithmetic stays fp32; default fp32)",
    )
    p.add_argument(
        "--lr-consistency",
        type=int,
        default=0,
        metavar="K",
        help="post-process each sample with K back-projection passes so that its bicubic downscale matches the "
        "LR (default 0 = raw model output)",
    )
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--ext", choices=EXTS, default="png", help="output format (default png)")
    add_model_config_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-file lines or progress bar")


def output_name(stem: str, temperature: float, seed: int, index: int, ext: str = "png") -> str:
    """``<stem>_t0.90_seed0_s000.png``."""
    return f"{stem}_t{temperature:.2f}_seed{seed}_s{index:03d}.{ext}"


def _redrawn_note(regions: int) -> str:
    return f"; {regions} broken region(s) re-drawn" if regions else ""


def run(args: argparse.Namespace) -> int:
    from gensr.checkpoints.shipped import resolve_model_path
    from gensr.fileutil import OutputPolicy, ensure_writable_dir
    from gensr.inference.flow_sampling import MAX_SAMPLES, FlowSampler, check_temperature, resolve_seed
    from gensr.io import list_images, read_image

    if not 1 <= args.num_samples <= MAX_SAMPLES:
        raise GensrError(f"--num-samples must be in [1, {MAX_SAMPLES}], got {args.num_samples}")
    if args.temperature is not None:
        check_temperature(args.temperature)
    if args.lr_consistency < 0:
        raise GensrError(f"--lr-consistency must be >= 0, got {args.lr_consistency}")
    seed = resolve_seed(args.seed)
    out = Path(args.output).expanduser()
    if out.exists() and not out.is_dir():
        raise GensrError(f"{out}: output path exists and is not a folder")
    files = list_images(args.inputs)
    images = [read_image(f) for f in files]  # every input is valid before anything is written
    model = args.model
    if args.model_config:
        from gensr.checkpoints.loader import load_model

        model = load_model(args.model, config=args.model_config)
    sampler = FlowSampler(
        model, device=args.device, precision=args.precision, batch_size=args.batch_size,
        tile=args.tile, tile_overlap=args.tile_overlap,
    )  # fmt: skip
    tau = sampler.default_temperature if args.temperature is None else float(args.temperature)
    model_files = [resolve_model_path(args.model)] if isinstance(args.model, str) else []
    policy = OutputPolicy([*files, *model_files], overwrite=args.overwrite)
    targets = [[out / output_name(f.stem, tau, seed, i, args.ext) for i in range(args.num_samples)] for f in files]
    for f, ts in zip(files, targets, strict=True):
        for t in ts:
            policy.claim(t, source=f)
    ensure_writable_dir(out)
    if not args.quiet:
        print(f"seed {seed}, temperature {tau:.2f}, {args.num_samples} sample(s) per image", file=sys.stderr)
    for f, img, ts in zip(files, images, targets, strict=True):
        _sample_one(f, img, ts, sampler, tau, seed, args)
    return 0


def _next_chunk(chunks, f: Path, done: int, total: int):
    """The next batch of samples, or None at the end; a sample that stays broken becomes an error naming the input
    ``f`` and how many samples were written before it (write errors name their own files and pass unchanged)."""
    try:
        return next(chunks)
    except StopIteration:
        return None
    except GensrError as e:
        raise GensrError(f"{f}: {e} ({done} of {total} sample(s) written)") from None


def _sample_one(f: Path, img, ts: list[Path], sampler, tau: float, seed: int, args: argparse.Namespace) -> None:
    """Draw and write the samples of one image, each written as soon as its chunk is made."""
    import time

    from tqdm import tqdm

    from gensr.io import write_image

    start, redrawn = time.perf_counter(), sampler.stats["redrawn_regions"]
    depth = img.bit_depth if args.ext in ("png", "tif") else 8
    chunks = sampler.sample_iter(
        img.rgb_tensor(), temperature=tau, num_samples=len(ts), seed=seed, chunk=max(1, args.batch_size),
        lr_consistency=args.lr_consistency,
    )  # fmt: skip
    bar = tqdm(total=len(ts), desc=f.name, unit="sample", leave=False,
               disable=args.quiet or not sys.stderr.isatty() or len(ts) < 2)  # fmt: skip
    done = 0
    try:
        while (batch := _next_chunk(chunks, f, done, len(ts))) is not None:
            for k in range(batch.shape[0]):
                write_image(ts[done], batch[k : k + 1], bit_depth=depth, overwrite=args.overwrite)
                done += 1
            bar.update(batch.shape[0])
    finally:
        bar.close()
    if not args.quiet:
        (h, w), (oh, ow) = img.size, (img.size[0] * sampler.scale, img.size[1] * sampler.scale)
        print(
            f"{f} -> {ts[0].parent}/{ts[0].name}{' ...' if len(ts) > 1 else ''} ({w}x{h} -> {ow}x{oh}, "
            f"{len(ts)} sample(s), {time.perf_counter() - start:.2f} s"
            f"{_redrawn_note(sampler.stats['redrawn_regions'] - redrawn)})"
        )


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["sample", *sys.argv[1:]]))
