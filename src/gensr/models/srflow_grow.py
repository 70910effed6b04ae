"""Deepen a trained SRFlow without changing what it computes: insert identity flow steps (a warm start for K).

A conditional step (ActNorm -> 1x1 conv -> affine injector -> affine coupling) is made an exact identity:
the coupling and injector nets end in a zero conv (:class:`gensr.nn.flow.Conv2dZeros`), so both give shift 0
and scale ``s0 = sigmoid(2) + eps`` (about 0.881); the injector scales every channel by ``s0``, the coupling
the second half once more. The new step's ActNorm divides that out (``logs = -log s0`` on the first half,
``-2 log s0`` on the second), its 1x1 conv is the identity matrix, so the step maps x to x and its
log-determinant is 0. The hidden layers of each new net are copies of the nearest trained step's below it,
so their features start trained; only the zeroed last conv and the new ActNorm/1x1 conv start from scratch.

The grown model encodes and decodes exactly as the source (to float rounding): likelihoods, tau-0 outputs
and samples for a given z are unchanged until it is trained.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from gensr.models.srflow import SRFlowNet
from gensr.nn.flow import ActNorm, FlowStep, InvertibleConv1x1


def grown_positions(k_old: int, k_new: int) -> list[int]:
    """Positions (0..k_new-1) of the ``k_old`` trained steps among ``k_new``, spread evenly, the first at 0."""
    if not 1 <= k_old <= k_new:
        raise ValueError(f"can only grow K: {k_old} -> {k_new}")
    return [(i * k_new) // k_old for i in range(k_old)]


@torch.no_grad()
def make_identity_step(step: FlowStep, template: FlowStep) -> None:
    """Turn the conditional ``step`` into the identity in place, its hidden layers copied from ``template``."""
    affine = step.affine
    if affine is None or template.affine is None:
        raise ValueError("make_identity_step needs conditional (affine) flow steps")
    if not isinstance(step.invconv, InvertibleConv1x1):
        raise ValueError("growing an LU-parametrised flow is not supported; grow before to_lu_()")
    s0 = 1.0 / (1.0 + math.exp(-2.0)) + affine.eps
    if affine.min_scale > s0:
        raise ValueError(f"min_scale {affine.min_scale} floors the identity scale {s0:.4f}")
    step.load_state_dict(template.state_dict())
    for net in (affine.fAffine, affine.fFeatures):
        last = net[-1]
        last.weight.zero_()
        last.bias.zero_()
        last.logs.zero_()
    logs = torch.full_like(step.actnorm.logs, -math.log(s0))
    logs[:, affine.channels_for_nn :] = -2.0 * math.log(s0)
    step.actnorm.bias.zero_()
    step.actnorm.logs.copy_(logs)
    step.actnorm.mark_initialized(True)
    weight = step.invconv.weight
    weight.copy_(torch.eye(weight.shape[0], dtype=weight.dtype, device=weight.device).reshape(weight.shape))
    step.invconv.invalidate_cache()


def grow_srflow(model: SRFlowNet, k_new: int) -> SRFlowNet:
    """A copy of ``model`` with ``k_new`` conditional steps per level, computing the same function.

    The trained steps keep their order (at :func:`grown_positions`); each new step is an identity whose hidden
    layers copy the trained step before it. Everything else (encoder, transitions, splits) is copied as is.
    """
    c = model.config
    if c.lu_decomposed:
        raise ValueError("growing an LU-parametrised SRFlow is not supported")
    config = dataclasses.replace(c, K=int(k_new))
    positions = grown_positions(c.K, config.K)
    grown = SRFlowNet(config).to(next(model.parameters()).device)
    grown.RRDB.load_state_dict(model.RRDB.state_dict())
    grown.flowUpsamplerNet.f.load_state_dict(model.flowUpsamplerNet.f.state_dict())
    old_layers = list(model.flowUpsamplerNet.layers)
    new_layers = list(grown.flowUpsamplerNet.layers)
    old_i = new_i = 0
    while old_i < len(old_layers):
        old = old_layers[old_i]
        if isinstance(old, FlowStep) and old.has_affine:  # a level's run of K conditional steps
            run = old_layers[old_i : old_i + c.K]
            for k in range(config.K):
                target = new_layers[new_i + k]
                if k in positions:
                    target.load_state_dict(run[positions.index(k)].state_dict())
                else:
                    below = max(p for p in positions if p < k)
                    make_identity_step(target, run[positions.index(below)])
            old_i += c.K
            new_i += config.K
        else:
            new_layers[new_i].load_state_dict(old.state_dict())
            old_i += 1
            new_i += 1
    if new_i != len(new_layers):
        raise AssertionError(f"layer mapping ended at {new_i} of {len(new_layers)}")
    for module in grown.modules():
        if isinstance(module, ActNorm):
            module.mark_initialized(True)
    return grown
