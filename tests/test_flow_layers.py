"""gensr.nn.flow layers: invertibility, log|det J| against autograd Jacobians, init flags, caching."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gensr.nn import flow
from gensr.nn.flow import (
    ActNorm,
    CondAffineSeparatedAndCond,
    Conv2dZeros,
    FlowStep,
    InvertibleConv1x1,
    InvertibleConv1x1LU,
    Split2d,
    Squeeze2d,
    coupling_net,
    gaussian_log_prob,
    set_actnorm_initialized,
)

COND = 5  # conditioning channels in these tests


def randomize_(module: nn.Module, std: float = 0.1, skip: tuple[str, ...] = ("invconv",)) -> nn.Module:
    """Perturb every parameter so zero-initialised nets make input-dependent scales and shifts."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if not any(s in name for s in skip):
                p.add_(torch.randn_like(p) * std)
    set_actnorm_initialized(module, True)
    return module


def jacobian_logdet(fn, x: torch.Tensor) -> torch.Tensor:
    """log|det d fn(x_i) / d x_i| per sample, from the full autograd Jacobian (fn returns a flat vector)."""
    out = []
    for i in range(x.shape[0]):
        xi = x[i : i + 1]
        jac = torch.autograd.functional.jacobian(fn, xi)
        jac = jac.reshape(jac.shape[0], -1)
        assert jac.shape[0] == jac.shape[1], jac.shape
        out.append(torch.linalg.slogdet(jac)[1])
    return torch.stack(out)


def check_bijection(layer: nn.Module, x: torch.Tensor, cond: torch.Tensor | None = None, atol: float = 1e-8):
    """Float64: forward/inverse round trip and logdet == autograd log|det J| for each sample."""
    y, logdet = layer(x, cond)
    assert logdet.shape == (x.shape[0],)
    assert logdet.dtype == torch.float64
    assert torch.allclose(layer.inverse(y, cond), x, atol=atol)
    ref = []
    for i in range(x.shape[0]):  # each sample with its own conditioning
        ci = None if cond is None else cond[i : i + 1]
        ref.append(jacobian_logdet(lambda xi, ci=ci: layer(xi, ci)[0].flatten(), x[i : i + 1]))
    ref = torch.cat(ref)
    assert torch.allclose(logdet, ref, atol=1e-8, rtol=1e-8), (logdet, ref)


# ------------------------------------------------------------------------------------------ squeeze


def test_squeeze_channel_order_matches_glow():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    y, logdet = Squeeze2d()(x)
    assert y.shape == (2, 12, 2, 3)
    assert torch.equal(logdet, torch.zeros(2))
    for c in range(3):
        for dy in range(2):
            for dx in range(2):
                assert torch.equal(y[:, c * 4 + dy * 2 + dx], x[:, c, dy::2, dx::2])
    assert torch.equal(Squeeze2d().inverse(y), x)


def test_squeeze_jacobian_and_errors():
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    check_bijection(Squeeze2d(), x)
    with pytest.raises(ValueError, match="divisible"):
        Squeeze2d()(torch.zeros(1, 1, 3, 4))


# ------------------------------------------------------------------------------------------ actnorm


def test_actnorm_bijection_and_logdet():
    layer = randomize_(ActNorm(6), std=0.5).double()
    x = torch.randn(2, 6, 5, 4, dtype=torch.float64)
    check_bijection(layer, x)
    y, logdet = layer(x)
    assert torch.allclose(logdet, 20 * layer.logs.sum().expand(2))


def test_actnorm_data_init_once_in_training():
    layer = ActNorm(4)
    assert "initialized" not in layer.state_dict()  # official checkpoints load strictly
    assert not layer.is_initialized()
    x = torch.randn(8, 4, 6, 6) * 3 + 2
    y, _ = layer.train()(x)
    assert layer.is_initialized() and bool(layer.initialized)
    assert torch.allclose(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-4)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(torch.randn(8, 4, 6, 6) * 10)  # a second batch must not re-initialise
    assert all(torch.equal(before[k], v) for k, v in layer.state_dict().items())


