"""Pieces several tasks use: building the generator from the config, optionally from pretrained weights."""

from __future__ import annotations

from torch import nn

from gensr.engine.config import RunConfig
from gensr.errors import GensrError
from gensr.models.registry import build_model


def build_generator(cfg: RunConfig) -> nn.Module:
    """The ``model`` section's network; with ``model.pretrained`` its weights are loaded strictly."""
    model_cfg = dict(cfg.model.config)
    model_cfg.setdefault("scale", cfg.scale)
    model = build_model(cfg.model.arch, model_cfg)
    if getattr(model, "scale", cfg.scale) != cfg.scale:
        raise GensrError(f"model.config.scale {model.scale} differs from the run's scale {cfg.scale}")
    if cfg.model.pretrained:
        from gensr.checkpoints.loader import load_model

        source = load_model(cfg.model.pretrained)
        if type(source) is not type(model) or source.config != model.config:
            raise GensrError(
                f"{cfg.model.pretrained}: its architecture/config ({type(source).__name__} {source.config}) "
                f"differs from model.config ({model.config})"
            )
        model.load_state_dict(source.state_dict())
    return model
