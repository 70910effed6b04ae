"""``gensr convert CKPT -o OUT.safetensors [--dtype fp32|fp16|bf16] [--set KEY=VALUE ...]``: a supported
checkpoint -> gensr file.

The keys are checked strictly against the model before anything is written; the file is written atomically
with the architecture and config in its header and meta ``{"source": <input file name>, "layout": <layout>}``.
``--set`` changes a config field that does not shape the weights (the config class's ``ARITHMETIC_FIELDS``:
SRFlow's reverse-pass guards ``net_input_bound``, ``min_scale``, ``max_prior_logs`` and its default ``heat``);
the changed fields are listed in the meta as ``"set"``.
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
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a config field that does not shape the weights (e.g. SRFlow's net_input_bound); repeatable",
    )


def apply_settings(arch: str, config: dict, settings: list[str]) -> tuple[dict, dict]:
    """``config`` with the ``KEY=VALUE`` ``settings`` applied (only ``arch``'s arithmetic fields, values parsed as
    YAML scalars; their ranges are checked when the model is built) -> (new config, the changes)."""
    import yaml

    from gensr.errors import GensrError
    from gensr.models.registry import arithmetic_fields

    allowed = arithmetic_fields(arch)
    changes: dict = {}
    for item in settings:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise GensrError(f"--set {item!r}: expected KEY=VALUE")
        if key not in allowed:
            what = ", ".join(allowed) if allowed else "none for this architecture"
            raise GensrError(f"--set {key}: not a setting that leaves the weights alone (allowed: {what})")
        try:
            changes[key] = yaml.safe_load(text)
        except yaml.YAMLError:
            raise GensrError(f"--set {item!r}: cannot parse the value") from None
    return {**config, **changes}, changes


def run(args: argparse.Namespace) -> int:
    from gensr.checkpoints.gensr_format import cast_state_dict, save_checkpoint
    from gensr.checkpoints.loader import check_state_dict, read_checkpoint_any
    from gensr.checkpoints.shipped import resolve_model_path
    from gensr.fileutil import OutputPolicy, output_file
    from gensr.models.registry import build_model

    out = output_file(args.output, args.overwrite, (".safetensors",), "the .safetensors extension")
    OutputPolicy([resolve_model_path(args.checkpoint)], overwrite=args.overwrite).claim(out)
    ck = read_checkpoint_any(args.checkpoint, args.model_config)
    config, changes = apply_settings(ck.arch, ck.config, args.settings)
    import torch

    with torch.device("meta"):
        model = build_model(ck.arch, config)
    check_state_dict(model, ck.state_dict, f"{ck.path} ({ck.layout} layout)")
    # Write in the model's key order, so the file lists tensors the way the network is built.
    sd = cast_state_dict({k: ck.state_dict[k] for k in model.state_dict()}, args.dtype, str(ck.path))
    meta = {"source": ck.path.name, "layout": ck.layout}
    if ck.layout == "gensr" and ck.meta:
        meta["source_meta"] = ck.meta
    if changes:
        meta["set"] = changes
    save_checkpoint(out, sd, ck.arch, config, meta=meta, overwrite=args.overwrite)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values() if t.is_floating_point()})
    print(f"wrote {out} ({ck.layout} -> gensr, {ck.arch}, {len(sd)} tensors, {', '.join(dtypes)})")
    return 0
