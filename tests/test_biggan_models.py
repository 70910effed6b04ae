"""BigGAN G/D and the BigGAN-deep generator: parameter counts, shapes, z chunking, blocks, projection head."""

from __future__ import annotations

import time

import pytest
import torch
import torch.nn.functional as F

from gensr.errors import GensrError
from gensr.models.biggan import BigGANConfig, BigGANDiscriminator, BigGANGenerator, DBlock, GBlock
from gensr.models.biggan_deep import BigGANDeepConfig, BigGANDeepGenerator, stats_at_truncation
from gensr.models.registry import build_model

CIFAR = {
    "resolution": 32, "ch": 64, "dim_z": 128, "shared": False, "hier": False, "n_classes": 10,
    "g_attn": [], "d_attn": [], "init": "N02", "sn_eps": 1e-8,
}  # fmt: skip


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def small(resolution: int, **kw) -> BigGANConfig:
    base = {"resolution": resolution, "ch": 8, "dim_z": 40, "shared_dim": 16, "n_classes": 7}
    base.setdefault("g_attn", [])
    base.setdefault("d_attn", [])
    return BigGANConfig(**{**base, **kw})


# ----------------------------------------------------------------------------------------------- counts


def test_parameter_counts_imagenet_128():
    """BigGAN-PyTorch's 128 px model (ch 96, hier, shared 128, dim_z 120, attention 64, 1000 classes)."""
    start = time.perf_counter()
    with torch.device("meta"):  # shapes only: no 70M-parameter orthogonal init on the CPU
        g = BigGANGenerator(BigGANConfig())
        d = BigGANDiscriminator(BigGANConfig())
    assert n_params(g) == 70_433_988
    assert n_params(d) == 87_982_370
    assert time.perf_counter() - start < 10


def test_parameter_counts_cifar_script_match_hand_count():
    """launch_cifar_ema.sh (parser defaults G_ch = D_ch = 64, dim_z 128, no shared embedding, no attention)."""
    with torch.device("meta"):
        g = build_model("biggan_generator", CIFAR)
        d = build_model("biggan_discriminator", CIFAR)
    c, k = 256, 10  # 4 x ch channels everywhere, 10 classes
    conv3, conv1 = c * c * 9 + c, c * c + c
    g_block = 2 * conv3 + conv1 + 2 * (2 * k * c)  # conv1, conv2, conv_sc, two CBNs with gain/bias embeddings
    g_count = (128 * 16 * c + 16 * c) + 3 * g_block + 2 * c + (c * 3 * 9 + 3)
    d_count = (3 * c * 9 + c) + conv3 + (3 * c + c)  # block 0 with its 1x1 shortcut from RGB
    d_count += 2 * conv3 + conv1 + 2 * (2 * conv3) + (c + 1) + k * c
    assert n_params(g) == g_count == 4_304_387
    assert n_params(d) == d_count == 4_207_361


# ----------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "resolution,attn",
    [(32, {"g_attn": [16], "d_attn": [16]}), (64, {"g_attn": [32], "d_attn": [32]}), (128, {}), (256, {})],
)
def test_output_shapes_and_range(resolution, attn):
    torch.manual_seed(0)
    cfg = small(resolution, **attn)
    g, d = BigGANGenerator(cfg), BigGANDiscriminator(cfg)
    z = torch.randn(2, g.dim_z)
    y = torch.tensor([0, 6])
    for mode in ("train", "eval"):
        g.train(mode == "train")
        d.train(mode == "train")
        x = g(z, y)
        assert x.shape == (2, 3, resolution, resolution)
        assert x.abs().max() <= 1.0 and torch.isfinite(x).all()
        assert d(x, y).shape == (2, 1)
    assert g.kind == "generator" and d.kind == "discriminator"


def test_attention_positions_follow_the_tables():
    cfg = BigGANConfig()  # 128 px, attention 64: after G block 3 (192 ch at ch 96) and D block 0
    with torch.device("meta"):
        g, d = BigGANGenerator(cfg), BigGANDiscriminator(cfg)
    assert [len(b) for b in g.blocks] == [1, 1, 1, 2, 1]
    assert g.blocks[3][1].channels == 192
    assert [len(b) for b in d.blocks] == [2, 1, 1, 1, 1, 1]
    assert d.blocks[0][1].channels == 96
    assert not hasattr(d.blocks[5][0], "conv_sc")  # last D block: 16ch -> 16ch, no downsample
    cifar = BigGANConfig(**{**CIFAR, "d_attn": [16]})
    with torch.device("meta"):
        assert [len(b) for b in BigGANDiscriminator(cifar).blocks] == [2, 2, 2, 2]  # every 32 px D block is "16"


