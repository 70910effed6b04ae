"""Official SRFlow state dicts (``andreas128/SRFlow``: ``SRFlow_DF2K_4X.pth``, ``SRFlow_DF2K_8X.pth``,
``SRFlow_CelebA_8X.pth``) -> :class:`~gensr.models.srflow.SRFlowNet`.

The official file is ``netG.module.state_dict()`` (the loader strips a ``module.`` prefix): ``RRDB.*`` with
the old ESRGAN names and ``flowUpsamplerNet.layers.{i}.*`` / ``flowUpsamplerNet.f.0.*``. gensr's module tree
uses the same names, so conversion is the identity. Inferred from the keys and shapes: scale (number of
``upconv``), nf, nb, gc, L (squeeze layers = index gaps), K and transition steps per level, hidden channels,
the 1x1-conv parametrisation, and the number of tapped RRDB blocks (conditioning channels / nf - 1). *Which*
blocks are tapped is not stored in the weights: the released choice for the scale is used ([1, 8, 15, 22]
for 4x, [1, 3, 5, 7] for 8x and for encoders with fewer than 23 blocks, e.g. CelebA 8x).
"""

from __future__ import annotations

import os
import re

import torch

from gensr.checkpoints.detected import Detected, rename_keys
from gensr.checkpoints.rrdb_official import _contiguous, to_intermediate
from gensr.errors import GensrError

DESCRIPTION = "SRFlow official (`RRDB.*` + `flowUpsamplerNet.layers.N.*`, DF2K 4x/8x, CelebA 8x)"

_LAYER = re.compile(r"^flowUpsamplerNet\.layers\.(\d+)\.(.+)$")
_TRUNK = re.compile(r"^RRDB\.RRDB_trunk\.(\d+)\.")
_UPCONV = re.compile(r"^RRDB\.upconv(\d+)\.weight$")
_RELEASED_TAPS = {4: [1, 8, 15, 22], 8: [1, 3, 5, 7]}


def detect(sd: dict[str, torch.Tensor], source: str | os.PathLike | None = None) -> Detected | None:
    """The SRFlow layout of ``sd`` with its inferred config, or None if these are not SRFlow keys."""
    if "RRDB.conv_first.weight" not in sd or not any(_LAYER.match(k) for k in sd):
        return None
    assumed = {
        "rrdb_blocks": "the weights store how many RRDB blocks feed the flow, not which; the released models' "
        "taps are assumed (pass the official training YAML as --model-config for others)"
    }
    return Detected("srflow", "srflow-official", infer_config(sd), convert, assumed=assumed)


