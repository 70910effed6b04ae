"""``gensr convert CKPT -o OUT.safetensors [--dtype fp32|fp16|bf16]``: a supported checkpoint -> gensr file.

The keys are checked strictly against the model before anything is written; the file is written atomically
with the architecture and config in its header and meta ``{"source": <input file name>, "layout": <layout>}``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gensr.errors import GensrError

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint", metavar="CKPT", help="checkpoint file (.pth/.pt/.ckpt/.safetensors) or shipped name"
    )
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="output file, must end in .safetensors"
    )
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="store float tensors as this type (default: as stored)",
    )


def output_path(path: str) -> Path:
    """``path`` as a Path; GensrError unless it ends in .safetensors."""
    out = Path(path)
    if out.suffix.lower() != ".safetensors":
        raise GensrError(f"{out}: output must be a .safetensors file")
    if out.is_dir():
        raise GensrError(f"{out}: is a folder, expected an output file name")
    return out


def cast_state_dict(sd: dict, dtype_name: str | None, source: str) -> dict:
    """Float tensors cast to ``dtype_name`` (fp32/fp16/bf16 or None = unchanged); GensrError on overflow."""
    import torch

    if dtype_name is None:
        return sd
    dtype = getattr(torch, DTYPES[dtype_name])
    out = {}
    for key, t in sd.items():
        if t.is_floating_point():
            c = t.to(dtype)
            if not torch.isfinite(c).all() and torch.isfinite(t).all():
                raise GensrError(f"{source}: {key} overflows {dtype_name}; keep fp32 or use bf16")
            t = c
        out[key] = t
    return out


def run(args: argparse.Namespace) -> int:
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.checkpoints.loader import check_state_dict, read_checkpoint_any
    from gensr.models.registry import build_model

    out = output_path(args.output)
    ck = read_checkpoint_any(args.checkpoint)
    import torch

    with torch.device("meta"):
        model = build_model(ck.arch, ck.config)
    check_state_dict(model, ck.state_dict, f"{ck.path} ({ck.layout} layout)")
    # Write in the model's key order, so the file lists tensors the way the network is built.
    sd = cast_state_dict({k: ck.state_dict[k] for k in model.state_dict()}, args.dtype, str(ck.path))
    meta = {"source": ck.path.name, "layout": ck.layout}
    if ck.layout == "gensr" and ck.meta:
        meta["source_meta"] = ck.meta
    save_checkpoint(out, sd, ck.arch, ck.config, meta=meta)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values() if t.is_floating_point()})
    print(f"wrote {out} ({ck.layout} -> gensr, {ck.arch}, {len(sd)} tensors, {', '.join(dtypes)})")
    return 0
