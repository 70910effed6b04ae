"""BigGAN layers: spectral norm (BigGAN-PyTorch semantics), conditional BatchNorm, standing stats, self-attention.

References are written here from the formulas (power iteration, BN, SA-GAN attention), not taken from the
modules under test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gensr.nn.attention import SelfAttention
from gensr.nn.norm import (
    BatchNorm2d,
    ClassBatchNorm2d,
    ConditionalBatchNorm2d,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    begin_standing_stats,
    class_lookup,
    end_standing_stats,
    singular_values,
)


def power_step(mat: torch.Tensor, u: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One BigGAN-PyTorch power-iteration step from u (1, out): returns (u', v, sigma = v W^T u'^T)."""
    v = u @ mat
    v = v / torch.clamp(v.norm(), min=eps)
    u2 = v @ mat.t()
    u2 = u2 / torch.clamp(u2.norm(), min=eps)
    return u2, v, (v @ mat.t() @ u2.t()).squeeze()


# ----------------------------------------------------------------------------------------------- spectral norm


@pytest.mark.parametrize(
    "make",
    [
        lambda: SNLinear(30, 20),
        lambda: SNConv2d(6, 10, 3, padding=1),
        lambda: SNEmbedding(12, 7),
    ],
)
def test_sn_sigma_converges_to_top_singular_value(make):
    torch.manual_seed(0)
    layer = make().train()
    mat = layer.weight.detach().reshape(layer.weight.shape[0], -1)
    top = torch.linalg.svdvals(mat)[0]
    for _ in range(200):
        layer.sn_weight()
    assert layer.sv0.item() == pytest.approx(top.item(), rel=1e-4)
    normalized = layer.sn_weight().detach().reshape(mat.shape)
    assert torch.linalg.svdvals(normalized)[0].item() == pytest.approx(1.0, rel=1e-4)
    assert set(singular_values(torch.nn.Sequential(layer))) == {"0"}


def test_sn_one_step_per_train_forward_and_none_in_eval():
    torch.manual_seed(1)
    layer = SNLinear(9, 5, eps=1e-6)
    mat = layer.weight.detach().clone()
    u_start = layer.u0.clone()
    x = torch.randn(4, 9)

    layer.eval()
    out = layer(x)
    u1, _, sigma = power_step(mat, u_start, 1e-6)
    torch.testing.assert_close(out, F.linear(x, mat / sigma, layer.bias), rtol=1e-5, atol=1e-6)
    assert torch.equal(layer.u0, u_start), "eval mode must not write u0"
    assert layer.sv0.item() == 1.0, "eval mode must not write sv0"

    layer.train()
    out = layer(x)
    torch.testing.assert_close(out, F.linear(x, mat / sigma, layer.bias), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(layer.u0, u1)
    assert layer.sv0.item() == pytest.approx(sigma.item(), rel=1e-6)
    layer(x)  # second train forward: a second step from the stored u
    u2, _, _ = power_step(mat, u1, 1e-6)
    torch.testing.assert_close(layer.u0, u2)


def test_sn_several_power_iterations_and_gradient_through_sigma():
    torch.manual_seed(2)
    layer = SNConv2d(3, 4, 3, padding=1, n_power_iterations=3).train()
    mat = layer.weight.detach().reshape(4, -1).clone()
    u = layer.u0.clone()
    for _ in range(3):
        u, v, sigma = power_step(mat, u, 1e-6)
    x = torch.randn(2, 3, 5, 5)
    layer(x).square().sum().backward()
    torch.testing.assert_close(layer.u0, u)
    # reference gradient: sigma = v W^T u^T with u, v constants
    w = layer.weight.detach().clone().requires_grad_(True)
    sig = (v @ w.reshape(4, -1).t() @ u.t()).squeeze()
    F.conv2d(x, w / sig, layer.bias.detach(), padding=1).square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, w.grad, rtol=1e-4, atol=1e-5)


