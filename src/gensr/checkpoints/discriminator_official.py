"""Official discriminator state dicts -> gensr's :mod:`~gensr.models.discriminators`.

Layouts (see esrgan.md section 2):

* ``basicsr`` -- BasicSR v1 ``VGGStyleDiscriminator`` (also the 2019 BasicSR ``Discriminator_VGG_128``):
  ``conv0_0``, ``conv0_1``, ``bn0_1``, ..., ``conv4_1``, ``bn4_1`` (``conv5_*``/``bn5_*`` for 256 input),
  ``linear1``, ``linear2``. Identical to gensr's names; convs after conv0_0 have no bias (``conv_bias``
  is inferred, so a variant with biases loads too).
* ``esrgan-2018`` -- the 2018 ESRGAN/BasicSR ``Discriminaotr_VGG_128``
  (``codes/models/modules/architecture.py``). Its ``features`` is built by ``block.sequential``, which
  *flattens* each conv block (conv, BN, LReLU) into one ``nn.Sequential``: ``features.0`` conv0 (3x3, bias,
  no BN), ``features.1`` LReLU, then for block K >= 1 the conv at ``features.{3K-1}`` and its BN at
  ``features.{3K}``; ``classifier.0`` / ``classifier.2`` are the two linears.
  All convs keep their biases (``conv_bias=True``, 14,502,281 parameters at 128/nf 64).
* ``esrgan-2018-nested`` -- the same network with each block kept as its own ``nn.Sequential``
  (``features.K.0`` conv, ``features.K.1`` BN), the layout esrgan.md describes; accepted as well.
* ``real-esrgan`` -- ``UNetDiscriminatorSN`` (``RealESRGAN_x4plus_netD.pth``): ``conv0``, ``conv1..conv8``
  with ``weight_orig``/``weight_u``/``weight_v`` (torch's hook spectral norm), ``conv9``. Same as gensr's.

Old checkpoints whose BatchNorms lack ``num_batches_tracked`` (PyTorch < 0.4.1) get it filled with 0.
Keys a layout does not know are passed through unchanged, so strict loading reports them as unexpected.
``skip_connection`` of the U-Net D has no weights and cannot be inferred: it is taken as True (Real-ESRGAN).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

import torch

from gensr.checkpoints.detected import Detected, rename_keys
from gensr.errors import GensrError

DESCRIPTION = (
    "discriminators (ESRGAN VGG-style: BasicSR `conv0_0..linear2`, 2018 `features.N`/`classifier.N`; "
    "Real-ESRGAN U-Net with spectral norm)"
)

_FLAT = re.compile(r"^features\.(\d+)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_NESTED = re.compile(r"^features\.(\d+)\.([01])\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_CLASSIFIER = re.compile(r"^classifier\.([02])\.(weight|bias)$")
_STAGE_CONV = re.compile(r"^conv(\d+)_1\.weight$")


def detect(sd: dict[str, torch.Tensor], source: str | os.PathLike | None = None) -> Detected | None:
    """The discriminator layout of ``sd`` with its inferred config, or None if it is not a known D."""
    if "conv0.weight_orig" in sd and "linear0.weight_orig" in sd:
        raise GensrError(
            "2018 ESRGAN `Discriminaotr_VGG_128_SN` checkpoint (spectral norm, no BatchNorm) is not "
            "supported; gensr has the BatchNorm VGG-style D and the Real-ESRGAN U-Net D"
        )
    if "conv0_0.weight" in sd and "linear1.weight" in sd and "linear2.weight" in sd:
        return _vgg_detected(sd, "basicsr", _fill_bn_counters)
    if "conv0.weight" in sd and "conv9.weight" in sd and "conv1.weight_orig" in sd:
        config = infer_unet_config(sd)
        assumed = {"skip_connection": "not stored in the weights; True (Real-ESRGAN) is assumed"}
        return Detected("unet_discriminator", "real-esrgan", config, dict, assumed=assumed)
    if "classifier.0.weight" in sd and "classifier.2.weight" in sd and "classifier.6.weight" not in sd:
        if "features.0.0.weight" in sd:
            return _vgg_detected(sd, "esrgan-2018-nested", _convert_nested)
        if "features.0.weight" in sd and "features.3.running_mean" in sd:
            return _vgg_detected(sd, "esrgan-2018", _convert_flat)
    return None


def _vgg_detected(
    sd: dict[str, torch.Tensor],
    layout: str,
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]],
) -> Detected:
    config = infer_vgg_config(convert(sd))
    return Detected(arch="vgg_discriminator", layout=layout, config=config, convert=convert)


# ----------------------------------------------------------------------------------------------- configs


def infer_vgg_config(sd: dict[str, torch.Tensor]) -> dict:
    """VGGDiscriminatorConfig fields from a gensr-layout VGG-style D state dict (shapes only)."""
    w = sd.get("conv0_0.weight")
    if w is None or w.dim() != 4:
        raise GensrError("VGG-style discriminator checkpoint without a 4-d 'conv0_0.weight'")
    nf, in_ch = int(w.shape[0]), int(w.shape[1])
    stages = sorted(int(m.group(1)) for k in sd if (m := _STAGE_CONV.match(k)))
    if not stages or stages != list(range(len(stages))):
        raise GensrError(f"VGG-style discriminator checkpoint: stride-2 convs conv{{i}}_1 found for stages {stages}")
    n = len(stages)
    last_ch = nf * min(2 ** (n - 1), 8)
    lin = sd.get("linear1.weight")
    if lin is None or lin.dim() != 2:
        raise GensrError("VGG-style discriminator checkpoint without a 2-d 'linear1.weight'")
    if int(lin.shape[1]) != last_ch * 16:
        side = (int(lin.shape[1]) / last_ch) ** 0.5 if int(lin.shape[1]) % last_ch == 0 else float("nan")
        raise GensrError(
            f"VGG-style discriminator checkpoint: linear1 takes {int(lin.shape[1])} inputs, expected "
            f"{last_ch}x4x4 = {last_ch * 16} (final feature map {side:g}x{side:g}?); only inputs of "
            "4 * 2**stages pixels (final 4x4, e.g. 128 or 256) are supported"
        )
    return {
        "in_ch": in_ch,
        "nf": nf,
        "input_size": 4 * 2**n,
        "conv_bias": "conv0_1.bias" in sd,
    }


def infer_unet_config(sd: dict[str, torch.Tensor]) -> dict:
    """UNetDiscriminatorConfig fields from a U-Net D state dict (shapes only; skip_connection assumed)."""
    w = sd["conv0.weight"]
    if w.dim() != 4:
        raise GensrError(f"U-Net discriminator checkpoint: 'conv0.weight' has shape {tuple(w.shape)}")
    return {"in_ch": int(w.shape[1]), "nf": int(w.shape[0]), "skip_connection": True}


# ----------------------------------------------------------------------------------------------- converters


def _block_name(k: int) -> str:
    """2018 conv block K -> gensr suffix ``{stage}_{0|1}``: conv0 -> 0_0, conv1 -> 0_1, conv2 -> 1_0."""
    return f"{k // 2}_{k % 2}"


def _flat_feature_name(key: str) -> str | None:
    """2018 flattened ``features.N.leaf`` (conv0_0 at 0, then conv at 3K-1 and BN at 3K) -> gensr name."""
    m = _FLAT.match(key)
    if not m:
        return None
    idx, leaf = int(m.group(1)), m.group(2)
    if idx == 0 and leaf in ("weight", "bias"):
        return f"conv0_0.{leaf}"
    block, rem = divmod(idx + 1, 3)  # conv of block K at 3K-1 (rem 0), its BN at 3K (rem 1)
    if block >= 1 and rem == 0 and leaf in ("weight", "bias"):
        return f"conv{_block_name(block)}.{leaf}"
    if block >= 1 and rem == 1:
        return f"bn{_block_name(block)}.{leaf}"
    return None


def _nested_feature_name(key: str) -> str | None:
    """2018 per-block ``features.K.{0 conv, 1 BN}.leaf`` -> gensr name."""
    m = _NESTED.match(key)
    if not m:
        return None
    block, sub, leaf = int(m.group(1)), m.group(2), m.group(3)
    if sub == "0" and leaf in ("weight", "bias"):
        return f"conv{_block_name(block)}.{leaf}"
    if sub == "1" and block >= 1:
        return f"bn{_block_name(block)}.{leaf}"
    return None


def _convert_2018(sd: dict[str, torch.Tensor], feature_name) -> dict[str, torch.Tensor]:
    """2018 VGG D keys -> gensr names: ``feature_name`` maps the ``features.*`` keys, ``classifier.{0,2}`` become
    ``linear{1,2}``, anything else is kept (and then fails the strict load, naming it)."""

    def rename(key: str) -> str:
        name = feature_name(key)
        c = _CLASSIFIER.match(key)
        if name is None and c:
            name = f"linear{1 if c.group(1) == '0' else 2}.{c.group(2)}"
        return name or key

    return _fill_bn_counters(rename_keys(sd, rename))


def _convert_flat(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """2018 flattened ``features.N`` / ``classifier.N`` keys -> gensr names."""
    return _convert_2018(sd, _flat_feature_name)


def _convert_nested(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """2018 network with per-block ``features.K.{0,1}`` keys -> gensr names."""
    return _convert_2018(sd, _nested_feature_name)


def _fill_bn_counters(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add ``bn*.num_batches_tracked`` = 0 where a BatchNorm has running stats but no counter (pre-0.4.1)."""
    out = dict(sd)
    for key in sd:
        if key.startswith("bn") and key.endswith(".running_mean"):
            counter = key[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(counter, torch.tensor(0, dtype=torch.long))
    return out
