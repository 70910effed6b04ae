"""GAN losses against values worked out by hand on a fixed 3-sample batch, and their gradient paths.

Logits: real C_r = [1.0, -0.5, 2.0], fake C_f = [-1.0, 0.5, 0.0]; E C_r = 5/6, E C_f = -1/6.
BCE-with-logits: BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x), softplus(x) = log(1 + e^x).
Relativistic-average differences: C_r - E C_f = [7/6, -1/3, 13/6]; C_f - E C_r = [-11/6, -1/3, -5/6].
"""

from __future__ import annotations

import math

import pytest
import torch

from gensr.errors import GensrError
from gensr.losses.adversarial import KINDS, AdversarialLoss, canonical_kind, gradient_penalty


def sp(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def mean(*xs: float) -> float:
    return sum(xs) / len(xs)


def logits(requires_grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64, requires_grad=requires_grad)
    f = torch.tensor([-1.0, 0.5, 0.0], dtype=torch.float64, requires_grad=requires_grad)
    return r, f


# (kind, D loss, G loss) written out by hand
EXPECTED = [
    (
        "vanilla",
        mean(sp(-1.0), sp(0.5), sp(-2.0)) + mean(sp(-1.0), sp(0.5), sp(0.0)),
        mean(sp(1.0), sp(-0.5), sp(0.0)),
    ),
    (
        "lsgan",
        mean(0.0, 2.25, 1.0) + mean(1.0, 0.25, 0.0),  # = 1.5
        mean(4.0, 0.25, 1.0),  # = 1.75
    ),
    (
        "hinge",
        mean(0.0, 1.5, 0.0) + mean(0.0, 1.5, 1.0),  # = 4/3
        1.0 / 6.0,  # -E C_f
    ),
    ("wgan-gp", -1.0 / 6.0 - 5.0 / 6.0, 1.0 / 6.0),
    (
        "wgan-softplus",  # BasicSR: softplus(-C_r) + softplus(C_f); G softplus(-C_f)
        mean(sp(-1.0), sp(0.5), sp(-2.0)) + mean(sp(-1.0), sp(0.5), sp(0.0)),
        mean(sp(1.0), sp(-0.5), sp(0.0)),
    ),
    (
        "rsgan",  # C_r - C_f = [2, -1, 2]
        mean(sp(-2.0), sp(1.0), sp(-2.0)),
        mean(sp(2.0), sp(-1.0), sp(2.0)),
    ),
    (
        "rasgan",
        0.5 * (mean(sp(-7 / 6), sp(1 / 3), sp(-13 / 6)) + mean(sp(-11 / 6), sp(-1 / 3), sp(-5 / 6))),
        0.5 * (mean(sp(7 / 6), sp(-1 / 3), sp(13 / 6)) + mean(sp(11 / 6), sp(1 / 3), sp(5 / 6))),
    ),
    (
        "ralsgan",
        0.5 * (mean(1 / 36, 16 / 9, 49 / 36) + mean(25 / 36, 4 / 9, 1 / 36)),
        0.5 * (mean(169 / 36, 4 / 9, 361 / 36) + mean(289 / 36, 16 / 9, 121 / 36)),
    ),
    (
        "rahinge",
        0.5 * (mean(0.0, 4 / 3, 0.0) + mean(0.0, 2 / 3, 1 / 6)),  # = 13/36
        0.5 * (mean(13 / 6, 2 / 3, 19 / 6) + mean(17 / 6, 4 / 3, 11 / 6)),  # = 2
    ),
]


def test_expected_table_covers_every_kind():
    assert sorted(k for k, _, _ in EXPECTED) == sorted(KINDS)
    assert EXPECTED[1][1] == pytest.approx(1.5) and EXPECTED[8][1] == pytest.approx(13 / 36)
    assert EXPECTED[8][2] == pytest.approx(2.0)


@pytest.mark.parametrize("kind, d_expected, g_expected", EXPECTED)
def test_loss_values_by_hand(kind, d_expected, g_expected):
    loss = AdversarialLoss(kind)
    r, f = logits()
    d = loss.d_loss(r, f)
    g = loss.g_loss(r, f)
    assert d.dtype == torch.float32 and d.ndim == 0
    assert d.item() == pytest.approx(d_expected, rel=1e-6)
    assert g.item() == pytest.approx(g_expected, rel=1e-6)
    if not loss.is_relativistic:
        assert loss.g_loss(None, f).item() == pytest.approx(g_expected, rel=1e-6)


@pytest.mark.parametrize("kind, d_expected, g_expected", EXPECTED)
def test_detaching_the_opposite_mean_keeps_values(kind, d_expected, g_expected):
    r, f = logits()
    assert AdversarialLoss(kind, detach_opposite_mean=True).d_loss(r, f).item() == pytest.approx(d_expected, rel=1e-6)


def test_relativistic_flags_and_names():
    assert {k for k in KINDS if AdversarialLoss(k).is_relativistic} == {
        "rsgan",
        "rasgan",
        "ralsgan",
        "rahinge",
    }
    assert AdversarialLoss("RaGAN").kind == "rasgan"  # ESRGAN's name
    assert canonical_kind("WGAN_GP") == "wgan-gp"
    assert canonical_kind("RaHingeGAN") == "rahinge"
    with pytest.raises(GensrError) as exc:
        AdversarialLoss("relativistic")
    for name in KINDS:
        assert name in str(exc.value)


def test_relativistic_g_loss_needs_real_logits():
    _, f = logits()
    with pytest.raises(ValueError, match="real logits"):
        AdversarialLoss("rasgan").g_loss(None, f)
    with pytest.raises(ValueError, match="same shape"):
        AdversarialLoss("rsgan").d_loss(torch.zeros(3), torch.zeros(4))


# ------------------------------------------------------------------------------------------ gradients
# RaSGAN with n = 3: every gradient below is the derivative of the formulas above, written out.


def test_rasgan_g_gradient_flows_to_fake_through_both_terms():
    r, f = logits(requires_grad=True)
    loss = AdversarialLoss("rasgan").g_loss(r, f)
    grad_f, grad_r = torch.autograd.grad(loss, [f, r], allow_unused=True)
    assert grad_r is None  # real logits are constants in the G loss
    # term 1: 0.5 * mean_i BCE(C_r,i - E C_f, 0) -> d/dC_f,j = -0.5/3 * mean_i sigmoid(C_r,i - E C_f)
    through_mean = -0.5 / 3 * mean(sig(7 / 6), sig(-1 / 3), sig(13 / 6))
    # term 2: 0.5 * mean_j BCE(C_f,j - E C_r, 1) -> d/dC_f,j = -0.5/3 * sigmoid(-(C_f,j - E C_r))
    direct = [-0.5 / 3 * sig(11 / 6), -0.5 / 3 * sig(1 / 3), -0.5 / 3 * sig(5 / 6)]
    expected = [through_mean + d for d in direct]
    assert grad_f.tolist() == pytest.approx(expected, rel=1e-6)
    assert through_mean != 0.0


@pytest.mark.parametrize("detach", [False, True])
def test_rasgan_d_gradient_and_opposite_mean(detach):
    r, f = logits(requires_grad=True)
    loss = AdversarialLoss("rasgan", detach_opposite_mean=detach).d_loss(r, f)
    grad_r, grad_f = torch.autograd.grad(loss, [r, f])
    # real term 0.5 * mean_j BCE(C_r,j - E C_f, 1): d/dC_r,j = -0.5/3 * sigmoid(-(C_r,j - E C_f))
    direct_r = [-0.5 / 3 * sig(-7 / 6), -0.5 / 3 * sig(1 / 3), -0.5 / 3 * sig(-13 / 6)]
    # fake term 0.5 * mean_i BCE(C_f,i - E C_r, 0), through E C_r:
    # d/dC_r,j = -0.5/3 * mean_i sigmoid(C_f,i - E C_r)
    via_mean_r = -0.5 / 3 * mean(sig(-11 / 6), sig(-1 / 3), sig(-5 / 6))
    direct_f = [0.5 / 3 * sig(-11 / 6), 0.5 / 3 * sig(-1 / 3), 0.5 / 3 * sig(-5 / 6)]
    via_mean_f = 0.5 / 3 * mean(sig(-7 / 6), sig(1 / 3), sig(-13 / 6))
    if detach:  # BasicSR v1: the opposite-side mean is a constant
        via_mean_r = via_mean_f = 0.0
    assert grad_r.tolist() == pytest.approx([d + via_mean_r for d in direct_r], rel=1e-6)
    assert grad_f.tolist() == pytest.approx([d + via_mean_f for d in direct_f], rel=1e-6)


def test_non_relativistic_g_loss_ignores_real():
    r, f = logits(requires_grad=True)
    for kind in ("vanilla", "lsgan", "hinge", "wgan-gp"):
        grad_f, grad_r = torch.autograd.grad(AdversarialLoss(kind).g_loss(r, f), [f, r], allow_unused=True)
        assert grad_r is None and grad_f.abs().sum() > 0


def test_vanilla_g_is_non_saturating():
    r, f = logits(requires_grad=True)
    (grad_f,) = torch.autograd.grad(AdversarialLoss("vanilla").g_loss(None, f), [f])
    # d/dC_f,j of mean softplus(-C_f) = -sigmoid(-C_f,j) / 3
    assert grad_f.tolist() == pytest.approx([-sig(1.0) / 3, -sig(-0.5) / 3, -sig(0.0) / 3], rel=1e-6)


# ------------------------------------------------------------------------------------------ shapes, dtypes


@pytest.mark.parametrize("kind", KINDS)
def test_per_pixel_logits_mean_over_all_elements(kind):
    g = torch.Generator().manual_seed(1)
    r = torch.randn(2, 1, 4, 4, generator=g)
    f = torch.randn(2, 1, 4, 4, generator=g)
    loss = AdversarialLoss(kind)
    torch.testing.assert_close(loss.d_loss(r, f), loss.d_loss(r.flatten(), f.flatten()))
    torch.testing.assert_close(loss.g_loss(r, f), loss.g_loss(r.flatten(), f.flatten()))


def test_bf16_logits_give_float32_losses():
    r, f = logits()
    loss = AdversarialLoss("rasgan")
    assert loss.d_loss(r.bfloat16(), f.bfloat16()).dtype == torch.float32
    assert loss.g_loss(r.bfloat16(), f.bfloat16()).dtype == torch.float32


# ------------------------------------------------------------------------------------------ gradient penalty


class _LinearCritic(torch.nn.Module):
    """C(x) = <w, x> per sample: grad_x C = w everywhere, so the penalty is weight * (||w|| - 1)^2."""

    def __init__(self, w: torch.Tensor, per_pixel: bool = False) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(w)
        self.per_pixel = per_pixel

    def forward(self, x):
        y = x * self.w
        return y.sum(dim=1, keepdim=True) if self.per_pixel else y.flatten(1).sum(1, keepdim=True)


@pytest.mark.parametrize("per_pixel", [False, True])
def test_gradient_penalty_value_and_gradient(per_pixel):
    w = torch.zeros(1, 2, 2, 2)
    w[0, 0, 0, 0], w[0, 1, 1, 1] = 2.0, 2.0 * math.sqrt(2.0)  # ||w|| = sqrt(4 + 8) = sqrt(12)
    critic = _LinearCritic(w.clone(), per_pixel)
    real, fake = torch.rand(4, 2, 2, 2), torch.rand(4, 2, 2, 2)
    gp = gradient_penalty(critic, real, fake, weight=10.0)
    norm = math.sqrt(12.0)
    assert gp.item() == pytest.approx(10.0 * (norm - 1.0) ** 2, rel=1e-5)
    gp.backward()  # create_graph: the penalty trains the critic; d/dw = 20 (||w|| - 1) w / ||w||
    torch.testing.assert_close(critic.w.grad, 20.0 * (norm - 1.0) * w / norm)


def test_gradient_penalty_interpolates_per_sample():
    seen = []

    def critic(x):
        seen.append(x.detach().clone())
        return (x**2).flatten(1).sum(1)

    real, fake = torch.ones(3, 1, 2, 2), torch.zeros(3, 1, 2, 2)
    gradient_penalty(critic, real, fake, generator=torch.Generator().manual_seed(0))
    x_hat = seen[0]
    u = x_hat[:, 0, 0, 0]
    assert torch.all((u >= 0) & (u <= 1)) and len(set(u.tolist())) == 3  # one u per sample
    torch.testing.assert_close(x_hat, u.view(3, 1, 1, 1).expand(3, 1, 2, 2))