def test_sn_keeps_buffers_and_eps_in_state():
    layer = SNLinear(3, 2, eps=1e-4)
    assert set(layer.state_dict()) == {"weight", "bias", "u0", "sv0"}
    assert layer.u0.shape == (1, 2) and layer.sv0.shape == (1,)
    assert layer.sn_eps == 1e-4
    emb = SNEmbedding(6, 4)
    assert emb.u0.shape == (1, 6)
    with pytest.raises(ValueError):
        SNLinear(3, 2, n_power_iterations=0)


def test_sn_embedding_soft_labels_mix_rows():
    torch.manual_seed(3)
    emb = SNEmbedding(5, 3).eval()
    y = torch.tensor([4, 0])
    hard = emb(y)
    soft = emb(F.one_hot(y, 5).float())
    torch.testing.assert_close(hard, soft)
    mix = emb(torch.tensor([[0.25, 0.0, 0.0, 0.0, 0.75]]))
    torch.testing.assert_close(mix[0], 0.25 * hard[1] + 0.75 * hard[0])
    with pytest.raises(ValueError):
        class_lookup(torch.zeros(5, 3), torch.zeros(2, 4))


# ----------------------------------------------------------------------------------------------- batch norm


def reference_bn(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float) -> torch.Tensor:
    return (x - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + eps)


@pytest.mark.parametrize("train", [True, False])
def test_cbn_plus_one_zero_condition_is_plain_bn(train):
    """gain(c) and bias(c) vanish for c = 0 (bias-free linears): the "+1" leaves plain BN, not zero."""
    torch.manual_seed(4)
    cbn = ConditionalBatchNorm2d(6, 11, eps=1e-4)
    cbn.stored_mean.normal_()
    cbn.stored_var.uniform_(0.5, 2.0)
    mean, var = cbn.stored_mean.clone(), cbn.stored_var.clone()
    cbn.train(train)
    x = torch.randn(5, 6, 4, 4) * 3 + 1
    out = cbn(x, torch.zeros(5, 11))
    if train:
        ref = reference_bn(x, x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False), 1e-4)
    else:
        ref = reference_bn(x, mean, var, 1e-4)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert cbn.gain.bias is None and cbn.bias.bias is None


def test_cbn_formula_with_weights():
    torch.manual_seed(5)
    cbn = ConditionalBatchNorm2d(4, 7, eps=1e-5).eval()
    cbn.stored_mean.normal_()
    cbn.stored_var.uniform_(0.5, 2.0)
    x, c = torch.randn(3, 4, 2, 2), torch.randn(3, 7)
    wg = cbn.gain.weight.detach()
    wb = cbn.bias.weight.detach()
    sg = power_step(wg, cbn.gain.u0, 1e-6)[2]
    sb = power_step(wb, cbn.bias.u0, 1e-6)[2]
    ref = reference_bn(x, cbn.stored_mean, cbn.stored_var, 1e-5) * (1 + c @ (wg / sg).t()).view(3, 4, 1, 1)
    ref = ref + (c @ (wb / sb).t()).view(3, 4, 1, 1)
    torch.testing.assert_close(cbn(x, c), ref, rtol=1e-4, atol=1e-5)
    assert set(cbn.state_dict()) == {
        "stored_mean", "stored_var", "gain.weight", "gain.u0", "gain.sv0", "bias.weight", "bias.u0", "bias.sv0",
    }  # fmt: skip


def test_class_bn_plus_one_and_lookup():
    torch.manual_seed(6)
    cbn = ClassBatchNorm2d(3, 5, eps=1e-5).eval()
    x, y = torch.randn(4, 3, 2, 2), torch.tensor([0, 4, 2, 2])
    with torch.no_grad():
        cbn.gain.weight.zero_()
        cbn.bias.weight.zero_()
    torch.testing.assert_close(cbn(x, y), reference_bn(x, cbn.stored_mean, cbn.stored_var, 1e-5))
    with torch.no_grad():
        cbn.gain.weight.normal_()
        cbn.bias.weight.normal_()
    ref = reference_bn(x, cbn.stored_mean, cbn.stored_var, 1e-5) * (1 + cbn.gain.weight[y]).view(4, 3, 1, 1)
    ref = ref + cbn.bias.weight[y].view(4, 3, 1, 1)
    torch.testing.assert_close(cbn(x, y), ref)
    torch.testing.assert_close(cbn(x, F.one_hot(y, 5).float()), ref)