def test_actnorm_no_init_in_eval_or_inverse():
    layer = ActNorm(3).eval()
    layer(torch.randn(4, 3, 5, 5) + 7)
    assert not layer.is_initialized()
    assert torch.equal(layer.bias, torch.zeros(1, 3, 1, 1))
    layer.train()
    layer.inverse(torch.randn(4, 3, 5, 5) + 7)
    assert not layer.is_initialized()


def test_actnorm_loading_marks_initialized():
    src = ActNorm(3)
    with torch.no_grad():
        src.bias.fill_(0.5)
        src.logs.fill_(-0.25)
    dst = ActNorm(3)
    dst.load_state_dict(src.state_dict(), strict=True)
    assert dst.is_initialized()
    dst.train()(torch.randn(4, 3, 5, 5) * 9)  # training forward after loading: no data-dependent init
    assert torch.equal(dst.bias, src.bias) and torch.equal(dst.logs, src.logs)
    # zero-valued loaded parameters are still "loaded" (the official `bias != 0` heuristic would re-init)
    zero = ActNorm(3)
    zero.load_state_dict(ActNorm(3).state_dict())
    zero.train()(torch.randn(4, 3, 5, 5) + 3)
    assert torch.equal(zero.bias, torch.zeros(1, 3, 1, 1))


def test_actnorm_flag_can_be_cleared():
    layer = ActNorm(2)
    layer.mark_initialized(True)
    layer.mark_initialized(False)
    layer.train()(torch.randn(4, 2, 3, 3) + 5)
    assert layer.is_initialized()
    assert not torch.equal(layer.bias, torch.zeros(1, 2, 1, 1))


# ----------------------------------------------------------------------------------------- 1x1 conv


def test_invconv_orthogonal_init_and_bijection():
    layer = InvertibleConv1x1(6)
    w = layer.weight.detach().double()
    assert torch.allclose(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-6)
    with torch.no_grad():
        layer.weight.add_(torch.randn(6, 6) * 0.3)
    layer = layer.double()
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64)
    check_bijection(layer, x)
    _, logdet = layer(x)
    assert torch.allclose(logdet, 12 * torch.linalg.slogdet(layer.weight)[1].expand(2))


def test_invconv_float32_round_trip():
    layer = InvertibleConv1x1(12)
    with torch.no_grad():
        layer.weight.add_(torch.randn(12, 12) * 0.2)
    x = torch.randn(2, 12, 8, 8)
    y, logdet = layer(x)
    assert y.dtype == torch.float32 and logdet.dtype == torch.float32
    assert (layer.inverse(y) - x).abs().max() < 1e-4


def test_invconv_inverse_cache():
    layer = InvertibleConv1x1(4)
    y = torch.randn(1, 4, 3, 3)
    layer.train()
    with torch.no_grad():
        layer.inverse(y)
    assert layer._inv_cache is None  # training mode: never cached
    layer.eval()
    with torch.enable_grad():
        x = layer.inverse(y)
        assert x.requires_grad  # eval mode with grads on the weight: not cached, differentiable
    assert layer._inv_cache is None
    with torch.no_grad():
        a = layer.inverse_weight()
        b = layer.inverse_weight()
        assert a is b  # cached
        layer.weight.mul_(2.0)  # in-place edit bumps the version: the cache is refreshed
        c = layer.inverse_weight()
    assert c is not a
    assert torch.allclose(c, torch.inverse(layer.weight.double()))
    with torch.inference_mode():
        d = layer.inverse_weight()
    assert torch.allclose(d, c)
    with torch.no_grad():
        e = layer.inverse_weight()  # an inference-mode cache is not reused outside inference mode
    assert not e.is_inference()
    sd = {"weight": torch.eye(4) * 3}
    layer.load_state_dict(sd)
    with torch.no_grad():
        assert torch.allclose(layer.inverse_weight(), torch.eye(4, dtype=torch.float64) / 3)


