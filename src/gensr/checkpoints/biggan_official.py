"""Official BigGAN checkpoints -> :mod:`gensr.models.biggan` and :mod:`gensr.models.biggan_deep`.

Layouts:

* ``biggan-pytorch`` -- ``ajbrock/BigGAN-PyTorch`` ``G.pth``, ``G_ema.pth`` (``torch.save(G.state_dict())``)
  and ``D.pth``, also with a ``_best{n}``/``_copy{n}`` suffix. gensr's BigGAN modules use exactly these names
  (``shared``, ``linear``, ``blocks.{i}.0.{conv1,conv2,conv_sc,bn1,bn2}``, ``blocks.{i}.1`` attention,
  ``output_layer.{0,2}``; D: ``blocks``, ``linear``, ``embed``; every SN layer with ``u0``/``sv0``), so the
  conversion is the identity.
* ``biggan-pytorch-mybn`` / ``biggan-pytorch-syncbn`` -- trained with ``--mybn`` / ``--cross_replica``: BN
  buffers under ``.bn.`` (``stored_mean``/``stored_var``/``accumulation_counter`` or SyncBN's
  ``running_mean``/``running_var``/``num_batches_tracked``) are moved up to ``stored_mean``/``stored_var``.
  A myBN with ``accumulation_counter`` > 0 holds *sums* of standing statistics (what its eval forward divides
  by the counter); they are divided here. The counters themselves are dropped (gensr's BN has a fixed momentum).
* ``biggan-pytorch-tfhub-port`` -- BigGAN-PyTorch's ``TFHub/converter.py`` output: the same G layout
  without any ``sv0`` (the port loads with ``strict=False``). ``sv0`` is a logging buffer that never enters the
  forward; it is filled with 1 (its initial value) only when *every* ``sv0`` is missing. Eps defaults become the
  port's 1e-4 (SN and CBN).
* ``pytorch-pretrained-biggan`` -- ``huggingface/pytorch-pretrained-BigGAN`` ``pytorch_model.bin`` (BigGAN-deep
  128/256/512 from TF-Hub): ``embeddings.weight``, ``generator.*`` with torch's ``weight_orig/_u/_v``. gensr's
  :class:`~gensr.models.biggan_deep.BigGANDeepGenerator` uses the same names: identity conversion.

What the weights tell (inferred from shapes): resolution (number of blocks), ch / d_ch, n_classes, shared
embedding and its size, hierarchical z and the chunk size, attention positions; ppb: ch, z and embedding
sizes, attention position, number of BN statistics sets. What they cannot tell is taken from the training
config saved beside the weights when present -- BigGAN-PyTorch ``state_dict{suffix}.pth`` next to
``G{,_ema,}{suffix}.pth``/``D{suffix}.pth`` (SN_eps, BN_eps, power iterations, init, the exact dim_z, the
other network's settings), ppb ``config.json`` next to ``pytorch_model.bin`` (eps) -- and otherwise defaults:
SN eps 1e-6 and CBN eps 1e-5 (the ImageNet script), 1 power iteration; ppb eps 1e-4. ``dim_z`` with hier is
inferred as chunk x slots (any value rounding down to it builds the same G). In a G file's config the D fields
(``d_ch``, ``d_attn``) are placeholders (``d_ch`` = ch, no attention) and vice versa, unless ``state_dict.pth``
gives them. ``state_dict.pth`` is read with ``torch.load(weights_only=True)``, allowing only
``torch.nn.ReLU`` besides plain values (its config holds the ``G_activation``/``D_activation`` modules); values
that contradict the weights are an error naming both.

Not supported (clear errors): BigGAN-PyTorch's BigGAN-deep (``--model BigGANdeep``), more than one singular
value per layer (``num_*_SVs > 1``), non-SN parametrisations, norm styles other than ``bn``, a thin D.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gensr.checkpoints.detected import Detected
from gensr.errors import GensrError

DESCRIPTION = (
    "BigGAN (BigGAN-PyTorch G.pth/G_ema.pth/D.pth incl. --mybn, --cross_replica and TF-Hub ports; "
    "pytorch-pretrained-BigGAN biggan-deep pytorch_model.bin)"
)

G_RES_BY_BLOCKS = {3: 32, 4: 64, 5: 128, 6: 256, 7: 512}
D_RES_BY_BLOCKS = {4: 32, 5: 64, 6: 128, 7: 256}
DEEP_RES_BY_BLOCKS = {10: 128, 12: 256, 14: 512}
TFHUB_EPS = 1e-4

_BLOCK_CONV1 = re.compile(r"^blocks\.(\d+)\.0\.conv1\.weight$")
_BLOCK_ATTN = re.compile(r"^blocks\.(\d+)\.1\.gamma$")
_SUB_BN = re.compile(
    r"^(.+)\.bn\.(stored_mean|stored_var|accumulation_counter|running_mean|running_var|num_batches_tracked)$"
)
_CHECKPOINT_NAME = re.compile(r"^(G_ema|G|D)(_.+)?\.pth$")
_DEEP_LAYER = re.compile(r"^generator\.layers\.(\d+)\.(.+)$")


def detect(sd: dict[str, torch.Tensor], source: str | os.PathLike | None = None) -> Detected | None:
    """The BigGAN layout of ``sd`` with its config, or None. ``source``: the file, to find side files."""
    path = Path(source) if source is not None and Path(source).is_file() else None
    if "generator.gen_z.weight_orig" in sd and "embeddings.weight" in sd:
        return _detect_deep(sd, path)
    is_g = "output_layer.2.weight" in sd and "linear.weight" in sd
    is_d = "embed.weight" in sd and "linear.weight" in sd
    if not (is_g or is_d):
        return None
    if "blocks.0.0.conv4.weight" in sd or "input_conv.weight" in sd:
        raise GensrError(
            "BigGAN-PyTorch BigGAN-deep checkpoint (--model BigGANdeep) is not supported; gensr loads "
            "BigGAN-PyTorch's BigGAN and the pytorch-pretrained-BigGAN (TF-Hub) BigGAN-deep generator"
        )
    if "blocks.0.0.conv1.weight" not in sd:
        return None
    if any(k.endswith(".u1") for k in sd):
        raise GensrError(
            "BigGAN-PyTorch checkpoint with several singular vectors per layer (num_SVs > 1) is not supported"
        )
    converted, layout = _convert_biggan(sd)
    training = _training_config(path)
    if is_g:
        return Detected("biggan_generator", layout, _g_config(converted, layout, training), convert_biggan)
    return Detected("biggan_discriminator", layout, _d_config(converted, training), convert_biggan)


def convert_biggan(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A BigGAN-PyTorch G/D state dict (any BN layout, TF-Hub port) in gensr's layout."""
    return _convert_biggan(sd)[0]