def test_bn_running_stats_match_torch_batchnorm():
    torch.manual_seed(7)
    ours = BatchNorm2d(5, eps=1e-3).train()
    ref = torch.nn.BatchNorm2d(5, eps=1e-3, momentum=0.1, affine=False).train()
    for _ in range(3):
        x = torch.randn(6, 5, 3, 3) * 2 + 1
        torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.stored_mean, ref.running_mean)
    torch.testing.assert_close(ours.stored_var, ref.running_var)
    ours.eval()
    ref.eval()
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(ours(x), ref(x))
    assert set(ours.state_dict()) == {"gain", "bias", "stored_mean", "stored_var"}


def test_standing_stats_are_cumulative_averages():
    torch.manual_seed(8)
    net = torch.nn.Sequential(BatchNorm2d(3), torch.nn.ReLU(), BatchNorm2d(3))
    net.train()
    net(torch.randn(4, 3, 2, 2))  # some running-average history to be discarded
    begin_standing_stats(net)
    batches = [torch.randn(4, 3, 2, 2) * (i + 1) for i in range(5)]
    with torch.no_grad():
        for x in batches:
            net(x)
    bn = net[0]
    torch.testing.assert_close(bn.stored_mean, torch.stack([x.mean((0, 2, 3)) for x in batches]).mean(0))
    torch.testing.assert_close(bn.stored_var, torch.stack([x.var((0, 2, 3)) for x in batches]).mean(0))
    assert bn.num_batches_tracked == 5
    end_standing_stats(net)
    assert bn.momentum == 0.1
    bn.reset_running_stats()
    assert torch.equal(bn.stored_var, torch.ones(3)) and bn.num_batches_tracked == 0


# ----------------------------------------------------------------------------------------------- attention


def reference_attention(layer: SelfAttention, x: torch.Tensor) -> torch.Tensor:
    """SA-GAN attention written per position with einsum from the SN weights (eval mode)."""
    n, c, h, w = x.shape

    def sn(conv):
        mat = conv.weight.detach().reshape(conv.weight.shape[0], -1)
        return mat / power_step(mat, conv.u0, conv.sn_eps)[2]

    theta = torch.einsum("oc,nchw->nohw", sn(layer.theta), x).reshape(n, c // 8, h * w)
    phi = F.max_pool2d(torch.einsum("oc,nchw->nohw", sn(layer.phi), x), 2).reshape(n, c // 8, -1)
    g = F.max_pool2d(torch.einsum("oc,nchw->nohw", sn(layer.g), x), 2).reshape(n, c // 2, -1)
    scores = torch.einsum("ncq,nck->nqk", theta, phi)
    attn = torch.exp(scores - scores.amax(-1, keepdim=True))
    attn = attn / attn.sum(-1, keepdim=True)
    mixed = torch.einsum("nck,nqk->ncq", g, attn).reshape(n, c // 2, h, w)
    o = torch.einsum("oc,nchw->nohw", sn(layer.o), mixed)
    return layer.gamma.detach() * o + x


def test_attention_identity_at_init_and_formula():
    torch.manual_seed(9)
    layer = SelfAttention(16).eval()
    x = torch.randn(2, 16, 6, 4)
    assert layer.gamma.shape == () and layer.gamma.item() == 0.0
    out = layer(x)
    assert out.shape == x.shape
    assert torch.equal(out, x)
    with torch.no_grad():
        layer.gamma.fill_(0.7)
    torch.testing.assert_close(layer(x), reference_attention(layer, x), rtol=1e-4, atol=1e-5)
    assert {k.split(".")[0] for k in layer.state_dict()} == {"theta", "phi", "g", "o", "gamma"}
    assert layer.theta.weight.shape == (2, 16, 1, 1) and layer.g.weight.shape == (8, 16, 1, 1)
    assert layer.o.weight.shape == (16, 8, 1, 1) and layer.o.bias is None


def test_attention_rejects_bad_shapes():
    with pytest.raises(ValueError):
        SelfAttention(12)
    with pytest.raises(ValueError):
        SelfAttention(16)(torch.randn(1, 16, 5, 4))