def test_invconv_lu_bijection_and_conversion():
    plain = InvertibleConv1x1(6)
    with torch.no_grad():
        plain.weight.add_(torch.randn(6, 6) * 0.3)
    lu = InvertibleConv1x1LU.from_weight(plain.weight)
    assert torch.allclose(lu.get_weight(), plain.weight, atol=1e-5)
    assert torch.allclose(lu.logabsdet(), torch.linalg.slogdet(plain.weight.double())[1], atol=1e-5)
    assert set(lu.state_dict()) == {"perm", "sign_s", "lower", "upper", "log_s"}
    x = torch.randn(2, 6, 3, 3)
    assert torch.allclose(lu(x)[0], plain(x)[0], atol=1e-5)
    assert torch.allclose(lu(x)[1], plain(x)[1], atol=1e-4)
    lu = lu.double()
    with torch.no_grad():
        lu.lower.add_(torch.randn(6, 6) * 0.2)
        lu.upper.add_(torch.randn(6, 6) * 0.2)
        lu.log_s.add_(torch.randn(6) * 0.2)
    check_bijection(lu, x.double())


def test_flowstep_to_lu_preserves_the_function():
    step = randomize_(FlowStep(4, COND, hidden=8)).eval()
    x, cond = torch.randn(2, 4, 4, 4), torch.randn(2, COND, 4, 4)
    y, ld = step(x, cond)
    step.to_lu_()
    assert isinstance(step.invconv, InvertibleConv1x1LU)
    y2, ld2 = step(x, cond)
    assert torch.allclose(y, y2, atol=1e-5) and torch.allclose(ld, ld2, atol=1e-3)


# ----------------------------------------------------------------------------------- coupling parts


def test_conv2dzeros():
    conv = Conv2dZeros(3, 4)
    x = torch.randn(2, 3, 5, 5)
    assert torch.equal(conv(x), torch.zeros(2, 4, 5, 5))
    assert conv.logs.shape == (4, 1, 1)
    with torch.no_grad():
        conv.bias.fill_(1.0)
        conv.logs.fill_(0.1)
    assert torch.allclose(conv(x), torch.full((2, 4, 5, 5), math.exp(0.3)))


def test_coupling_net_keys():
    net = coupling_net(7, 10, hidden=8)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "0.weight": (8, 7, 3, 3),
        "0.actnorm.bias": (1, 8, 1, 1),
        "0.actnorm.logs": (1, 8, 1, 1),
        "2.weight": (8, 8, 1, 1),
        "2.actnorm.bias": (1, 8, 1, 1),
        "2.actnorm.logs": (1, 8, 1, 1),
        "4.weight": (10, 8, 3, 3),
        "4.bias": (10,),
        "4.logs": (10, 1, 1),
    }


def test_cond_affine_keys_and_init_scale():
    layer = CondAffineSeparatedAndCond(6, COND, hidden=8)
    assert tuple(layer.fAffine[0].weight.shape) == (8, 3 + COND, 3, 3)
    assert tuple(layer.fAffine[4].weight.shape) == (6, 8, 3, 3)
    assert tuple(layer.fFeatures[0].weight.shape) == (8, COND, 3, 3)
    assert tuple(layer.fFeatures[4].weight.shape) == (12, 8, 3, 3)
    odd = CondAffineSeparatedAndCond(5, COND, hidden=8)
    assert odd.channels_for_nn == 2 and tuple(odd.fAffine[4].weight.shape) == (6, 8, 3, 3)
    # zero-initialised output convs: scale = sigmoid(2) + 1e-4 everywhere, shift 0
    layer.eval()
    x, cond = torch.randn(2, 6, 4, 4), torch.randn(2, COND, 4, 4)
    y, logdet = layer(x, cond)
    s = 1 / (1 + math.exp(-2)) + 1e-4
    expect = x.clone()
    expect *= s
    expect[:, 3:] *= s
    assert torch.allclose(y, expect, atol=1e-6)
    assert torch.allclose(logdet, torch.full((2,), (6 + 3) * 16 * math.log(s)), atol=1e-4)