# ----------------------------------------------------------------------------------------------- conversion


def _convert_biggan(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """BigGAN-PyTorch keys -> gensr keys (BN buffers moved up, sv0 filled for TF-Hub ports, gamma 0-d)."""
    out: dict[str, torch.Tensor] = {}
    counters: dict[str, torch.Tensor] = {}
    layout = "biggan-pytorch"
    for key, value in sd.items():
        m = _SUB_BN.match(key)
        if m is None:
            out[key] = value
            continue
        prefix, leaf = m.group(1), m.group(2)
        if leaf in ("accumulation_counter", "num_batches_tracked"):
            counters[prefix] = value
            layout = "biggan-pytorch-mybn" if leaf == "accumulation_counter" else "biggan-pytorch-syncbn"
            continue
        name = f"{prefix}.{'stored_mean' if leaf.endswith('mean') else 'stored_var'}"
        if name in sd:
            raise GensrError(f"two checkpoint keys map to {name!r} (mixed BN layouts?), one of them {key!r}")
        out[name] = value
    if layout == "biggan-pytorch-mybn":
        _divide_standing_sums(out, counters)
    for key in [k for k in out if k.endswith(".gamma") and _BLOCK_ATTN.match(k)]:
        if out[key].numel() == 1:
            out[key] = out[key].reshape(())
    u_keys = [k for k in out if k.endswith(".u0")]
    if u_keys and not any(k.endswith(".sv0") for k in out):
        layout = "biggan-pytorch-tfhub-port"
        for k in u_keys:
            out[k[: -len("u0")] + "sv0"] = torch.ones(1, dtype=out[k].dtype)
    return out, layout


def _divide_standing_sums(sd: dict[str, torch.Tensor], counters: dict[str, torch.Tensor]) -> None:
    for prefix, counter in counters.items():
        n = float(counter.reshape(-1)[0]) if counter.numel() else 0.0
        if n > 0:
            for leaf in ("stored_mean", "stored_var"):
                if f"{prefix}.{leaf}" in sd:
                    sd[f"{prefix}.{leaf}"] = sd[f"{prefix}.{leaf}"] / n


# ----------------------------------------------------------------------------------------------- G / D configs


def _indices(sd: dict[str, torch.Tensor], pattern: re.Pattern) -> list[int]:
    return sorted({int(m.group(1)) for k in sd if (m := pattern.match(k))})


def _shape(sd: dict[str, torch.Tensor], key: str, dims: int) -> tuple[int, ...]:
    if key not in sd:
        raise GensrError(f"BigGAN checkpoint without {key!r}")
    if sd[key].dim() != dims:
        raise GensrError(f"BigGAN checkpoint: {key!r} has shape {tuple(sd[key].shape)}, expected {dims} dims")
    return tuple(int(s) for s in sd[key].shape)


def _num_blocks(sd: dict[str, torch.Tensor], table: dict[int, int], what: str) -> tuple[int, int]:
    idx = _indices(sd, _BLOCK_CONV1)
    if idx != list(range(len(idx))) or len(idx) not in table:
        raise GensrError(
            f"BigGAN {what} checkpoint with blocks {idx}: expected 0..n-1 with n in {sorted(table)} "
            f"(resolutions {sorted(table.values())})"
        )
    return len(idx), table[len(idx)]


def _width(sd: dict[str, torch.Tensor], ins: list[int], outs: list[int], what: str) -> int:
    """The channel multiplier, after checking every block's conv1 against the channel table."""
    first = _shape(sd, "blocks.0.0.conv1.weight", 4)
    ch = first[0] // outs[0]
    want = [(o * ch, 3 if i == 0 else i * ch) for i, o in zip(ins, outs, strict=True)]
    got = [_shape(sd, f"blocks.{b}.0.conv1.weight", 4)[:2] for b in range(len(outs))]
    if ch < 1 or got != want:
        raise GensrError(
            f"BigGAN {what} checkpoint: conv1 (out, in) channels {got} fit no ch (table x ch={ch}: {want})"
        )
    return ch


def _g_config(sd: dict[str, torch.Tensor], layout: str, training: dict[str, Any] | None) -> dict[str, Any]:
    from gensr.models.biggan import G_ARCH

    n, res = _num_blocks(sd, G_RES_BY_BLOCKS, "generator")
    ins, outs = G_ARCH[res]
    ch = _width(sd, list(ins), list(outs), "generator")
    z_in = _shape(sd, "linear.weight", 2)[1]
    cfg: dict[str, Any] = {"resolution": res, "ch": ch}
    if "shared.weight" in sd:
        n_classes, shared_dim = _shape(sd, "shared.weight", 2)
        cond = _shape(sd, "blocks.0.0.bn1.gain.weight", 2)[1]
        chunk = cond - shared_dim
        if chunk < 0 or (chunk > 0 and chunk != z_in):
            raise GensrError(
                f"BigGAN generator checkpoint: CBN input {cond} does not fit shared embedding {shared_dim} + z chunk "
                f"{z_in}"
            )
        hier = chunk > 0
        cfg.update(shared=True, shared_dim=shared_dim, hier=hier, dim_z=chunk * (n + 1) if hier else z_in)
    else:
        n_classes = _shape(sd, "blocks.0.0.bn1.gain.weight", 2)[0]
        cfg.update(shared=False, hier=False, dim_z=z_in)
    sides = [4 * 2 ** (i + 1) for i in range(n)]
    cfg.update(n_classes=n_classes, g_attn=[sides[i] for i in _indices(sd, _BLOCK_ATTN)], d_attn=[])
    eps = TFHUB_EPS if layout == "biggan-pytorch-tfhub-port" else None
    cfg.update(sn_eps=eps or 1e-6, bn_eps=eps or 1e-5)
    if training is not None:
        _apply_training(cfg, training, "G")
    return cfg


def _d_config(sd: dict[str, torch.Tensor], training: dict[str, Any] | None) -> dict[str, Any]:
    from gensr.models.biggan import D_ARCH

    n, res = _num_blocks(sd, D_RES_BY_BLOCKS, "discriminator")
    ins, outs, down, sides = D_ARCH[res]
    d_ch = _width(sd, list(ins), list(outs), "discriminator")
    for b in range(n):
        has_sc = f"blocks.{b}.0.conv_sc.weight" in sd
        if has_sc != (ins[b] != outs[b] or down[b]):
            raise GensrError(f"BigGAN discriminator checkpoint: block {b} {'has' if has_sc else 'lacks'} a conv_sc")
    n_classes, width = _shape(sd, "embed.weight", 2)
    if _shape(sd, "linear.weight", 2) != (1, width):
        shape = tuple(sd["linear.weight"].shape)
        raise GensrError(f"BigGAN discriminator checkpoint: linear.weight {shape}, expected (1, {width})")
    attn = _indices(sd, _BLOCK_ATTN)
    d_attn = sorted({sides[i] for i in attn})
    if sorted(i for i in range(n) if sides[i] in d_attn) != attn:
        raise GensrError(f"BigGAN discriminator checkpoint: attention after blocks {attn} matches no set of sides")
    cfg: dict[str, Any] = {"resolution": res, "ch": d_ch, "d_ch": d_ch, "n_classes": n_classes, "d_attn": d_attn}
    cfg.update(g_attn=[], sn_eps=1e-6)
    if training is not None:
        _apply_training(cfg, training, "D")
    return cfg


# ----------------------------------------------------------------------------------------------- state_dict.pth


def _companion_state(path: Path | None) -> Path | None:
    if path is None:
        return None
    m = _CHECKPOINT_NAME.match(path.name)
    if m is None:
        return None
    side = path.with_name(f"state_dict{m.group(2) or ''}.pth")
    return side if side.is_file() else None


def _training_config(path: Path | None) -> dict[str, Any] | None:
    """The ``config`` dict of the BigGAN-PyTorch ``state_dict*.pth`` beside ``path``, or None."""
    side = _companion_state(path)
    if side is None:
        return None
    safe = getattr(torch.serialization, "safe_globals", None)
    try:
        with safe([nn.ReLU]) if safe is not None else contextlib.nullcontext():
            obj = torch.load(str(side), map_location="cpu", weights_only=True)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:160]
        raise GensrError(
            f"{side}: cannot read this BigGAN-PyTorch training state with torch.load(weights_only=True) "
            f"({type(exc).__name__}: {detail}); move it away to load {path.name} with settings inferred from "
            "the weights"
        ) from None
    config = obj.get("config") if isinstance(obj, dict) else None
    if not isinstance(config, dict):
        raise GensrError(f"{side}: no 'config' dict inside (not a BigGAN-PyTorch state_dict.pth?)")
    return config


