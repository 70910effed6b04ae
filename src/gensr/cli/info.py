"""``gensr info CKPT``: the detected layout, architecture, hyper-parameters, parameter count and dtype.

Works on gensr safetensors files (also prints their meta) and on every official layout the loader detects;
the keys are checked strictly against the model, so a checkpoint that would not load fails here too.
"""

from __future__ import annotations

import argparse
import json

from gensr.cli import add_model_config_argument


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", metavar="CKPT", help="checkpoint file (.pth/.pt/.ckpt/.safetensors) or shipped name")
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    add_model_config_argument(p)


def run(args: argparse.Namespace) -> int:
    from gensr.checkpoints.loader import describe

    d = describe(args.checkpoint, config=args.model_config)
    if args.json:
        print(json.dumps(d, indent=2, sort_keys=True))
        return 0
    how = []
    if d["wrappers"]:
        how.append("wrappers: " + " > ".join(d["wrappers"]))
    if d["prefixes_stripped"]:
        how.append("prefix stripped: " + ", ".join(d["prefixes_stripped"]))
    rows = [
        ("file", d["file"]),
        ("layout", d["layout"] + (f" ({'; '.join(how)})" if how else "")),
        ("arch", d["arch"]),
        ("config", " ".join(f"{k}={v}" for k, v in d["config"].items())),
        ("parameters", f"{d['parameters']:,}"),
        ("tensors", str(d["tensors"])),
        ("dtype", d["dtype"]),
    ]
    if d.get("assumed"):
        rows.append(("assumed", "; ".join(f"{k}: {v}" for k, v in d["assumed"].items())))
    if d.get("ignored_entries"):
        rows.append(("ignored", ", ".join(d["ignored_entries"])))
    if "meta" in d:
        rows.append(("meta", json.dumps(d["meta"], sort_keys=True)))
    width = max(len(k) for k, _ in rows) + 1
    for key, value in rows:
        print(f"{key + ':':<{width}} {value}")
    return 0
