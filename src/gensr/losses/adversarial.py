"""Every GAN loss in one place; all take raw discriminator logits (no sigmoid) and return scalars.

``AdversarialLoss(kind)`` gives ``d_loss(real_logits, fake_logits)`` and ``g_loss(real_logits, fake_logits)``.
Logits may have any shape (one per image ``(N, 1)``, or one per pixel ``(N, 1, H, W)`` from a U-Net D):
every mean below ("E") is over all elements. Losses are computed in float32 whatever the logits' dtype.

D and G losses per kind, with C the critic logits, r = real, f = fake, E = mean, BCE(x, t) = mean
BCE-with-logits against the constant target t:

- vanilla: D = BCE(C_r, 1) + BCE(C_f, 0);  G = BCE(C_f, 1)  (non-saturating)
- lsgan:   D = E(C_r - 1)^2 + E C_f^2;  G = E(C_f - 1)^2
- hinge:   D = E relu(1 - C_r) + E relu(1 + C_f);  G = -E C_f
- wgan-gp: D = E C_f - E C_r  (add :func:`gradient_penalty`);  G = -E C_f
- wgan-softplus: D = E softplus(-C_r) + E softplus(C_f);  G = E softplus(-C_f)  (BasicSR's ``wgan_softplus``,
  StyleGAN2's logistic loss; numerically the non-saturating vanilla loss, written with softplus)
- rsgan:   D = BCE(C_r - C_f, 1)  (paired samples);  G = BCE(C_f - C_r, 1)
- rasgan:  D = [BCE(C_r - E C_f, 1) + BCE(C_f - E C_r, 0)] / 2;
           G = [BCE(C_r - E C_f, 0) + BCE(C_f - E C_r, 1)] / 2
- ralsgan: D = [E(C_r - E C_f - 1)^2 + E(C_f - E C_r + 1)^2] / 2;
           G = [E(C_r - E C_f + 1)^2 + E(C_f - E C_r - 1)^2] / 2
- rahinge: D = [E relu(1 - (C_r - E C_f)) + E relu(1 + (C_f - E C_r))] / 2;
           G = [E relu(1 + (C_r - E C_f)) + E relu(1 - (C_f - E C_r))] / 2

These are the formulas of ``AlexiaJM/RelativisticGAN`` (``code/GAN_losses_iter.py``, loss_D 1-8): the
non-relativistic D losses are the *sum* of the real and fake terms, the relativistic-average ones the
*average* of their two terms (``/2``). ``rasgan`` is ESRGAN's RaGAN (alias ``ragan``), whose D loss the
ESRGAN code also writes as (l_real + l_fake) / 2.

Gradient conventions:

- ``d_loss``: gradients flow into both real and fake logits (the caller detaches the fake *images*).
  For the relativistic-average kinds the opposite-side batch mean E C_other is, by default, *not*
  detached (``detach_opposite_mean=False``): that is the paper, AlexiaJM's code and the 2018 ESRGAN code.
  BasicSR v1 (current ``esrgan_model.py``) backpropagates the real and fake halves separately and
  detaches the opposite-side mean (BasicSR #277, a DDP/BatchNorm workaround); ``detach_opposite_mean=True``
  reproduces that.
- ``g_loss``: the real logits are constants (detached here; the caller should also freeze D so no
  gradient reaches D's parameters). Gradients reach the fake logits through *both* terms of the
  relativistic losses: directly in the fake term and through E C_f in the real term.
- Non-relativistic G losses ignore ``real_logits``, which may be ``None``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from gensr.errors import GensrError

KINDS: tuple[str, ...] = (
    "vanilla", "lsgan", "hinge", "wgan-gp", "wgan-softplus", "rsgan", "rasgan", "ralsgan", "rahinge",
)  # fmt: skip
RELATIVISTIC: frozenset[str] = frozenset({"rsgan", "rasgan", "ralsgan", "rahinge"})
ALIASES: dict[str, str] = {
    "gan": "vanilla",
    "sgan": "vanilla",
    "bce": "vanilla",
    "ls": "lsgan",
    "wgan": "wgan-gp",
    "wgangp": "wgan-gp",
    "logistic": "wgan-softplus",
    "ragan": "rasgan",
    "rahingegan": "rahinge",
}


def canonical_kind(kind: str) -> str:
    """Canonical name of a GAN loss (case-insensitive, '_' = '-', aliases resolved); GensrError if unknown."""
    if not isinstance(kind, str):
        raise GensrError(f"GAN loss kind must be a string, got {kind!r}; known: {', '.join(KINDS)}")
    name = kind.strip().lower().replace("_", "-")
    name = ALIASES.get(name, name)
    if name not in KINDS:
        aliases = ", ".join(f"{a}={b}" for a, b in sorted(ALIASES.items()))
        raise GensrError(f"unknown GAN loss {kind!r}; known: {', '.join(KINDS)} (aliases: {aliases})")
    return name


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _relu_mean(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x).mean()


def _sq_mean(x: torch.Tensor) -> torch.Tensor:
    return (x * x).mean()


class AdversarialLoss:
    """One GAN loss by name: ``d_loss(real, fake)`` and ``g_loss(real, fake)`` on logits -> float32 scalars.

    ``kind``: one of :data:`KINDS` (or an alias in :data:`ALIASES`); unknown names are a GensrError.
    ``detach_opposite_mean``: relativistic-average D loss only; see the module docstring (default False).
    """

    def __init__(self, kind: str, detach_opposite_mean: bool = False) -> None:
        self.kind = canonical_kind(kind)
        self.detach_opposite_mean = bool(detach_opposite_mean)
        self._d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = getattr(self, f"_d_{self._fn}")
        self._g: Callable[[torch.Tensor | None, torch.Tensor], torch.Tensor] = getattr(self, f"_g_{self._fn}")

    @property
    def _fn(self) -> str:
        return self.kind.replace("-", "_")

    @property
    def is_relativistic(self) -> bool:
        """True if the G loss needs real logits too (rsgan and the relativistic-average family)."""
        return self.kind in RELATIVISTIC

    def __repr__(self) -> str:
        extra = ", detach_opposite_mean=True" if self.detach_opposite_mean else ""
        return f"AdversarialLoss({self.kind!r}{extra})"

    # ----------------------------------------------------------------------------------------- public API
    def d_loss(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        """Discriminator loss (to minimise). Both logits required; fake should come from detached images."""
        if real_logits is None or fake_logits is None:
            raise ValueError(f"{self.kind} D loss needs both real and fake logits")
        return self._d(real_logits.float(), fake_logits.float())

    def g_loss(self, real_logits: torch.Tensor | None, fake_logits: torch.Tensor) -> torch.Tensor:
        """Generator loss (to minimise). ``real_logits`` is used (detached) by relativistic kinds only."""
        if fake_logits is None:
            raise ValueError(f"{self.kind} G loss needs fake logits")
        real = None
        if self.is_relativistic:
            if real_logits is None:
                raise ValueError(f"{self.kind} is relativistic: its G loss needs real logits too")
            real = real_logits.detach().float()
        return self._g(real, fake_logits.float())

    # ------------------------------------------------------------------------------------ implementation
    def _opp_mean(self, x: torch.Tensor) -> torch.Tensor:
        m = x.mean()
        return m.detach() if self.detach_opposite_mean else m

    @staticmethod
    def _check_paired(real: torch.Tensor, fake: torch.Tensor) -> None:
        if real.shape != fake.shape:
            raise ValueError(
                f"rsgan pairs real and fake samples: logits must have the same shape, "
                f"got {tuple(real.shape)} and {tuple(fake.shape)}"
            )

    def _d_vanilla(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return _bce(r, 1.0) + _bce(f, 0.0)

    def _g_vanilla(self, r: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        return _bce(f, 1.0)

    def _d_lsgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return _sq_mean(r - 1.0) + _sq_mean(f)

    def _g_lsgan(self, r: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        return _sq_mean(f - 1.0)

    def _d_hinge(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return _relu_mean(1.0 - r) + _relu_mean(1.0 + f)

    def _g_hinge(self, r: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        return -f.mean()

    def _d_wgan_gp(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return f.mean() - r.mean()

    def _g_wgan_gp(self, r: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        return -f.mean()

    def _d_wgan_softplus(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return F.softplus(-r).mean() + F.softplus(f).mean()

    def _g_wgan_softplus(self, r: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        return F.softplus(-f).mean()

    def _d_rsgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        self._check_paired(r, f)
        return _bce(r - f, 1.0)

    def _g_rsgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        self._check_paired(r, f)
        return _bce(f - r, 1.0)

    def _d_rasgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (_bce(r - self._opp_mean(f), 1.0) + _bce(f - self._opp_mean(r), 0.0))

    def _g_rasgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (_bce(r - f.mean(), 0.0) + _bce(f - r.mean(), 1.0))

    def _d_ralsgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (_sq_mean(r - self._opp_mean(f) - 1.0) + _sq_mean(f - self._opp_mean(r) + 1.0))

    def _g_ralsgan(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (_sq_mean(r - f.mean() + 1.0) + _sq_mean(f - r.mean() - 1.0))

    def _d_rahinge(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (_relu_mean(1.0 - (r - self._opp_mean(f))) + _relu_mean(1.0 + (f - self._opp_mean(r))))

    def _g_rahinge(self, r: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        return 0.5 * (_relu_mean(1.0 + (r - f.mean())) + _relu_mean(1.0 - (f - r.mean())))


def gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    weight: float = 10.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """WGAN-GP penalty ``weight * E[(||grad_x C(x_hat)||_2 - 1)^2]`` on ``x_hat = u*real + (1-u)*fake``.

    ``u ~ U(0, 1)`` per sample; the norm is over all non-batch dimensions; ``critic`` is called on x_hat
    and may return per-image or per-pixel logits (their sum is differentiated, as AlexiaJM's
    ``grad_outputs=ones``). The graph is kept (``create_graph``) so the penalty trains the critic: add it
    to the D loss. ``real`` and ``fake`` are detached here.
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient penalty: real {tuple(real.shape)} and fake {tuple(fake.shape)} differ")
    real = real.detach()
    fake = fake.detach()
    shape = (real.shape[0],) + (1,) * (real.ndim - 1)
    u = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = (u * real + (1.0 - u) * fake).requires_grad_(True)
    with torch.enable_grad():
        out = critic(x_hat)
        (grad,) = torch.autograd.grad(out.float().sum(), x_hat, create_graph=True)
    norm = grad.float().flatten(1).norm(2, dim=1)
    return weight * ((norm - 1.0) ** 2).mean()
