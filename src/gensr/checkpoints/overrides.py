"""Settings an official checkpoint cannot tell, taken from its official training config.

Official files store weights only. Most of a model's config follows from the tensor shapes (the detectors infer
it), but not everything: which RRDB blocks an SRFlow model taps (the weights only tell how many), or whether a
Real-ESRGAN U-Net discriminator uses skip connections. A detector sets such fields to the released models' values
and lists them in :attr:`Detected.assumed`. ``load_model(path, config=...)`` (CLI ``--model-config``) overrides
them from

* the official training YAML: SRFlow's (``network_G.flow.stackRRDB.blocks``, ``flow.K``, ``flow.L``, ``nf``,
  ``nb``, ``scale``) or BasicSR's (``network_g``/``network_d``: ``type``, ``num_feat``, ``num_block``,
  ``num_grow_ch``, ``num_in_ch``, ``skip_connection``, ``scale``), or
* a mapping of gensr config field names (YAML file or Python dict).

A value that contradicts what the weights show (e.g. ``nf: 64`` for 32-channel weights) is an error, never
applied silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gensr.checkpoints.detected import Detected
from gensr.config import read_yaml_mapping
from gensr.errors import GensrError

# official YAML key -> gensr field, per architecture (paths are dotted inside the network section)
_SRFLOW = {"flow.stackRRDB.blocks": "rrdb_blocks", "flow.K": "K", "flow.L": "L", "nf": "nf", "nb": "nb"}
_BASICSR_G = {"num_feat": "nf", "num_block": "nb", "num_grow_ch": "gc", "num_in_ch": "in_ch", "num_out_ch": "out_ch"}
_BASICSR_D = {"num_feat": "nf", "num_in_ch": "in_ch", "skip_connection": "skip_connection"}
_SECTIONS = {
    "srflow": (("network_G",), _SRFLOW),
    "rrdbnet": (("network_g", "network_G"), _BASICSR_G),
    "unet_discriminator": (("network_d", "network_D"), _BASICSR_D),
    "vgg_discriminator": (("network_d", "network_D"), _BASICSR_D),
}


def _get(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _from_official(tree: dict[str, Any], arch: str, where: Path) -> dict[str, Any] | None:
    """gensr fields from an official YAML tree, or None if it has no network section for ``arch``."""
    if arch not in _SECTIONS:
        return None
    names, table = _SECTIONS[arch]
    section = next((tree[n] for n in names if isinstance(tree.get(n), dict)), None)
    if section is None:
        return None
    out = {field: v for key, field in table.items() if (v := _get(section, key)) is not None}
    scale = section.get("scale", tree.get("scale"))
    if scale is not None:
        out["scale"] = scale
    return out


def _read(config: str | os.PathLike | dict[str, Any], arch: str) -> tuple[dict[str, Any], str]:
    if isinstance(config, dict):
        return dict(config), "the given config"
    p = Path(config).expanduser()
    tree = read_yaml_mapping(p, "model config", "a model config must be a mapping")
    official = _from_official(tree, arch, p)
    return (official if official is not None else tree), str(p)


def apply_config_overrides(
    found: Detected, config: str | os.PathLike | dict[str, Any] | None, source: Path
) -> dict[str, Any]:
    """``found.config`` with ``config`` applied (see the module docstring); the names of the overridden fields
    are listed under the key ``_overridden``."""
    cfg = dict(found.config)
    if config is None:
        return cfg
    values, where = _read(config, found.arch)
    overridden = []
    for field, value in values.items():
        if field in found.assumed or field not in cfg:
            cfg[field] = value
            overridden.append(field)
        elif cfg[field] != value:
            raise GensrError(f"{source}: {where} says {field}={value!r}, but the weights have {field}={cfg[field]!r}")
    cfg["_overridden"] = overridden
    return cfg
