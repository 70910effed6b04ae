"""``gensr convert CKPT -o OUT.safetensors [--dtype fp32|fp16|bf16] [--set KEY=VALUE ...]``: a supported
checkpoint -> gensr file.

The keys are checked strictly against the model before anything is written; the file is written atomically
with the architecture and config in its header and meta ``{"source": <input file name>, "layout": <layout>}``.
``--set`` changes a config field that does not shape the weights (the config class's ``ARITHMETIC_FIELDS``:
SRFlow's reverse-pass guards ``net_input_bound``, ``min_scale``, ``max_prior_logs`` and its default ``heat``);
the changed fields are listed in the meta as ``"set"``.
``--grow-k K`` (SRFlow only) deepens the flow to K conditional steps per level with identity steps
(:mod:`gensr.models.srflow_grow`): the file computes exactly what the input does, a warm start for training a
deeper flow; the meta records ``"grown_from_K"``.
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
    p.add_argument(
        "--grow-k",
        type=int,
        default=None,
        metavar="K",
        help="SRFlow only: insert identity flow steps up to K per level (same function; a warm start to train)",
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


def grow_state_dict(arch: str, config: dict, state_dict: dict, k_new: int) -> tuple[dict, dict, int]:
    """(config, state dict) of an SRFlow deepened to ``k_new`` steps per level -> (config, state dict, old K).

    Built in float32 on the CPU; the tensors come back in the stored float dtype."""
    from gensr.errors import GensrError
    from gensr.models.registry import build_model
    from gensr.models.srflow_grow import grow_srflow

    if arch != "srflow":
        raise GensrError(f"--grow-k: only for srflow models, this is {arch}")
    k_old = int(config.get("K", 0))
    if not k_old < k_new <= 128:
        raise GensrError(f"--grow-k {k_new}: must be more than the model's K ({k_old}) and at most 128")
    model = build_model(arch, config)
    model.load_state_dict({k: v.float() for k, v in state_dict.items()})
    grown = grow_srflow(model, k_new)
    keep = next(v.dtype for v in state_dict.values() if v.is_floating_point())
    out = {k: (v.to(keep) if v.is_floating_point() else v) for k, v in grown.state_dict().items()}
    return {**config, "K": int(k_new)}, out, k_old


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
    state_dict = ck.state_dict
    grown_from = None
    if args.grow_k is not None:
        config, state_dict, grown_from = grow_state_dict(ck.arch, config, state_dict, args.grow_k)
        with torch.device("meta"):
            model = build_model(ck.arch, config)
    # Write in the model's key order, so the file lists tensors the way the network is built.
    sd = cast_state_dict({k: state_dict[k] for k in model.state_dict()}, args.dtype, str(ck.path))
    meta = {"source": ck.path.name, "layout": ck.layout}
    if ck.layout == "gensr" and ck.meta:
        meta["source_meta"] = ck.meta
    if changes:
        meta["set"] = changes
    if grown_from is not None:
        meta["grown_from_K"] = grown_from
    save_checkpoint(out, sd, ck.arch, config, meta=meta, overwrite=args.overwrite)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in sd.values() if t.is_floating_point()})
    print(f"wrote {out} ({ck.layout} -> gensr, {ck.arch}, {len(sd)} tensors, {', '.join(dtypes)})")
    return 0