def _attn_sides(value: Any) -> list[int]:
    """BigGAN-PyTorch's attention string ('64', '32_64', '0') -> sides."""
    try:
        return sorted({int(v) for v in str(value).split("_") if v.strip() and int(v) > 0})
    except ValueError:
        raise GensrError(f"state_dict.pth: attention setting {value!r} is not like '64' or '32_64'") from None


def _apply_training(cfg: dict[str, Any], training: dict[str, Any], net: str) -> None:
    """Fill ``cfg`` from BigGAN-PyTorch's training config; contradictions with the weights are errors."""
    from gensr.models.biggan import D_ARCH, BigGANConfig

    t = training
    for key, allowed in (("model", "BigGAN"), (f"{net}_param", "SN"), ("norm_style", "bn")):
        if key in t and t[key] != allowed:
            raise GensrError(f"state_dict.pth: {key}={t[key]!r} is not supported (only {allowed!r})")
    if t.get(f"num_{net}_SVs", 1) != 1:
        raise GensrError(f"state_dict.pth: num_{net}_SVs={t[f'num_{net}_SVs']} is not supported (only 1)")
    if net == "D" and t.get("D_wide", True) is not True:
        raise GensrError("state_dict.pth: D_wide=False (thin SN-GAN D) is not supported")
    res = cfg["resolution"]
    own = BigGANConfig(resolution=res, g_attn=[], d_attn=[]).g_sides
    dsides = D_ARCH[res][3] if res in D_ARCH else ()
    said: dict[str, Any] = {
        "resolution": t.get("resolution"),
        "n_classes": t.get("n_classes"),
        "ch": t.get("G_ch"),
        "d_ch": t.get("D_ch"),
        "shared": t.get("G_shared"),
        "hier": t.get("hier"),
        "g_attn": [s for s in _attn_sides(t["G_attn"]) if s in own] if "G_attn" in t else None,
        "d_attn": sorted({s for s in _attn_sides(t["D_attn"]) if s in dsides}) if "D_attn" in t else None,
    }
    own_keys = ("ch", "shared", "hier", "g_attn") if net == "G" else ("d_ch", "d_attn")
    clash = [
        f"{k} {said[k]!r} vs weights {cfg[k]!r}"
        for k in ("resolution", "n_classes", *own_keys)
        if said[k] is not None and said[k] != cfg[k]
    ]
    if clash:
        raise GensrError(f"state_dict.pth contradicts the weights: {'; '.join(clash)}")
    for k, v in said.items():
        if v is not None:
            cfg[k] = v
    _copy_settings(cfg, t, net)