def test_config_errors_and_dim_z_rounding():
    with pytest.raises(ValueError, match="hier"):
        BigGANConfig(shared=False, hier=True)
    with pytest.raises(ValueError, match="g_attn"):
        BigGANConfig(g_attn=[48])
    with pytest.raises(ValueError, match="d_attn"):
        BigGANConfig(resolution=32, d_attn=[32], g_attn=[])
    with pytest.raises(ValueError, match="resolution"):
        BigGANConfig(resolution=96)
    with pytest.raises(GensrError, match="512"):
        BigGANDiscriminator(BigGANConfig(resolution=512, ch=1, g_attn=[], d_attn=[]))
    with pytest.raises(GensrError, match="unknown key"):
        build_model("biggan_generator", {"G_ch": 96})
    cfg = small(128, dim_z=128)  # 6 slots of 21 -> 126
    assert cfg.dim_z_used == 126 and cfg.z_chunk == 21 and cfg.cond_dim == 16 + 21
    g = BigGANGenerator(cfg)
    assert g.dim_z == 126 and g.linear.weight.shape[1] == 21
    with pytest.raises(ValueError, match="126"):
        g(torch.randn(1, 128), torch.tensor([0]))


# ----------------------------------------------------------------------------------------------- conditioning


def capture(g: BigGANGenerator, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The first linear's output and the condition each block's CBNs receive."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [g.linear.register_forward_hook(lambda m, i, o: seen.__setitem__("linear", o.detach()))]
    for k, layers in enumerate(g.blocks):
        hooks.append(layers[0].bn1.register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, i[1].detach())))
    with torch.no_grad():
        g(z, y)
    for h in hooks:
        h.remove()
    return seen["linear"], [seen[k] for k in range(len(g.blocks))]


def test_hierarchical_z_chunks_reach_only_their_block():
    torch.manual_seed(1)
    g = BigGANGenerator(small(64, dim_z=50)).eval()  # 4 blocks -> 5 chunks of 10
    z, y = torch.randn(2, 50), torch.tensor([1, 2])
    emb = g.shared.weight[y].detach()
    lin, conds = capture(g, z, y)
    for k, cond in enumerate(conds):
        torch.testing.assert_close(cond, torch.cat([emb, z[:, 10 * (k + 1) : 10 * (k + 2)]], 1))
    z0 = z.clone()
    z0[:, :10] += 1.0  # chunk 0: the first linear only
    lin0, conds0 = capture(g, z0, y)
    assert not torch.allclose(lin0, lin)
    assert all(torch.equal(a, b) for a, b in zip(conds0, conds, strict=True))
    z2 = z.clone()
    z2[:, 20:30] += 1.0  # chunk 2: both CBNs of block 1 only
    lin2, conds2 = capture(g, z2, y)
    assert torch.equal(lin2, lin)
    assert [not torch.equal(a, b) for a, b in zip(conds2, conds, strict=True)] == [False, True, False, False]


def test_non_hier_shared_and_non_shared_conditions():
    torch.manual_seed(2)
    g = BigGANGenerator(small(32, hier=False, dim_z=12)).eval()
    z, y = torch.randn(2, 12), torch.tensor([3, 5])
    lin, conds = capture(g, z, y)
    assert all(torch.equal(c, g.shared.weight[y].detach()) for c in conds)
    gn = BigGANGenerator(small(32, hier=False, shared=False, dim_z=12)).eval()
    assert gn.shared is None and gn.blocks[0][0].bn1.gain.weight.shape == (7, 32)
    _, conds = capture(gn, z, y)
    assert all(torch.equal(c, y) for c in conds)
    soft = F.one_hot(y, 7).float()
    torch.testing.assert_close(gn(z, soft), gn(z, y))
    torch.testing.assert_close(g(z, soft), g(z, y))


def test_gblock_matches_written_out_formula():
    torch.manual_seed(3)
    cfg = small(32, hier=False)
    block = GBlock(8, 4, cfg).eval()
    x, c = torch.randn(2, 8, 5, 5), torch.randn(2, cfg.cond_dim)
    up = lambda t: F.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    h = up(F.relu(block.bn1(x, c)))
    h = block.conv2(F.relu(block.bn2(block.conv1(h), c)))
    torch.testing.assert_close(block(x, c), h + block.conv_sc(up(x)))


