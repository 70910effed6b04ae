"""``gensr convert CKPT -o OUT.safetensors [--dtype fp32|fp16|bf16]``: a supported checkpoint -> gensr file.

The keys are checked strictly against the model before anything is written; the file is written atomically
with the architecture and config in its header and meta ``{"source": <input file name>, "layout": <layout>}``.
"""

from __future__ import annotations

import argparse

from gensr.cli import add_model_config_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file (.pth/.pt/.ckpt/.safetensors) or shipped name")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file, must end in .safetensors")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_model_config_argument(p)
    p.add_argument(
        "--dtype",
        choices=("bf16", "fp16", "fp32"),
        default=None,
        help="store float tensors as this type (default: as stored)",
    )


def run(args: argparse.Namespace) -> int:
    from gensr.checkpoints.gensr_format import cast_state_dict, save_checkpoint
    from gensr.checkpoints.loader import check_state_dict, read_checkpoint_any
    from gensr.checkpoints.shipped import resolve_model_path
    from gensr.fileutil import OutputPolicy, output_file
    from gensr.models.registry import build_model

    out = output_file(args.output, args.overwrite, (".safetensors",), "the .safetensors extension")
    OutputPolicy([resolve_model_path(args.checkpoint)], overwrite=args.overwrite).claim(out)
    ck = read_checkpoint_any(args.checkpoint, args.model_config)
    import torch

    with torch.device("meta"):
        model = build_model(ck.arch, ck.config)
    check_state_dict(model, ck.state_dict, f"{ck.path} ({ck.layout} layout)")
    # Write in the model's key order, so the file lists tensors the way the network is built.
    sd = cast_state_dict({k: ck.state_dict[k] for k in model.state_dict()}, args.dtype, str(ck.path))
    meta = {"source": ck.path.name, "layout": ck.layout}
    if ck.layout == "gensr" and ck.meta:
        meta["source_meta"] = ck.meta
    save_checkpoint(out, sd, ck.arch, ck.config, meta=meta, overwrite=args.overwrite)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values() if t.is_floating_point()})
    print(f"wrote {out} ({ck.layout} -> gensr, {ck.arch}, {len(sd)} tensors, {', '.join(dtypes)})")
    return 0
