"""``gensr encode``: encode an HR (or SR) image with its LR into SRFlow latents, saved as ``.npz``.

The file holds ``eps_0``, ``eps_1``, ... (the split latents, in split order) and ``z`` (the final latent),
each float32 (1, C, H, W) at the padded size; ``lr`` (the LR used, float32 (1, 3, h, w)); the scalars
``bpp`` (SRFlow's bits per pixel), ``bpd`` (bits per dimension) and ``logp`` (nats); ``model`` (the
checkpoint's file name), ``lr_shape`` (h, w), ``hr_shape`` (H, W), ``scale`` and ``noise`` (whether the HR
was dequantised before encoding). Without ``--lr`` the LR is the MATLAB-bicubic downscale (torch float
path) of the HR mod-cropped to the scale, and is stored in the file, so ``gensr decode`` needs no ``--lr``.
Arrays are plain numeric/unicode arrays: ``numpy.load(f)`` reads them without pickle.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gensr.cli import add_model_config_argument
from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hr", metavar="HR", help="the HR (or SR) image to encode")
    p.add_argument("--lr", default=None, metavar="LR", help="its LR image (default: bicubic downscale of HR)")
    p.add_argument("-m", "--model", default="srflow", metavar="NAME_OR_CKPT", help="SRFlow checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="Z.npz", help="output .npz file")
    p.add_argument(
        "--noise",
        action="store_true",
        help="dequantise the HR with U(-1/2, 1/2)/quant noise before encoding (default: encode it exactly)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --noise draw (default 0)")
    add_model_config_argument(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def model_label(model) -> str:
    """The checkpoint's file name (or the shipped name) for the ``model`` entry."""
    return Path(str(model)).name


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from gensr.fileutil import atomic_path, output_file
    from gensr.inference.flow_sampling import load_flow_model
    from gensr.inference.latent import encode
    from gensr.inference.precision import resolve_device

    out = output_file(args.output, args.overwrite, (".npz",), "to be a .npz file")
    if out.is_dir():
        raise GensrError(f"{out}: is a folder, expected a .npz file name")
    net = load_flow_model(args.model, resolve_device(args.device), config=args.model_config)
    enc = encode(args.hr, args.lr, net, add_noise=args.noise, seed=args.seed)
    s = enc["scale"]
    h, w = enc["lr_size"]
    arrays = {f"eps_{i}": e.numpy() for i, e in enumerate(enc["eps"])}
    arrays.update(
        z=enc["z"].numpy(),
        lr=enc["lr"].numpy(),
        bpp=np.float64(enc["bpp"]),
        bpd=np.float64(enc["bpd"]),
        logp=np.float64(enc["logp"]),
        model=np.str_(model_label(args.model)),
        lr_shape=np.array([h, w], dtype=np.int64),
        hr_shape=np.array([h * s, w * s], dtype=np.int64),
        scale=np.int64(s),
        noise=np.bool_(args.noise),
    )
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    if not args.quiet:
        shapes = ", ".join(f"{k} {tuple(v.shape[1:])}" for k, v in arrays.items() if k.startswith(("eps_", "z")))
        print(f"{args.hr} -> {out}: bpd {enc['bpd']:.4f}, bpp {enc['bpp']:.4f}; latents {shapes}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["encode", *sys.argv[1:]]))
