"""``gensr manipulate``: SRFlow latent-space editing (paper section 5), one sub-mode per edit.

* ``normalize IMAGE [--lr LR] --mode global|local|spatial [--mask PNG]``: encode, give the chosen sets of
  latents the statistics of a fresh N(0, tau^2) draw, decode (``--mask``: only inside the mask).
* ``resample IMAGE [--lr LR] (--mask PNG | --region x,y,w,h)``: redraw the latents inside the region at
  every level, decode: a new stochastic variant of that region only.
* ``transfer --lr LR --source B --region x,y,w,h [--at x,y] [--sr SR]``: paste the region of image B
  (HR pixels) into the SR of LR (``--sr``, or a sample drawn at ``--temperature``), encode with LR, local
  normalisation inside the pasted region only, decode: B's content adapted to stay consistent with LR.
* ``restore IMAGE [--lr LR] [--modes spatial,local]``: encode a degraded HR with its own LR (default: its
  bicubic downscale), normalise (spatial then local), decode.

IMAGE is an HR/SR image at ``scale`` x the LR; without ``--lr`` the LR is its MATLAB-bicubic downscale (the
image is mod-cropped to the scale first). Masks: any image; pixels > 0.5 in any channel are inside, resized
(nearest) to the HR size, then any-pooled to each latent level. Regions are ``x,y,w,h`` in HR pixels.
``--temperature`` defaults to the model's heat (0.9); without ``--seed`` a random seed is drawn and printed.
The result is written atomically to ``-o``; the LR-PSNR of the result against the LR used is printed
(MATLAB bicubic downscale, RGB, dB).
"""

from __future__ import annotations

import argparse
import sys

from gensr.cli import add_model_config_argument
from gensr.errors import GensrError

SUBMODES = ("normalize", "resample", "transfer", "restore")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default="srflow", metavar="NAME_OR_CKPT", help="SRFlow checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image file")
    p.add_argument(
        "-t", "--temperature", type=float, default=None, metavar="TAU", help="target latent std (default: heat)"
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    add_model_config_argument(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="output bit depth (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="mode", metavar="MODE")
    sub.required = True
    q = sub.add_parser("normalize", help="latent normalisation (global, local or spatial)")
    q.add_argument("image", metavar="IMAGE", help="HR or SR image to edit")
    q.add_argument("--lr", default=None, metavar="LR", help="its LR (default: bicubic downscale of IMAGE)")
    q.add_argument("--mode", dest="norm_mode", default="global", help="global | local | spatial (default global)")
    q.add_argument("--mask", default=None, metavar="PNG", help="normalise only inside this mask")
    _common(q)
    q = sub.add_parser("resample", help="redraw the latents inside a mask or region")
    q.add_argument("image", metavar="IMAGE", help="HR or SR image to edit")
    q.add_argument("--lr", default=None, metavar="LR", help="its LR (default: bicubic downscale of IMAGE)")
    q.add_argument("--mask", default=None, metavar="PNG", help="region to re-sample (white = inside)")
    q.add_argument("--region", default=None, metavar="X,Y,W,H", help="rectangle to re-sample, HR pixels")
    _common(q)
    q = sub.add_parser("transfer", help="paste content from another image and make it LR-consistent")
    q.add_argument("--lr", required=True, metavar="LR", help="LR of the image to edit")
    q.add_argument("--source", required=True, metavar="B", help="image to take content from (HR scale)")
    q.add_argument("--region", required=True, metavar="X,Y,W,H", help="rectangle of B to paste, HR pixels")
    q.add_argument("--at", default=None, metavar="X,Y", help="where to paste it (default: the same x,y)")
    q.add_argument("--sr", default=None, metavar="SR", help="SR image to edit (default: a sample of LR)")
    _common(q)
    q = sub.add_parser("restore", help="restore a degraded HR image through its latents")
    q.add_argument("image", metavar="IMAGE", help="degraded HR image")
    q.add_argument("--lr", default=None, metavar="LR", help="its LR (default: bicubic downscale of IMAGE)")
    q.add_argument("--modes", default="spatial,local", help="normalisations in order (default spatial,local)")
    _common(q)


def parse_ints(text: str, count: int, option: str) -> tuple[int, ...]:
    """'10,20,30,40' -> (10, 20, 30, 40); GensrError naming ``option`` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != count:
        names = "x,y,w,h" if count == 4 else "x,y"
        raise GensrError(f"{option} {text!r}: expected {count} integers {names}")
    if any(v < 0 for v in values):
        raise GensrError(f"{option} {text!r}: values must be >= 0")
    return values


def run(args: argparse.Namespace) -> int:
    import torch

    from gensr.fileutil import output_file
    from gensr.inference import latent
    from gensr.inference.flow_sampling import as_image_tensor, check_temperature, load_flow_model, resolve_seed
    from gensr.inference.precision import resolve_device
    from gensr.io import IMAGE_EXTENSIONS, write_image

    exts = ", ".join(IMAGE_EXTENSIONS)
    out = output_file(args.output, args.overwrite, IMAGE_EXTENSIONS, f"an image extension ({exts})")
    if args.temperature is not None:
        check_temperature(args.temperature)
    if args.seed is not None and args.seed < 0:
        raise GensrError(f"--seed must be >= 0, got {args.seed}")
    mode = args.mode
    if mode == "normalize" and args.norm_mode not in latent.MODES:
        raise GensrError(f"--mode must be one of {', '.join(latent.MODES)}, got {args.norm_mode!r}")
    if mode == "resample" and (args.mask is None) == (args.region is None):
        raise GensrError("resample needs exactly one of --mask and --region")
    region = parse_ints(args.region, 4, "--region") if getattr(args, "region", None) else None
    at = parse_ints(args.at, 2, "--at") if getattr(args, "at", None) else None
    modes = ()
    if mode == "restore":
        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        bad = [m for m in modes if m not in latent.MODES]
        if not modes or bad:
            raise GensrError(f"--modes {args.modes!r}: use a comma list of {', '.join(latent.MODES)}")

    seed = resolve_seed(args.seed)
    net = load_flow_model(args.model, resolve_device(args.device), config=args.model_config)
    tau = net.config.heat if args.temperature is None else float(args.temperature)
    kw = dict(temperature=tau, seed=seed)
    if mode == "transfer":
        lr = as_image_tensor(args.lr, "LR")
        result = latent.transfer(lr, args.source, region, net, sr=args.sr, at=at, **kw)
    else:
        pair = latent.prepare_pair(args.image, args.lr, net)
        lr = pair.lr
        if mode == "normalize":
            result = latent.normalize(pair.hr, net, lr=lr, mode=args.norm_mode, mask=args.mask, **kw)
        elif mode == "resample":
            mask = args.mask
            if region is not None:
                mask = latent.region_mask(tuple(pair.hr.shape[-2:]), region)
            result = latent.resample(pair.hr, mask, net, lr=lr, **kw)
        else:
            result = latent.restore(pair.hr, net, lr=lr, modes=modes, **kw)
    if not bool(torch.isfinite(result).all()):  # pragma: no cover - the decoders clamp and replace NaN
        raise GensrError("the decoded image is not finite")
    write_image(out, result, bit_depth=args.bit_depth, overwrite=args.overwrite)
    if not args.quiet:
        score = latent.lr_psnr_torch(result, lr, int(net.config.scale))
        print(
            f"{mode} -> {out} ({result.shape[-1]}x{result.shape[-2]}, temperature {tau:.2f}, seed {seed}); "
            f"LR-PSNR {score:.2f} dB"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["manipulate", *sys.argv[1:]]))