def _copy_settings(cfg: dict[str, Any], t: dict[str, Any], net: str) -> None:
    """Settings the weights cannot tell: eps, power iterations, init, the exact dim_z, the other net's sizes."""
    from gensr.models.biggan import G_ARCH

    if "dim_z" in t:
        dim_z = int(t["dim_z"])
        if net == "G":  # BigGAN-PyTorch rounds dim_z down to a multiple of the z slots
            slots = len(G_ARCH[cfg["resolution"]][0]) + 1 if cfg["hier"] else 1
            if dim_z // slots * slots != cfg["dim_z"]:
                raise GensrError(f"state_dict.pth contradicts the weights: dim_z {dim_z} vs weights {cfg['dim_z']}")
        cfg["dim_z"] = dim_z
    if net == "D" and "shared_dim" in t:  # BigGAN-PyTorch: shared_dim 0 means dim_z
        cfg["shared_dim"] = int(t["shared_dim"]) or int(t.get("dim_z", 128))
    if "SN_eps" in t:
        cfg["sn_eps"] = float(t["SN_eps"])
    if "BN_eps" in t:
        cfg["bn_eps"] = float(t["BN_eps"])
    if f"num_{net}_SV_itrs" in t:
        cfg["sn_iters"] = int(t[f"num_{net}_SV_itrs"])
    if t.get(f"{net}_init") in ("ortho", "N02"):
        cfg["init"] = t[f"{net}_init"]


