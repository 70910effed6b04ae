"""Residual-in-residual dense blocks (ESRGAN, Wang et al. 2018).

Parameter names follow BasicSR v1 (``conv1..conv5``, ``rdb1..rdb3``) so state dicts map 1:1 to the
official layouts through :mod:`gensr.checkpoints`.

Inference on the CPU (no autograd, no autocast, float32 or bfloat16 weights) runs each conv + LeakyReLU pair
as one oneDNN call with the activation fused as a post-op (:func:`conv_lrelu`, the op ``torch.compile`` uses
on the CPU). In float32 the result is bit-identical to the separate ops (the activation sees the same
float32 accumulator); in bfloat16 it rounds once instead of twice, so it is slightly more accurate.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_FUSABLE = (torch.float32, torch.bfloat16)
_fuse_failed: set[torch.dtype] = set()  # dtypes for which the fused op raised once: use the plain ops


def kaiming_scaled_(module: nn.Module, scale: float = 0.1) -> None:
    """ESRGAN's "smaller initialisation": Kaiming-normal (fan_in, a=0) times ``scale``, zero bias, for every conv.

    Meta tensors (a model built on the meta device to check a checkpoint's shapes) are skipped: they hold no
    values, and initialising them would only cost time (it imports ``torch._dynamo``).
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not m.weight.is_meta:
            nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            m.weight.data.mul_(scale)
            if m.bias is not None:
                m.bias.data.zero_()


def _fused_op():
    try:
        return torch.ops.mkldnn._convolution_pointwise
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return None


def _compiling() -> bool:
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)  # torch >= 2.3
    return bool(is_compiling()) if is_compiling is not None else False


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _can_fuse(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    if _compiling():
        return False  # torch.compile sees the plain ops and fuses them itself
    if x.device.type != "cpu" or x.dtype not in _FUSABLE or x.dtype in _fuse_failed:
        return False
    if conv.weight.dtype != x.dtype or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    if torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad):
        return False  # the fused op has no backward
    if _cpu_autocast() or not torch.backends.mkldnn.is_available():
        return False  # autocast would not cast the fused op's inputs
    return torch.backends.mkldnn.enabled


def conv_lrelu(conv: nn.Conv2d, x: torch.Tensor, slope: float = 0.2) -> torch.Tensor:
    """``leaky_relu(conv(x), slope)``: one fused oneDNN call for CPU inference (see the module notes), else
    the plain ops (the activation in place on the conv's fresh output)."""
    if _can_fuse(conv, x):
        op = _fused_op()
        if op is not None:
            try:
                return op(x, conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation),
                          conv.groups, "leaky_relu", [slope], "")  # fmt: skip
            except RuntimeError:  # e.g. no bfloat16 kernels on this CPU: never try this dtype again
                _fuse_failed.add(x.dtype)
    return F.leaky_relu(conv(x), slope, inplace=True)


class ResidualDenseBlock(nn.Module):
    """Five densely connected 3x3 convs; output = conv5 * 0.2 + input. (N, nf, H, W) -> (N, nf, H, W)."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(nf, gc, 3, 1, 1)
        self.conv2 = nn.Conv2d(nf + gc, gc, 3, 1, 1)
        self.conv3 = nn.Conv2d(nf + 2 * gc, gc, 3, 1, 1)
        self.conv4 = nn.Conv2d(nf + 3 * gc, gc, 3, 1, 1)
        self.conv5 = nn.Conv2d(nf + 4 * gc, nf, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = conv_lrelu(self.conv1, x)
        x2 = conv_lrelu(self.conv2, torch.cat((x, x1), 1))
        x3 = conv_lrelu(self.conv3, torch.cat((x, x1, x2), 1))
        x4 = conv_lrelu(self.conv4, torch.cat((x, x1, x2, x3), 1))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    """Three residual dense blocks; output = rdb3(rdb2(rdb1(x))) * 0.2 + x. (N, nf, H, W) -> same."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(nf, gc)
        self.rdb2 = ResidualDenseBlock(nf, gc)
        self.rdb3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x
