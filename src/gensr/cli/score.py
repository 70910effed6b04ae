"""``gensr score``: how likely SR images are under an SRFlow model, in bits per dimension.

Any SR image can be scored, e.g. an ESRGAN output against the SRFlow model of the same scale: lower bits/dim
means the image is more probable under the flow given its LR. SR and LR files are paired by name stem:

* a single SR file with a single LR file are paired whatever their names;
* otherwise an SR file pairs with the LR whose stem, or whose stem without a trailing scale tag
  (``babyx4``, ``baby_x4``, ``baby_LRx4`` -> ``baby``), equals the SR stem or is its prefix followed by
  ``_``, ``-`` or ``.`` (``baby_t0.90_s000``, ``baby_rlt``, ``baby-esrgan``); the longest such stem wins.
  An SR file without an LR partner is an error (nothing is scored).

Reported per image and as the mean (see :func:`gensr.inference.latent.score_image`):

* ``bpd``: (-log p + D ln q) / (D ln 2), D = 3HW, q = the model's quantisation (32): with the default
  dequantisation noise it is the expected value over ``--noise-draws`` uniform draws (fixed ``--seed``), a
  Monte-Carlo estimate of an upper bound on the discrete bits/dim; ``--no-noise`` evaluates the density at
  the image itself instead (no bound, but deterministic with one pass);
* ``bpp``: the number SRFlow's code calls nll (bits per pixel, not per dimension).

Sizes: each SR must be ``scale`` x its LR; odd LR sides are cropped (bottom/right) to even before scoring.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from gensr.cli import add_model_config_argument
from gensr.errors import GensrError

_SCALE_TAG = re.compile(r"(?:[_-]?LR)?(?:[_-]?[xX]\d+)?$")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default="srflow", metavar="NAME_OR_CKPT", help="SRFlow checkpoint")
    p.add_argument("--sr", nargs="+", required=True, metavar="SR", help="SR images: files, folders or globs")
    p.add_argument("--lr", nargs="+", required=True, metavar="LR", help="LR images: files, folders or globs")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the scores as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument(
        "--noise-draws", type=int, default=1, metavar="K", help="dequantisation draws averaged per image (default 1)"
    )
    p.add_argument("--no-noise", action="store_true", help="score the image itself, without dequantisation")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise draws (default 0)")
    add_model_config_argument(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the mean")


def lr_key(stem: str) -> str:
    """An LR stem without a trailing scale tag: 'babyx4' -> 'baby', 'img_001_LRx4' -> 'img_001'."""
    key = _SCALE_TAG.sub("", stem)
    return key or stem


def pair_files(srs: list[Path], lrs: list[Path]) -> list[tuple[Path, Path]]:
    """(SR, LR) pairs by the rules in the module docstring; GensrError for an unmatched SR file."""
    if len(srs) == 1 and len(lrs) == 1:
        return [(srs[0], lrs[0])]
    keys: dict[str, Path] = {}
    for f in lrs:
        for key in {f.stem, lr_key(f.stem)}:
            if key in keys and keys[key] != f:
                raise GensrError(f"{f}: LR name is ambiguous with {keys[key]} (both match '{key}')")
            keys[key] = f
    pairs = []
    for sr in srs:
        best = None
        for key, f in keys.items():
            if sr.stem == key or (sr.stem.startswith(key) and sr.stem[len(key)] in "_-."):
                if best is None or len(key) > len(best[0]):
                    best = (key, f)
        if best is None:
            raise GensrError(f"{sr}: no LR image pairs with it (expected an LR named like '{sr.stem}x4')")
        pairs.append((sr, best[1]))
    return pairs


def run(args: argparse.Namespace) -> int:
    from gensr.fileutil import OutputPolicy, write_json_atomic
    from gensr.inference.flow_sampling import load_flow_model
    from gensr.inference.latent import score_image
    from gensr.inference.precision import resolve_device
    from gensr.io import list_images

    if args.noise_draws < 1:
        raise GensrError(f"--noise-draws must be >= 1, got {args.noise_draws}")
    pairs = pair_files(list_images(args.sr), list_images(args.lr))
    json_path = None
    if args.json:  # checked before any work: never an input, never an existing file without --overwrite
        json_path = OutputPolicy([f for pair in pairs for f in pair], overwrite=args.overwrite).claim(args.json)
    net = load_flow_model(args.model, resolve_device(args.device), config=args.model_config)
    rows = []
    for sr, lr in pairs:
        try:
            res = score_image(sr, lr, net, noise_draws=args.noise_draws, add_noise=not args.no_noise, seed=args.seed)
        except GensrError as exc:
            raise GensrError(f"{sr}: {exc}") from None
        rows.append({"sr": str(sr), "lr": str(lr), **res})
        if not args.quiet:
            print(f"{sr.name:<32} bpd {res['bpd']:8.4f}  bpp {res['bpp']:9.4f}  ({lr.name})")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("bpd", "bpp", "logp")}
    noise = "no noise" if args.no_noise else f"{args.noise_draws} noise draw(s), seed {args.seed}"
    print(f"mean over {len(rows)} image(s): bpd {mean['bpd']:.4f}, bpp {mean['bpp']:.4f} ({noise})")
    if json_path is not None:
        doc = {
            "model": str(args.model),
            "noise": not args.no_noise,
            "noise_draws": 0 if args.no_noise else args.noise_draws,
            "seed": args.seed,
            "images": rows,
            "mean": mean,
        }
        write_json_atomic(json_path, doc, overwrite=args.overwrite)
    return 0


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["score", *sys.argv[1:]]))
