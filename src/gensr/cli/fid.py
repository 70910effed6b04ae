"""``gensr fid``: FID of generated images against a reference (and with ``--is`` their Inception Score).

GEN is a folder of images or an ``.npz`` holding ``x``, uint8 (N, H, W, 3). ``--ref`` is the same kind of
source, or a statistics ``.npz`` written earlier with ``--save-ref-stats`` (the usual protocol: statistics of
the training set, computed once). Images in one source must share one size; gray images are repeated to RGB,
alpha is dropped, 16-bit images are refused (the metrics are defined on 8-bit RGB).

The network is the TF Inception-v3 of 2015-12-05 (:mod:`gensr.nn.inception`) with pytorch-fid's or
torch-fidelity's weights file, from ``--inception-weights`` or ``$GENSR_INCEPTION_WEIGHTS`` (nothing is
downloaded); resize, IS splits and shuffling and the exact Frechet distance follow torch-fidelity
(:mod:`gensr.metrics.inception`). On CUDA, TF32 is switched off for the run so that convolutions stay float32.
Published numbers use 50 000 generated images and training-set statistics: report N with every value.

Statistics saved with ``--save-ref-stats`` carry the weights digest and the preprocessing; statistics made with
other weights are refused. ``--foreign-ref-stats`` accepts an ``.npz`` with only ``mu``/``sigma`` (pytorch-fid's
``--save-stats``, TTUR's published files) as pool_3 statistics of these weights, on the user's word.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gensr.errors import GensrError

WEIGHTS_ENV = "GENSR_INCEPTION_WEIGHTS"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "gen", metavar="GEN", help="generated images: a folder of images or an .npz with x (N, H, W, 3) uint8"
    )
    p.add_argument(
        "--ref",
        required=True,
        metavar="REF",
        help="reference: a folder of images, an .npz with x, or a statistics .npz from --save-ref-stats",
    )
    p.add_argument(
        "--inception-weights",
        metavar="PATH",
        help=f"pt_inception-2015-12-05-6726825d.pth (pytorch-fid) or weights-inception-2015-12-05-6726825d.pth "
        f"(torch-fidelity) (default: ${WEIGHTS_ENV})",
    )
    p.add_argument("--is", dest="inception_score", action="store_true", help="also print the Inception Score of GEN")
    p.add_argument("--splits", type=int, default=10, metavar="K", help="Inception Score splits (default 10)")
    p.add_argument("--save-ref-stats", metavar="PATH", help="write the reference statistics to PATH (.npz)")
    p.add_argument(
        "--foreign-ref-stats",
        action="store_true",
        help="accept a --ref .npz with only mu/sigma (no gensr metadata) as pool_3 statistics of these weights",
    )
    p.add_argument("--batch-size", type=int, default=50, metavar="B", help="images per forward (default 50)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--json", metavar="FILE", help="also write the scores and settings as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace existing --json / --save-ref-stats files")


@dataclass
class _Source:
    """An image set: ``n`` images of one ``size`` (h, w) read in uint8 (B, H, W, 3) batches."""

    label: str
    n: int
    files: list[Path]
    batches: Callable[[int], Iterator]


def _from_npz(path: Path, label: str) -> _Source:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if "x" not in keys:
                stats = " (a statistics file: only --ref takes one)" if {"mu", "sigma"} <= set(keys) else ""
                raise GensrError(f"{path}: {label} .npz has no 'x' array (keys: {', '.join(keys) or 'none'}){stats}")
            x = z["x"]
    except GensrError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise GensrError(f"{path}: not a readable .npz ({' '.join(str(exc).split())[:160]})") from None
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
        raise GensrError(f"{path}: 'x' must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise GensrError(f"{path}: 'x' holds no images (shape {x.shape})")

    def batches(size: int) -> Iterator:
        for i in range(0, x.shape[0], size):
            yield x[i : i + size]

    return _Source(label, int(x.shape[0]), [path], batches)


def _rgb8(pixels, path: Path):
    import numpy as np

    if pixels.dtype != np.uint8:
        raise GensrError(f"{path}: 16-bit image; FID/IS are defined on 8-bit RGB images")
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def _from_folder(path: Path, label: str) -> _Source:
    import numpy as np

    from gensr.io import list_images, read_array

    files = list_images([path])

    def batches(size: int) -> Iterator:
        first: tuple[Path, tuple[int, int]] | None = None
        for i in range(0, len(files), size):
            batch = []
            for f in files[i : i + size]:
                img = _rgb8(read_array(f), f)
                if first is None:
                    first = (f, img.shape[:2])
                elif img.shape[:2] != first[1]:
                    raise GensrError(
                        f"{f}: {img.shape[1]}x{img.shape[0]} differs from {first[0].name} "
                        f"({first[1][1]}x{first[1][0]}); {label} images must share one size"
                    )
                batch.append(img)
            yield np.stack(batch)

    return _Source(label, len(files), files, batches)


def _open(spec: str, label: str) -> _Source:
    path = Path(spec).expanduser()
    if path.is_dir():
        return _from_folder(path, label)
    if not path.exists():
        raise GensrError(f"{path}: {label} does not exist")
    if path.suffix.lower() != ".npz":
        raise GensrError(f"{path}: {label} must be a folder of images or an .npz with x (N, H, W, 3) uint8")
    return _from_npz(path, label)


def _check_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise GensrError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.splits < 1:
        raise GensrError(f"--splits must be >= 1, got {args.splits}")


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import OutputPolicy, write_json_atomic
    from gensr.metrics.frechet import is_stats_file, load_feature_stats, save_feature_stats
    from gensr.nn.inception import resolve_weights_path

    _check_args(args)
    weights = resolve_weights_path(args.inception_weights)  # a missing weights file fails before any reading
    gen = _open(args.gen, "GEN")
    ref_path = Path(args.ref).expanduser()
    ref_is_stats = ref_path.is_file() and ref_path.suffix.lower() == ".npz" and is_stats_file(ref_path)
    ref = None if ref_is_stats else _open(args.ref, "--ref")
    if ref_is_stats and args.save_ref_stats:
        raise GensrError(f"{ref_path}: --save-ref-stats needs reference images, --ref is already statistics")
    if gen.n < 2 or (ref is not None and ref.n < 2):
        small = gen if gen.n < 2 else ref
        raise GensrError(f"{args.gen if small is gen else args.ref}: FID needs at least 2 images, got {small.n}")
    if args.inception_score and gen.n < args.splits:
        raise GensrError(f"{args.gen}: the Inception Score with {args.splits} splits needs >= {args.splits} images")
    policy = OutputPolicy([*gen.files, *(ref.files if ref else [ref_path]), weights], overwrite=args.overwrite)
    for out in (args.json, args.save_ref_stats):
        if out:
            policy.claim(out)

    net = _load_net(weights, args.device)
    from gensr.metrics.inception import (
        fid_from_stats,
        fid_statistics,
        image_fid_statistics,
        inception_identity,
        inception_outputs,
        inception_score,
    )

    if ref is None:
        ref_stats = load_feature_stats(ref_path, expect=inception_identity(net), allow_foreign=args.foreign_ref_stats)
    else:
        _note(f"reference: Inception features of {ref.n} images from {args.ref}")
        ref_stats = image_fid_statistics(net, ref.batches(args.batch_size), args.batch_size, progress=True)
        if args.save_ref_stats:
            save_feature_stats(args.save_ref_stats, ref_stats, overwrite=args.overwrite)
            _note(f"wrote reference statistics to {args.save_ref_stats}")
    _note(f"generated: Inception features of {gen.n} images from {args.gen}")
    pool, logits = inception_outputs(net, gen.batches(args.batch_size), args.batch_size, progress=True)
    fid = fid_from_stats(fid_statistics(net, pool), ref_stats)
    n_ref = ref_stats.n if ref_stats.n else "unknown"
    print(f"FID: {fid:.4f}  (GEN {gen.n} images, REF {n_ref} images)")
    is_mean = is_std = None
    if args.inception_score:
        is_mean, is_std = inception_score(logits, splits=args.splits)
        print(f"IS: {is_mean:.4f} +- {is_std:.4f}  ({args.splits} splits, shuffled with seed 2020)")
    if args.json:
        doc = _json_doc(args, net, fid, is_mean, is_std, gen.n, ref_stats.n)
        write_json_atomic(args.json, doc, overwrite=args.overwrite)
        _note(f"wrote {args.json}")
    return 0


def _note(message: str) -> None:
    print(f"gensr: {message}", file=sys.stderr, flush=True)


def _load_net(weights: Path, device_name: str | None):
    import torch

    from gensr.inference.precision import resolve_device
    from gensr.nn.inception import InceptionV3FID

    device = resolve_device(device_name)
    if device.type == "cuda":  # keep the float32 convolutions and matmuls of the reference implementations
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return InceptionV3FID(weights).to(device)


def _json_doc(args, net, fid: float, is_mean, is_std, n_gen: int, n_ref: int) -> dict:
    from gensr.nn.inception import PREPROCESS

    doc = {"fid": fid, "n_gen": n_gen, "n_ref": n_ref or None}
    if is_mean is not None:
        doc["inception_score"] = {"mean": is_mean, "std": is_std, "splits": args.splits, "shuffle_seed": 2020}
    doc["settings"] = {
        "gen": str(args.gen),
        "ref": str(args.ref),
        "inception_weights": str(net.weights_path),
        "weights_digest": net.weights_digest,
        "preprocess": PREPROCESS,
        "features": "pool_3 (2048), float64 mean and unbiased covariance; exact matrix square root",
        "is_logits": "1008 logits without the fc bias, softmax in float64",
    }
    return doc
