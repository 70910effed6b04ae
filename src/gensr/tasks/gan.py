"""The mechanics of a GAN iteration that every GAN task shares (ESRGAN, BigGAN, any user task).

* **G part**: D is frozen (``requires_grad`` off, so no gradient reaches its weights) but stays in train
  mode; it is called unwrapped (no DDP gradient sync for a frozen network). The real images go through D
  only when the loss needs them (relativistic losses, feature matching), under ``no_grad``.
* **D part**: real and fake in *separate* forwards (BatchNorm statistics per pure batch, as BasicSR and the
  relativistic GAN code do), the fake detached; the gradient penalty (``wgan-gp``) on the unwrapped D.
* **Non-finite guard**: a loss that is not finite on some rank is not backpropagated; the task then
  returns ``skipped=1`` and the trainer stops after ``train.max_nonfinite`` skips in a row.

D is called as ``d(x, **kw)``: conditional discriminators get their labels through ``real_kw`` /
``fake_kw`` (e.g. ``{"y": labels}``); ``return_features=True`` asks a discriminator for its feature maps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from gensr.engine.distributed import unwrap
from gensr.errors import GensrError
from gensr.losses.adversarial import AdversarialLoss, canonical_kind, gradient_penalty
from gensr.tasks.base import Task


def loss_kind_option(name: str, value: str) -> str:
    """The canonical GAN loss name of the config field ``name`` (:func:`canonical_kind`); ValueError naming the
    field when the kind is unknown (``from_dict`` then names the section)."""
    try:
        return canonical_kind(value)
    except GensrError as exc:
        raise ValueError(f"{name}: {exc}") from None


class GANStep:
    """GAN helpers bound to a task's networks ``g_name``/``d_name`` and an adversarial loss."""

    def __init__(
        self,
        task: Task,
        adversarial: AdversarialLoss,
        gp_weight: float = 10.0,
        d_name: str = "d",
        compile_d: bool = False,
    ) -> None:
        self.task, self.adversarial, self.gp_weight, self.d_name = task, adversarial, gp_weight, d_name
        self._compiled: dict[str, Any] = {}
        self.compile_d = compile_d

    def _maybe_compiled(self, key: str, module: torch.nn.Module) -> Any:
        if not self.compile_d:
            return module
        if key not in self._compiled:
            self._compiled[key] = torch.compile(module)
        return self._compiled[key]

    @property
    def d(self) -> Any:
        """D as trained (DDP-wrapped when distributed; compiled with ``compile_d``)."""
        return self._maybe_compiled("d", self.task.networks[self.d_name])

    @property
    def d_bare(self) -> Any:
        """D without the DDP wrapper (compiled with ``compile_d``)."""
        return self._maybe_compiled("bare", unwrap(self.task.networks[self.d_name]))

    @contextlib.contextmanager
    def frozen_discriminator(self) -> Iterator[None]:
        """D's parameters get no gradient inside the block (the G part)."""
        module = unwrap(self.task.networks[self.d_name])
        module.requires_grad_(False)
        try:
            yield
        finally:
            module.requires_grad_(True)

    def needs_real_in_g_step(self, features: bool = False) -> bool:
        return features or self.adversarial.is_relativistic

    def generator_outputs(
        self,
        fake: torch.Tensor,
        real: torch.Tensor | None = None,
        *,
        fake_kw: dict[str, Any] | None = None,
        real_kw: dict[str, Any] | None = None,
    ) -> tuple[Any, Any]:
        """D's outputs for the G part (call inside :meth:`frozen_discriminator` and the task's autocast):
        (real output or None, fake output). The real batch is only evaluated when ``real`` is given."""
        real_out = None
        if real is not None:
            with torch.no_grad():
                real_out = self.d_bare(real, **(real_kw or {}))
        return real_out, self.d_bare(fake, **(fake_kw or {}))

    def generator_loss(self, real_logits: torch.Tensor | None, fake_logits: torch.Tensor) -> torch.Tensor:
        """The unweighted adversarial G loss (float32)."""
        return self.adversarial.g_loss(real_logits, fake_logits)

    def discriminator_backward(
        self,
        real: torch.Tensor,
        fake: torch.Tensor,
        *,
        real_kw: dict[str, Any] | None = None,
        fake_kw: dict[str, Any] | None = None,
        loss_scale: float = 1.0,
    ) -> dict[str, torch.Tensor] | None:
        """D part on a detached ``fake``: separate real/fake forwards, L_D (+ gradient penalty), backward of
        ``loss_scale * L_D`` (gradient accumulation). Returns the terms, or None (nothing backpropagated)
        when L_D is not finite."""
        fake = fake.detach()
        with self.task.autocast():
            real_logits = self.d(real, **(real_kw or {}))
            fake_logits = self.d(fake, **(fake_kw or {}))
        d_loss = self.adversarial.d_loss(real_logits, fake_logits)
        if self.adversarial.kind == "wgan-gp" and self.gp_weight:
            bare, kw = unwrap(self.task.networks[self.d_name]), real_kw or {}  # eager: needs a double backward

            def critic(x: torch.Tensor) -> torch.Tensor:
                with self.task.autocast():
                    return bare(x, **kw)

            d_loss = d_loss + gradient_penalty(critic, real.float(), fake.float(), self.gp_weight)
        if not self.task.all_finite(d_loss):
            return None
        (d_loss * loss_scale).backward()
        return {
            "d_loss": d_loss.detach(),
            "d_real": real_logits.detach().float().mean(),
            "d_fake": fake_logits.detach().float().mean(),
        }


def float_stats(terms: dict[str, torch.Tensor], keys: tuple[str, ...], skipped: bool) -> dict[str, float]:
    """Python floats for the trainer with one device sync; missing terms are NaN (ignored in means)."""
    present = [k for k in keys if k in terms]
    values = torch.stack([terms[k].detach().float().reshape(()) for k in present]).tolist() if present else []
    out = {k: float("nan") for k in keys}
    out.update(dict(zip(present, values, strict=True)))
    if skipped:
        out["loss"] = float("nan")
    out["skipped"] = 1.0 if skipped else 0.0
    return out
