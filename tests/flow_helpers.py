"""Test helpers shared by the SRFlow inference tests."""

from __future__ import annotations

import torch

from gensr.models.srflow import SRFlowConfig, SRFlowNet
from gensr.nn.flow import set_actnorm_initialized


def tiny_srflow(seed: int = 0) -> SRFlowNet:
    """A tiny random SRFlow whose zero-initialised layers are perturbed (so the output depends on the LR)."""
    torch.manual_seed(seed)
    return perturbed(SRFlowNet(SRFlowConfig(nb=2, nf=8, gc=4, K=2, hidden=8, rrdb_blocks=[0, 1])))


def perturbed(model: SRFlowNet) -> SRFlowNet:
    """``model`` with small noise on every parameter but the invertible 1x1 convs, ActNorms marked initialised,
    in eval mode (a fresh SRFlow's zero-initialised couplings ignore the LR)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "invconv" not in name:
                p.add_(torch.randn_like(p) * 0.05)
    set_actnorm_initialized(model, True)
    return model.eval()
