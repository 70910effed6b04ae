"""``gensr interpolate A B --alpha 0.8 -o OUT.safetensors``: network interpolation of two checkpoints.

Every float tensor becomes ``(1 - alpha) * A + alpha * B`` (ESRGAN's PSNR <-> GAN trade-off); both files must
hold the same architecture and config (any supported layout). ``alpha`` must lie in [0, 1].
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("a", metavar="A", help="first checkpoint (alpha 0 gives this one), file or shipped name")
    p.add_argument("b", metavar="B", help="second checkpoint (alpha 1 gives this one), file or shipped name")
    p.add_argument("--alpha", type=float, required=True, help="weight of B in [0, 1]")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output file, must end in .safetensors")
    p.add_argument(
        "--dtype", choices=("bf16", "fp16", "fp32"), default="fp32", help="store float tensors as (default fp32)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gensr.checkpoints.gensr_format import cast_state_dict, save_checkpoint
    from gensr.checkpoints.shipped import resolve_model_path
    from gensr.fileutil import OutputPolicy, output_file
    from gensr.inference.interpolation import check_alpha, interpolate_models
    from gensr.models.registry import arch_of, model_config_dict

    alpha = check_alpha(args.alpha)
    out = output_file(args.output, args.overwrite, (".safetensors",), "the .safetensors extension")
    inputs = [resolve_model_path(args.a), resolve_model_path(args.b)]
    OutputPolicy(inputs, overwrite=args.overwrite).claim(out)
    model = interpolate_models(args.a, args.b, alpha)
    sd = cast_state_dict(model.state_dict(), args.dtype, str(out))
    meta = {
        "source": f"interpolation of {Path(args.a).name} and {Path(args.b).name}",
        "layout": "gensr",
        "interpolation": {"a": Path(args.a).name, "b": Path(args.b).name, "alpha": alpha},
    }
    save_checkpoint(out, sd, arch_of(model), model_config_dict(model), meta=meta, overwrite=args.overwrite)
    print(f"wrote {out} ((1 - {alpha:g}) * {Path(args.a).name} + {alpha:g} * {Path(args.b).name})")
    return 0