def convert(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official names are gensr's names: identity (a new dict)."""
    return dict(sd)


def rrdb_encoder_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An RRDBNet state dict in the names of SRFlow's encoder (``SRFlowNet.RRDB``, the official
    ``RRDB_trunk`` names), for :func:`gensr.models.srflow.load_rrdb_encoder`: gensr/BasicSR names are renamed
    (:func:`gensr.checkpoints.rrdb_official.to_intermediate`), official names are kept, an ``RRDB.`` prefix (the
    encoder inside a whole SRFlow state dict) is dropped. Two keys landing on one name is a GensrError."""
    unprefixed = rename_keys(sd, lambda key: key[len("RRDB.") :] if key.startswith("RRDB.") else key)
    return to_intermediate(unprefixed)


def infer_config(sd: dict[str, torch.Tensor]) -> dict:
    """SRFlowConfig fields from an official SRFlow state dict (shapes and key structure only)."""
    nf = int(sd["RRDB.conv_first.weight"].shape[0])
    trunk = {int(m.group(1)) for k in sd if (m := _TRUNK.match(k))}
    if not trunk:
        raise GensrError("SRFlow checkpoint without RRDB.RRDB_trunk blocks")
    nb = _contiguous(trunk, "RRDB block")
    gc = int(sd["RRDB.RRDB_trunk.0.RDB1.conv1.weight"].shape[0])
    ups = sorted(int(m.group(1)) for k in sd if (m := _UPCONV.match(k)))
    if ups not in ([1, 2], [1, 2, 3]):
        raise GensrError(f"SRFlow checkpoint with upconv{ups}: only 4x (2 upconvs) and 8x (3) are supported")
    scale = 2 ** len(ups)

    layers: dict[int, set[str]] = {}
    for k in sd:
        m = _LAYER.match(k)
        if m:
            layers.setdefault(int(m.group(1)), set()).add(m.group(2))
    if max(layers) > 4 * len(layers) + 8:  # squeeze layers hold no tensors, so gaps exist, but not thousands
        raise GensrError(f"SRFlow checkpoint: flow layer index {max(layers)} with only {len(layers)} layers present")
    kinds = []
    for i in range(max(layers) + 1):
        names = layers.get(i, set())
        if not names:
            kinds.append("squeeze")  # squeeze layers hold no tensors
        elif any(n.startswith("affine.") for n in names):
            kinds.append("step")
        elif any(n.startswith("actnorm.") for n in names):
            kinds.append("transition")
        elif "conv.weight" in names:
            kinds.append("split")
        else:
            raise GensrError(f"SRFlow checkpoint: unknown flow layer {i} with {sorted(names)[:4]}")
    levels = _levels(kinds)
    L = len(levels)
    n_transition = levels[0].count("transition")
    K = levels[0].count("step")
    for lvl, seq in enumerate(levels, start=1):
        want = ["squeeze"] + ["transition"] * n_transition + ["step"] * K + (["split"] if lvl < L - 1 else [])
        if seq != want:
            raise GensrError(
                f"SRFlow checkpoint: flow level {lvl} is {_runs(seq)}, gensr builds {_runs(want)} "
                f"(squeeze, {n_transition} transition, {K} conditional steps, split only below level L-1)"
            )
    if L < 1 or K < 1:
        raise GensrError("SRFlow checkpoint without conditional flow steps")

    first_step = kinds.index("step")
    prefix = f"flowUpsamplerNet.layers.{first_step}."
    lu = f"{prefix}invconv.lower" in sd
    if not lu and f"{prefix}invconv.weight" not in sd:
        raise GensrError(f"SRFlow checkpoint: layer {first_step} has no invconv weight")
    feat = sd[f"{prefix}affine.fFeatures.0.weight"]
    hidden, cond = int(feat.shape[0]), int(feat.shape[1])
    if cond % nf or cond // nf < 1:
        raise GensrError(f"SRFlow checkpoint: {cond} conditioning channels is not a multiple of nf={nf}")
    n_taps = cond // nf - 1
    taps = _RELEASED_TAPS[scale]
    if len(taps) != n_taps or max(taps) >= nb:
        taps = _RELEASED_TAPS[8]
    if len(taps) != n_taps or max(taps) >= nb:
        raise GensrError(
            f"SRFlow checkpoint taps {n_taps} RRDB blocks of {nb}: which ones is not stored in the weights "
            "and no released layout matches"
        )
    return {
        "scale": scale,
        "nf": nf,
        "nb": nb,
        "gc": gc,
        "K": K,
        "L": L,
        "n_transition": n_transition,
        "hidden": hidden,
        "rrdb_blocks": list(taps),
        "lu_decomposed": lu,
    }


def _levels(kinds: list[str]) -> list[list[str]]:
    if not kinds or kinds[0] != "squeeze":
        raise GensrError("SRFlow checkpoint: the flow does not start with a squeeze (layer 0 holds tensors)")
    levels: list[list[str]] = []
    for kind in kinds:
        if kind == "squeeze":
            levels.append([])
        levels[-1].append(kind)
    return levels


def _runs(seq: list[str]) -> str:
    out: list[str] = []
    for kind in seq:
        if out and out[-1].rsplit("x", 1)[0] == kind:
            n = int(out[-1].rsplit("x", 1)[1]) + 1
            out[-1] = f"{kind}x{n}"
        else:
            out.append(f"{kind}x1")
    return ", ".join(out)