@pytest.mark.parametrize("channels", [4, 5, 12])
def test_injector_and_coupling_bijections(channels):
    layer = randomize_(CondAffineSeparatedAndCond(channels, COND, hidden=8), std=0.2).double().eval()
    x = torch.randn(2, channels, 4, 4, dtype=torch.float64)
    cond = torch.randn(2, COND, 4, 4, dtype=torch.float64)

    class Part(nn.Module):
        def __init__(self, fwd, inv):
            super().__init__()
            self.fwd, self.inv = fwd, inv

        def forward(self, x, cond=None):
            return self.fwd(x, cond)

        def inverse(self, y, cond=None):
            return self.inv(y, cond)

    check_bijection(Part(layer.forward_injector, layer.inverse_injector), x, cond)
    check_bijection(Part(layer.forward_coupling, layer.inverse_coupling), x, cond)
    check_bijection(layer, x, cond)
    with pytest.raises(ValueError, match="conditioning"):
        layer(x, None)


def test_cond_affine_float32_round_trip():
    layer = randomize_(CondAffineSeparatedAndCond(12, COND, hidden=8), std=0.2).eval()
    x, cond = torch.randn(2, 12, 8, 8), torch.randn(2, COND, 8, 8)
    y, logdet = layer(x, cond)
    assert logdet.dtype == torch.float32
    assert (layer.inverse(y, cond) - x).abs().max() < 1e-4


# -------------------------------------------------------------------------------------------- split


@pytest.mark.parametrize(("channels", "kept"), [(6, 3), (12, 6), (10, 5), (24, 12)])
def test_split_channel_counts(channels, kept):
    split = Split2d(channels)
    assert split.num_channels_pass == kept
    assert tuple(split.conv.weight.shape) == (2 * (channels - kept), kept, 3, 3)


def test_split_is_a_bijection_and_its_prior_belongs_to_the_objective():
    split = randomize_(Split2d(12), std=0.2).double()
    x = torch.randn(2, 12, 4, 4, dtype=torch.float64)
    y, logdet = split(x)
    assert y.shape == x.shape and split.factored_channels == 6
    z1, eps = y[:, :6], y[:, 6:]
    assert torch.equal(z1, x[:, :6])
    check_bijection(split, x)  # round trip and log|det J| = -sum(logs) against autograd
    # change of variables: log N(z2; mean, s^2) = log N(eps; 0, 1) + log|d eps / d z2|
    mean, logs = split.prior(z1)
    ref = torch.distributions.Normal(mean, logs.exp()).log_prob(x[:, 6:]).flatten(1).sum(1)
    assert torch.allclose(gaussian_log_prob(eps) + logdet, ref, atol=1e-8)
    # eps = 0 (temperature 0) rebuilds the prior mean
    assert torch.allclose(split.inverse(torch.cat([z1, torch.zeros_like(eps)], 1))[:, 6:], mean)
    with pytest.raises(ValueError, match="got 11 channels"):
        split.inverse(torch.zeros(2, 11, 4, 4, dtype=torch.float64))


def test_gaussian_log_prob_matches_torch_normal():
    x = torch.randn(3, 8, 2, 2)
    assert torch.allclose(
        gaussian_log_prob(x), torch.distributions.Normal(0.0, 1.0).log_prob(x).flatten(1).sum(1), atol=1e-4
    )
    mean, logs = torch.randn(3, 8, 2, 2), 0.3 * torch.randn(3, 8, 2, 2)
    ref = torch.distributions.Normal(mean, logs.exp()).log_prob(x).flatten(1).sum(1)
    assert torch.allclose(gaussian_log_prob(x, mean, logs), ref, atol=1e-4)


# ---------------------------------------------------------------------------------------- flow step


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("lu", [False, True])
def test_flowstep_bijection(affine, lu):
    step = randomize_(FlowStep(4, COND, hidden=8, affine=affine, lu_decomposed=lu), std=0.2).double().eval()
    x = torch.randn(2, 4, 4, 4, dtype=torch.float64)
    cond = torch.randn(2, COND, 4, 4, dtype=torch.float64)
    check_bijection(step, x, cond)
    names = set(step.state_dict())
    assert any(n.startswith("affine.") for n in names) == affine
    assert ("invconv.weight" in names) == (not lu)