# ----------------------------------------------------------------------------------------------- ppb BigGAN-deep


def _detect_deep(sd: dict[str, torch.Tensor], path: Path | None) -> Detected:
    """pytorch-pretrained-BigGAN ``pytorch_model.bin``: config from shapes (+ ``config.json`` beside it)."""
    from gensr.models.biggan_deep import DEEP_LAYERS

    embed_dim, n_classes = _shape(sd, "embeddings.weight", 2)
    rows, cond = _shape(sd, "generator.gen_z.weight_orig", 2)
    if rows % 256 or cond <= embed_dim:
        raise GensrError(
            f"BigGAN-deep checkpoint: gen_z weight {rows}x{cond} does not fit 4x4x16ch x (z + {embed_dim})"
        )
    ch = rows // 256
    names: dict[int, set[str]] = {}
    for key in sd:
        if m := _DEEP_LAYER.match(key):
            names.setdefault(int(m.group(1)), set()).add(m.group(2))
    attn = [i for i, n in names.items() if "snconv1x1_theta.weight_orig" in n]
    if sorted(names) != list(range(len(names))) or len(attn) != 1 or len(names) - 1 not in DEEP_RES_BY_BLOCKS:
        raise GensrError(
            f"BigGAN-deep checkpoint with generator.layers {sorted(names)} and attention at {attn}: expected "
            f"{sorted(DEEP_RES_BY_BLOCKS)} GenBlocks plus one attention layer"
        )
    res = DEEP_RES_BY_BLOCKS[len(names) - 1]
    blocks = [i for i in sorted(names) if i != attn[0]]
    want = [(ch * m_in, ch * m_out) for _, m_in, m_out in DEEP_LAYERS[res]]
    got = [
        (
            _shape(sd, f"generator.layers.{i}.conv_0.weight_orig", 4)[1],
            _shape(sd, f"generator.layers.{i}.conv_3.weight_orig", 4)[0],
        )
        for i in blocks
    ]
    if got != want:
        raise GensrError(f"BigGAN-deep checkpoint: GenBlock (in, out) channels {got}, expected {want} at {res} px")
    cfg: dict[str, Any] = {
        "resolution": res,
        "ch": ch,
        "z_dim": cond - embed_dim,
        "class_embed_dim": embed_dim,
        "n_classes": n_classes,
        "attention_position": attn[0],
        "eps": TFHUB_EPS,
        "n_stats": _shape(sd, "generator.bn.running_means", 2)[0],
    }
    _apply_ppb_json(cfg, path)
    return Detected(arch="biggan_deep_generator", layout="pytorch-pretrained-biggan", config=cfg, convert=dict)


