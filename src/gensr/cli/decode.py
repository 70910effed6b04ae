"""``gensr decode``: decode SRFlow latents written by ``gensr encode`` back to an image.

The LR is the one stored in the ``.npz`` unless ``--lr`` is given (its size must match the stored
``lr_shape``). Missing ``eps_i`` entries (e.g. deleted to re-sample a level) are drawn from
N(0, ``--temperature``^2) with ``--seed``; ``z`` is required. The image is written atomically; its size is
``scale`` x the LR size.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from gensr.cli import add_model_config_argument
from gensr.errors import GensrError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("latents", metavar="Z.npz", help="latents from `gensr encode`")
    p.add_argument("--lr", default=None, metavar="LR", help="LR image (default: the LR stored in the file)")
    p.add_argument("-m", "--model", default="srflow", metavar="NAME_OR_CKPT", help="SRFlow checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="SR.png", help="output image")
    p.add_argument("-t", "--temperature", type=float, default=0.0, metavar="TAU", help="std of missing eps (default 0)")
    p.add_argument("--seed", type=int, default=None, help="seed for missing eps (default: random)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="output bit depth (default 8)")
    add_model_config_argument(p)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def latent_file_bound() -> int:
    """Most bytes the arrays of an encode ``.npz`` may declare: its latents (z and eps together: 3 float32 per HR
    pixel, the flow is bijective) and LR for an HR image at the pixel limit, with room to spare (16 bytes per
    pixel), and never more than half of the memory available now."""
    from gensr.io.limits import max_pixels_limit
    from gensr.system import available_memory

    bound = 16 * max_pixels_limit()
    free = available_memory()
    return bound if free is None else min(bound, free // 2)


def read_latents(path: Path) -> dict:
    """The arrays of an encode ``.npz`` (without pickle, sizes checked from the headers before loading):
    {'eps': {index: array}, 'z': ..., ...}."""
    import numpy as np

    from gensr.io.npz import read_npz

    arrays = read_npz(path, latent_file_bound(), ".npz latent file")
    if "z" not in arrays:
        raise GensrError(f"{path}: has no 'z' array (not written by `gensr encode`?)")
    for key, value in arrays.items():
        if (key in ("z", "lr") or key.startswith("eps_")) and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise GensrError(f"{path}: {key} holds {int((~np.isfinite(value)).sum())} non-finite value(s) (NaN/Inf)")
    eps = {}
    for k in arrays:
        m = re.fullmatch(r"eps_(\d+)", k)
        if m:
            eps[int(m.group(1))] = arrays[k]
    return {"eps": eps, **arrays}


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from gensr.fileutil import output_file
    from gensr.inference.flow_sampling import as_image_tensor, check_temperature, load_flow_model
    from gensr.inference.latent import decode_latents
    from gensr.inference.precision import resolve_device
    from gensr.io import IMAGE_EXTENSIONS, write_image

    exts = ", ".join(IMAGE_EXTENSIONS)
    out = output_file(args.output, args.overwrite, IMAGE_EXTENSIONS, f"an image extension ({exts})")
    tau = check_temperature(args.temperature)
    src = Path(args.latents).expanduser()
    data = read_latents(src)
    if args.lr is not None:
        lr = as_image_tensor(args.lr, "LR")
        if "lr_shape" in data and tuple(int(v) for v in data["lr_shape"]) != tuple(lr.shape[-2:]):
            h, w = (int(v) for v in data["lr_shape"])
            raise GensrError(f"{args.lr}: LR is {lr.shape[-1]}x{lr.shape[-2]}, but {src} was encoded with a {w}x{h} LR")
    elif "lr" in data:
        lr = torch.from_numpy(np.asarray(data["lr"], dtype=np.float32))
    else:
        raise GensrError(f"{src}: holds no LR; pass --lr")
    net = load_flow_model(args.model, resolve_device(args.device), config=args.model_config)
    n_eps = len(net.z_shapes((2, 2))) - 1
    extra = sorted(i for i in data["eps"] if i >= n_eps)
    if extra:
        raise GensrError(f"{src}: has eps_{extra[0]}, but this model has only {n_eps} split(s)")
    latents = [
        torch.from_numpy(np.asarray(data["eps"][i], dtype=np.float32)) if i in data["eps"] else None
        for i in range(n_eps)
    ]
    latents.append(torch.from_numpy(np.asarray(data["z"], dtype=np.float32)))
    sr = decode_latents(lr, latents, net, temperature_for_missing=tau, seed=args.seed)
    if sr.shape[0] != 1:
        raise GensrError(f"{src}: holds a batch of {sr.shape[0]} latents; decode expects one image")
    write_image(out, sr, bit_depth=args.bit_depth, overwrite=args.overwrite)
    if not args.quiet:
        print(f"{src} -> {out} ({sr.shape[-1]}x{sr.shape[-2]})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    from gensr.cli import main

    sys.exit(main(["decode", *sys.argv[1:]]))
