"""Official RRDBNet (ESRGAN / Real-ESRGAN) state dicts -> gensr's :class:`~gensr.models.rrdbnet.RRDBNet`.

Three key generations (reference: docs of ``xinntao/ESRGAN``, BasicSR, Real-ESRGAN; see esrgan.md §1.3):

* ``esrgan-old`` -- the 2018 flattened ``nn.Sequential``: ``model.0`` conv_first,
  ``model.1.sub.{i}.RDB{k}.conv{j}.0.*``, ``model.1.sub.{nb}`` trunk conv, then per upsample block
  (Upsample, Conv, LReLU) up convs at ``model.3``, ``model.6`` (, ``model.9``), HR conv at ``3k+2`` and the
  last conv at ``3k+4`` for ``k`` blocks.
* ``esrgan-intermediate`` -- ``RRDB_trunk.{i}.RDB{k}.conv{j}``, ``trunk_conv``, ``upconv{m}``, ``HRconv``
  (``xinntao/ESRGAN:RRDBNet_arch.py``, BSRGAN/RealSR).
* ``basicsr`` -- BasicSR v1 names, identical to gensr's: ``body.{i}.rdb{k}.conv{j}``, ``conv_body``,
  ``conv_up{m}``, ``conv_hr``. With a pixel-unshuffled input (conv_first sees 4x or 16x the output channels)
  the layout is reported as ``real-esrgan-x2plus`` or ``real-esrgan-x1``.

nf, nb, gc, in/out channels, scale and the unshuffle factor are inferred from shapes; an input with 4x (16x)
the output channels means a pixel-unshuffle by 2 (4), i.e. scale 2 (1) through the x4 body.
Old-arch checkpoints with one or zero upsample blocks (x2/x3 or x1 without unshuffle) are a different network
from gensr's unshuffle x2/x1 and are refused with a clear error. Keys a layout does not know are passed
through unchanged, so strict loading reports them as unexpected.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import torch

from gensr.checkpoints.detected import Detected, rename_keys
from gensr.errors import GensrError

DESCRIPTION = (
    "RRDBNet/ESRGAN (old `model.N` sequential, intermediate `RRDB_trunk`, BasicSR `body.N.rdbK`, "
    "Real-ESRGAN x4plus/x2plus/x1, x8)"
)

_OLD_RDB = re.compile(r"^model\.1\.sub\.(\d+)\.RDB([123])\.conv([1-5])\.0\.(weight|bias)$")
_OLD_TOP = re.compile(r"^model\.(\d+)\.(weight|bias)$")
_OLD_TRUNK = re.compile(r"^model\.1\.sub\.(\d+)\.(weight|bias)$")
_MID_RDB = re.compile(r"^RRDB_trunk\.(\d+)\.RDB([123])\.conv([1-5])\.(weight|bias)$")
_MID_RENAMES = {
    "trunk_conv": "conv_body",
    "HRconv": "conv_hr",
    "conv_first": "conv_first",
    "conv_last": "conv_last",
}
_MID_UP = re.compile(r"^upconv(\d)\.(weight|bias)$")
_NEW_RDB = re.compile(r"^body\.(\d+)\.rdb([123])\.conv([1-5])\.(weight|bias)$")
_NEW_UP = re.compile(r"^conv_up(\d)\.(weight|bias)$")


def detect(sd: dict[str, torch.Tensor], source: str | os.PathLike | None = None) -> Detected | None:
    """The RRDBNet layout of ``sd`` with its inferred config, or None if it is not an RRDBNet state dict."""
    if any(".conv1x1." in k for k in sd) and ("model.0.weight" in sd or "conv_first.weight" in sd):
        raise GensrError(
            "ESRGAN+ checkpoint (RDBs with extra conv1x1 layers) is not supported: gensr's RRDBNet is the "
            "plain ESRGAN generator"
        )
    if "model.0.weight" in sd and any(_OLD_RDB.match(k) for k in sd):
        convert = _old_converter(sd)
        layout = "esrgan-old"
    elif "conv_first.weight" in sd and any(_MID_RDB.match(k) for k in sd):
        convert = _rename_intermediate
        layout = "esrgan-intermediate"
    elif "conv_first.weight" in sd and any(_NEW_RDB.match(k) for k in sd):
        convert = _rename_basicsr
        layout = "basicsr"
    else:
        return None
    config = infer_config(convert(sd))
    if layout == "basicsr" and config["scale"] in (1, 2):
        layout = {2: "real-esrgan-x2plus", 1: "real-esrgan-x1"}[config["scale"]]
    return Detected(arch="rrdbnet", layout=layout, config=config, convert=convert)


def infer_config(sd: dict[str, torch.Tensor]) -> dict:
    """RRDBNetConfig fields from a gensr-layout RRDBNet state dict (shapes only)."""
    for key in ("conv_first.weight", "conv_last.weight", "body.0.rdb1.conv1.weight"):
        if key not in sd:
            raise GensrError(f"RRDBNet checkpoint without {key!r}, cannot infer its shape")
        if sd[key].dim() != 4:
            raise GensrError(f"RRDBNet checkpoint: {key!r} has shape {tuple(sd[key].shape)}, expected a 4-d conv")
    nf, in_total = sd["conv_first.weight"].shape[:2]
    out_ch = sd["conv_last.weight"].shape[0]
    gc = sd["body.0.rdb1.conv1.weight"].shape[0]
    blocks = {int(m.group(1)) for k in sd if (m := _NEW_RDB.match(k))}
    nb = _contiguous(blocks, "RRDB block")
    ups = sorted({int(m.group(1)) for k in sd if (m := _NEW_UP.match(k))})
    if ups != list(range(1, len(ups) + 1)):
        raise GensrError(f"RRDBNet checkpoint with upsample convs {ups}, expected 1..k")
    num_up = len(ups)
    unshuffle = 1
    if in_total == 16 * out_ch:
        unshuffle = 4
    elif in_total == 4 * out_ch:
        unshuffle = 2
    in_ch = in_total // unshuffle**2
    if unshuffle > 1:
        if num_up != 2:
            raise GensrError(
                f"RRDBNet with a pixel-unshuffle-by-{unshuffle} input and {num_up} upsample stage(s) is not "
                "supported (Real-ESRGAN x2/x1 use exactly two)"
            )
        scale = 4 // unshuffle
    elif num_up in (2, 3):
        scale = 2**num_up
    else:
        raise GensrError(
            f"RRDBNet with {num_up} upsample stage(s) and no pixel-unshuffle is not supported: gensr builds "
            "x4 (2 stages), x8 (3 stages) and x2/x1 by pixel-unshuffle into the x4 body"
        )
    return {
        "scale": scale,
        "in_ch": int(in_ch),
        "out_ch": int(out_ch),
        "nf": int(nf),
        "nb": nb,
        "gc": int(gc),
    }


# ------------------------------------------------------------------------------------------- renaming


def _rename_basicsr(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return dict(sd)


def _key_renamer(
    rdb: re.Pattern[str], rdb_name: str, up: re.Pattern[str], up_name: str, names: dict[str, str]
) -> Callable[[str], str]:
    """Key renaming between the ``esrgan-intermediate`` and BasicSR names, in one direction: RDB conv keys
    matching ``rdb`` and upsample conv keys matching ``up`` become ``rdb_name`` / ``up_name`` (``str.format``
    of the match groups), ``{base}.weight|bias`` of a ``names`` base is renamed, anything else is kept."""

    def rename(key: str) -> str:
        if m := rdb.match(key):
            return rdb_name.format(*m.groups())
        if m := up.match(key):
            return up_name.format(*m.groups())
        base, _, param = key.rpartition(".")
        if base in names and param in ("weight", "bias"):
            return f"{names[base]}.{param}"
        return key

    return rename


_FROM_INTERMEDIATE = _key_renamer(_MID_RDB, "body.{}.rdb{}.conv{}.{}", _MID_UP, "conv_up{}.{}", _MID_RENAMES)
_TO_INTERMEDIATE = _key_renamer(
    _NEW_RDB, "RRDB_trunk.{}.RDB{}.conv{}.{}", _NEW_UP, "upconv{}.{}", {v: k for k, v in _MID_RENAMES.items()}
)


def _rename_intermediate(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return rename_keys(sd, _FROM_INTERMEDIATE)


def to_intermediate(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """gensr/BasicSR RRDBNet names -> the ``esrgan-intermediate`` names (``RRDB_trunk.{i}.RDB{k}.conv{j}``,
    ``trunk_conv``, ``upconv{m}``, ``HRconv``; the inverse of that layout's renaming), which SRFlow's encoder
    uses. Keys already in those names, and unknown keys, are kept."""
    return rename_keys(sd, _TO_INTERMEDIATE)


def _old_converter(
    sd: dict[str, torch.Tensor],
) -> Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
    """The renaming for an old-arch dict, whose module indices depend on nb and the upsample count."""
    blocks = {int(m[1]) for k in sd if (m := _OLD_RDB.match(k))}
    nb = _contiguous(blocks, "RRDB block")
    trunk = {int(m[1]) for k in sd if (m := _OLD_TRUNK.match(k))}
    if trunk != {nb}:
        raise GensrError(
            f"old-arch ESRGAN checkpoint: expected the trunk conv at model.1.sub.{nb} after {nb} RRDBs, "
            f"found {sorted(trunk) or 'none'}"
        )
    top = sorted({int(m[1]) for k in sd if (m := _OLD_TOP.match(k))})
    last = max(top)
    k, rem = divmod(last - 4, 3)
    if rem or k < 0:
        raise GensrError(f"old-arch ESRGAN checkpoint with top-level convs {top}: cannot place the last conv")
    if k < 2:
        scale_text = {1: "x2 (or x3)", 0: "x1"}[k]
        raise GensrError(
            f"old-arch {scale_text} with {k} upsample block(s) is not supported: gensr's RRDBNet makes x2/x1 "
            "by pixel-unshuffle into the x4 body (Real-ESRGAN style), a different network"
        )
    names = {0: "conv_first", 3 * k + 2: "conv_hr", 3 * k + 4: "conv_last"}
    names.update({3 * (m + 1): f"conv_up{m + 1}" for m in range(k)})

    def rename(key: str) -> str:
        if m := _OLD_RDB.match(key):
            return f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"
        if (m := _OLD_TRUNK.match(key)) and int(m[1]) == nb:
            return f"conv_body.{m[2]}"
        if (m := _OLD_TOP.match(key)) and int(m[1]) in names:
            return f"{names[int(m[1])]}.{m[2]}"
        return key

    return lambda d: rename_keys(d, rename)


def _contiguous(indices: set[int], what: str) -> int:
    """``len(indices)`` when they are exactly 0..n-1; GensrError otherwise (a stray ``body.200000`` key must not
    make gensr build 200,001 blocks)."""
    n = len(indices)
    if indices != set(range(n)):
        stray = sorted(indices - set(range(n)))[:3] or sorted(set(range(n)) - indices)[:3]
        raise GensrError(f"{what} indices are not 0..{n - 1} (e.g. {stray}): a corrupt or edited checkpoint")
    return n