def test_dblock_preactivation_is_out_of_place_and_shortcuts_order():
    torch.manual_seed(4)
    cfg = small(32)
    first = DBlock(3, 8, preactivation=False, downsample=True, c=cfg).eval()
    later = DBlock(8, 16, preactivation=True, downsample=True, c=cfg).eval()
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(
        first(x), F.avg_pool2d(first.conv2(F.relu(first.conv1(x))), 2) + first.conv_sc(F.avg_pool2d(x, 2))
    )
    x = torch.randn(2, 8, 8, 8)
    x_copy = x.clone()
    out = later(x)
    assert torch.equal(x, x_copy), "the pre-activation ReLU must not modify its input"
    ref = F.avg_pool2d(later.conv2(F.relu(later.conv1(F.relu(x)))), 2) + F.avg_pool2d(later.conv_sc(x), 2)
    torch.testing.assert_close(out, ref)


def test_discriminator_projection_head():
    torch.manual_seed(5)
    d = BigGANDiscriminator(small(32)).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    y = torch.tensor([0, 3, 6])
    h = x
    for layers in d.blocks:
        for layer in layers:
            h = layer(h)
    h = F.relu(h).sum((2, 3))  # global SUM pool
    w = d.embed.weight.detach()
    v = F.normalize(d.embed.u0 @ w, dim=1, eps=1e-6)
    u2 = F.normalize(v @ w.t(), dim=1, eps=1e-6)
    w_sn = w / (v @ w.t() @ u2.t())
    ref = d.linear(h) + (w_sn[y] * h).sum(1, keepdim=True)
    torch.testing.assert_close(d(x, y), ref, rtol=1e-5, atol=1e-5)
    y2 = torch.tensor([1, 3, 2])
    projection_change = ((w_sn[y] - w_sn[y2]) * h).sum(1, keepdim=True)
    torch.testing.assert_close(d(x, y) - d(x, y2), projection_change, rtol=1e-4, atol=1e-4)


def test_init_styles():
    torch.manual_seed(6)
    g = BigGANGenerator(small(32, init="N02"))
    assert abs(g.blocks[0][0].conv1.weight.std().item() - 0.02) < 0.002
    g = BigGANGenerator(small(32, init="ortho"))
    w = g.linear.weight.detach()  # (16 * 32, 8): orthonormal columns
    torch.testing.assert_close(w.t() @ w, torch.eye(w.shape[1]), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------------------------- BigGAN-deep


def test_truncation_statistics_interpolation():
    table = torch.arange(51, dtype=torch.float64).unsqueeze(1) * torch.tensor([[1.0, 10.0]], dtype=torch.float64)
    assert torch.equal(stats_at_truncation(table, 0.14), table[7])  # 0.14 / 0.02 = 7.000000000000001
    assert torch.equal(stats_at_truncation(table, 0.4), table[20])
    assert torch.equal(stats_at_truncation(table, 0.58), table[29])  # 0.58 / 0.02 = 28.999999999999996
    assert torch.equal(stats_at_truncation(table, 1.0), table[50])
    assert torch.equal(stats_at_truncation(table, 0.0), table[0])
    torch.testing.assert_close(stats_at_truncation(table, 0.404), 0.8 * table[20] + 0.2 * table[21])
    for bad in (-0.1, 1.01):
        with pytest.raises(ValueError):
            stats_at_truncation(table, bad)


def test_deep_generator_structure_and_shapes():
    torch.manual_seed(7)
    g = BigGANDeepGenerator(BigGANDeepConfig(ch=8, n_classes=5)).eval()
    for name, buf in g.named_buffers():
        if name.endswith("running_means"):
            buf.normal_(0.0, 0.1)
        elif name.endswith("running_vars"):
            buf.uniform_(0.5, 2.0)
    layers = g.generator.layers
    assert len(layers) == 11 and type(layers[8]).__name__ == "DeepSelfAttention"
    assert layers[8].snconv1x1_theta.weight_orig.shape == (2, 16, 1, 1)  # 2 ch at 64x64, C/8 keys
    assert g.generator.gen_z.weight_orig.shape == (4 * 4 * 16 * 8, 256)
    assert g.embeddings.weight.shape == (128, 5)
    assert g.generator.conv_to_rgb.weight_orig.shape == (8, 8, 3, 3)
    z, y = torch.randn(2, 128), torch.tensor([0, 4])
    with torch.no_grad():
        x = g(z, y, 0.5)
        assert x.shape == (2, 3, 128, 128) and x.abs().max() <= 1
        torch.testing.assert_close(g(z, F.one_hot(y, 5).float(), 0.5), x)
        assert not torch.equal(g(z, y, 0.3), x)  # BN statistics follow the truncation
    with pytest.raises(ValueError):
        g(torch.randn(2, 120), y)
    with pytest.raises(ValueError):
        BigGANDeepConfig(attention_position=10)
    assert g.kind == "generator"