def test_flowstep_first_training_forward_inits_all_actnorms():
    step = FlowStep(4, COND, hidden=8).train()
    norms = [m for m in step.modules() if isinstance(m, ActNorm)]
    assert len(norms) == 5  # step + 2 per coupling net
    step(torch.randn(4, 4, 6, 6) * 2 + 1, torch.randn(4, COND, 6, 6))
    assert all(m.is_initialized() for m in norms)


def test_autocast_keeps_flow_state_and_logdets_float32():
    step = randomize_(FlowStep(8, COND, hidden=8), std=0.2).eval()
    x, cond = torch.randn(2, 8, 6, 6), torch.randn(2, COND, 6, 6)
    y_ref, ld_ref = step(x, cond)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, logdet = step(x, cond.bfloat16())
        back = step.inverse(y, cond.bfloat16())
        lp = gaussian_log_prob(y.bfloat16())
    assert y.dtype == torch.float32 and logdet.dtype == torch.float32 and lp.dtype == torch.float32
    assert back.dtype == torch.float32
    assert (back - x).abs().max() < 1e-4  # same (bf16) coupling outputs both ways: exact up to fp32
    assert torch.allclose(logdet, ld_ref, rtol=1e-2)
    assert (y - y_ref).abs().max() < 0.1


def test_sample_normal_heat_zero_and_generator_device():
    z = flow.sample_normal((2, 3), 0.0, "cpu")
    assert torch.equal(z, torch.zeros(2, 3))
    g = torch.Generator().manual_seed(0)
    z = flow.sample_normal((1000,), 0.5, "cpu", g)
    assert abs(float(z.std()) - 0.5) < 0.05


# ---------------------------------------------------------------------------------------- one contract

# Every flow layer, built small and randomised: (factory, channels, needs cond). A new layer costs one line.
CONTRACT_LAYERS = {
    "squeeze": (lambda: Squeeze2d(2), 3, False),
    "actnorm": (lambda: ActNorm(4), 4, False),
    "invconv": (lambda: InvertibleConv1x1(4), 4, False),
    "invconv_lu": (lambda: InvertibleConv1x1LU(4), 4, False),
    "cond_affine": (lambda: CondAffineSeparatedAndCond(4, COND, hidden=6), 4, True),
    "cond_affine_guarded": (lambda: CondAffineSeparatedAndCond(4, COND, 6, input_bound=0.5, min_scale=0.3), 4, True),
    "split": (lambda: Split2d(4), 4, False),
    "split_guarded": (lambda: Split2d(4, input_bound=0.5, max_logs=0.1), 4, False),
    "transition_step": (lambda: FlowStep(4, COND, 6, affine=False), 4, True),
    "flow_step": (lambda: FlowStep(4, COND, 6, affine=True), 4, True),
    "flow_step_lu": (lambda: FlowStep(4, COND, 6, affine=True, lu_decomposed=True), 4, True),
}


@pytest.mark.parametrize("name", sorted(CONTRACT_LAYERS))
def test_every_flow_layer_keeps_the_contract(name):
    factory, channels, needs_cond = CONTRACT_LAYERS[name]
    torch.manual_seed(0)
    layer = randomize_(factory(), std=0.3).double().eval()
    assert isinstance(layer, flow.FlowLayer)
    x = 2.0 * torch.randn(3, channels, 4, 4, dtype=torch.float64)
    cond = torch.randn(3, COND, 4, 4, dtype=torch.float64) if needs_cond else None
    # round trip and log|det J| against autograd, in float64, each sample with its own conditioning
    check_bijection(layer, x, cond)
    y, logdet = layer(x, cond)
    assert tuple(y.shape[1:]) == layer.out_shape(tuple(x.shape[1:]))
    # batch independence: sample 1 alone gives the same output and logdet as within the batch
    y1, ld1 = layer(x[1:2], None if cond is None else cond[1:2])
    assert torch.allclose(y1, y[1:2], atol=1e-12) and torch.allclose(ld1, logdet[1:2], atol=1e-12)
    assert 0 <= layer.factored_channels < y.shape[1]
