"""Network interpolation (ESRGAN §3.4, esrgan.md §4): theta = (1 - alpha) * theta_A + alpha * theta_B.

Both networks must share architecture, config and key set; every float tensor is blended element-wise (in
float32, or float64 for float64 inputs, then cast back); every other tensor must be equal in both and is
copied.
``alpha`` must lie in [0, 1]: 0 reproduces A exactly, 1 reproduces B exactly.
"""

from __future__ import annotations

import math
import os

import torch
from torch import nn

from gensr.errors import GensrError, listing


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float; GensrError unless it is a finite number in [0, 1]."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise GensrError(f"alpha must be a number in [0, 1], got {alpha!r}") from None
    if not math.isfinite(a) or not 0.0 <= a <= 1.0:
        raise GensrError(
            f"alpha must be in [0, 1] (0 = first model, 1 = second model), got {alpha}; extrapolating "
            "beyond the two networks is not supported"
        )
    return a


def interpolate_state_dicts(
    a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], alpha: float, names: tuple[str, str] = ("A", "B")
) -> dict[str, torch.Tensor]:
    """``(1 - alpha) * a + alpha * b`` for float tensors; non-float tensors must be equal and are copied.

    Keys, shapes and (for non-float tensors) values must agree, else GensrError naming ``names`` and the
    difference. A float tensor's result has the wider of the two dtypes.
    """
    alpha = check_alpha(alpha)
    na, nb = names
    only_a = [k for k in a if k not in b]
    only_b = [k for k in b if k not in a]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"{len(only_a)} key(s) only in {na}: {listing(only_a)}")
        if only_b:
            parts.append(f"{len(only_b)} key(s) only in {nb}: {listing(only_b)}")
        raise GensrError(f"cannot interpolate {na} and {nb}: different keys ({'; '.join(parts)})")
    out: dict[str, torch.Tensor] = {}
    for key, ta in a.items():
        tb = b[key]
        if ta.shape != tb.shape:
            raise GensrError(
                f"cannot interpolate {na} and {nb}: {key} has shape {tuple(ta.shape)} vs {tuple(tb.shape)}"
            )
        if ta.is_floating_point() and tb.is_floating_point():
            dtype = torch.promote_types(ta.dtype, tb.dtype)
            work = torch.promote_types(dtype, torch.float32)
            blended = ta.detach().to(work) * (1.0 - alpha) + tb.detach().to(device=ta.device, dtype=work) * alpha
            out[key] = blended.to(dtype)
        elif ta.is_floating_point() or tb.is_floating_point():
            raise GensrError(f"cannot interpolate {na} and {nb}: {key} is {ta.dtype} vs {tb.dtype}")
        else:
            if ta.dtype != tb.dtype or not torch.equal(ta, tb.to(ta.device)):
                raise GensrError(
                    f"cannot interpolate {na} and {nb}: non-float tensor {key} differs ({ta.dtype} vs "
                    f"{tb.dtype} or different values); only float tensors are blended"
                )
            out[key] = ta.detach().clone()
    return out


def interpolate_models(
    path_a: str | os.PathLike, path_b: str | os.PathLike, alpha: float, device: str | torch.device = "cpu"
) -> nn.Module:
    """Load two checkpoints of one architecture and config (strictly) and return their blend, in eval mode."""
    from gensr.checkpoints.loader import load_model, load_state_dict_strict
    from gensr.models.registry import arch_of, model_config_dict

    alpha = check_alpha(alpha)
    names = (str(path_a), str(path_b))
    model_a = load_model(path_a)
    model_b = load_model(path_b)
    arch_a, arch_b = arch_of(model_a), arch_of(model_b)
    if arch_a != arch_b:
        raise GensrError(f"cannot interpolate {names[0]} ({arch_a}) and {names[1]} ({arch_b}): different architectures")
    cfg_a, cfg_b = model_config_dict(model_a), model_config_dict(model_b)
    if cfg_a != cfg_b:
        diff = ", ".join(
            f"{k} {cfg_a.get(k)} vs {cfg_b.get(k)}"
            for k in sorted(set(cfg_a) | set(cfg_b))
            if cfg_a.get(k) != cfg_b.get(k)
        )
        raise GensrError(f"cannot interpolate {names[0]} and {names[1]}: different {arch_a} configs ({diff})")
    blended = interpolate_state_dicts(model_a.state_dict(), model_b.state_dict(), alpha, names)
    del model_b
    load_state_dict_strict(model_a, blended, f"interpolation of {names[0]} and {names[1]}")
    return model_a.to(device).eval()