def _apply_ppb_json(cfg: dict[str, Any], path: Path | None) -> None:
    """Take ``eps`` from ppb's ``config.json`` beside ``pytorch_model.bin``; its other values must match."""
    from gensr.models.biggan_deep import DEEP_LAYERS

    if path is None or path.name != "pytorch_model.bin" or not (path.parent / "config.json").is_file():
        return
    side = path.parent / "config.json"
    try:
        js = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GensrError(f"{side}: unreadable pytorch-pretrained-BigGAN config ({exc})") from None
    if not isinstance(js, dict):
        raise GensrError(f"{side}: expected a JSON object")
    said = {
        "resolution": js.get("output_dim"),
        "ch": js.get("channel_width"),
        "z_dim": js.get("z_dim"),
        "class_embed_dim": js.get("class_embed_dim"),
        "n_classes": js.get("num_classes"),
        "attention_position": js.get("attention_layer_position"),
        "n_stats": js.get("n_stats"),
    }
    clash = [f"{k} {v!r} vs weights {cfg[k]!r}" for k, v in said.items() if v is not None and v != cfg[k]]
    layers = js.get("layers")
    if layers is not None and [tuple(x) for x in layers] != [tuple(x) for x in DEEP_LAYERS[cfg["resolution"]]]:
        clash.append("layers differ from the released table")
    if clash:
        raise GensrError(f"{side} contradicts the weights: {'; '.join(clash)}")
    if "eps" in js:
        cfg["eps"] = float(js["eps"])
