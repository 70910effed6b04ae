"""Strict loading of official BigGAN checkpoints through ``gensr.checkpoints.loader.load_model``.

Files are written as the official code writes them (``torch.save(state_dict, path)``) in each layout:
BigGAN-PyTorch ``G_ema.pth``/``D.pth`` (plain, ``--mybn``, ``--cross_replica``, TF-Hub port without ``sv0``)
with and without the ``state_dict.pth`` training state beside them, and pytorch-pretrained-BigGAN's
``pytorch_model.bin``. The expected outputs come from functional re-statements of the *official* forwards
written in this file from the key names and the formulas of BigGAN-PyTorch (``layers.py``, ``BigGAN.py``,
eval mode: one power-iteration step from ``u0`` without writing it) and of ppb (``model.py``: torch spectral
norm ``W / (u . W v)`` with the stored u, v; NHWC ``gen_z``; first 3 RGB channels), not from gensr's modules.
Random weights come from gensr modules, but their key names and shapes are checked against the documented
official layouts (biggan_ragan.md section 5) in the first tests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.checkpoints.loader import describe, load_model
from gensr.errors import GensrError
from gensr.models.biggan import BigGANConfig, BigGANDiscriminator, BigGANGenerator
from gensr.models.biggan_deep import BigGANDeepConfig, BigGANDeepGenerator
from gensr.models.registry import model_config_dict

SMALL = {"resolution": 64, "ch": 8, "dim_z": 50, "shared_dim": 16, "n_classes": 7, "g_attn": [32], "d_attn": [32]}


# ----------------------------------------------------------------------------------------------- documented layouts


def test_imagenet_128_keys_match_the_documented_official_layout():
    with torch.device("meta"):
        g = BigGANGenerator(BigGANConfig()).state_dict()
        d = BigGANDiscriminator(BigGANConfig()).state_dict()
    shapes = {k: tuple(v.shape) for k, v in g.items()}
    assert shapes["shared.weight"] == (1000, 128)
    assert shapes["linear.weight"] == (24576, 20) and shapes["linear.u0"] == (1, 24576)
    assert shapes["linear.sv0"] == (1,) and "linear.bias" in shapes
    assert shapes["blocks.0.0.bn1.gain.weight"] == (1536, 148) and "blocks.0.0.bn1.gain.bias" not in shapes
    assert {"blocks.4.0.bn2.stored_mean", "blocks.4.0.bn2.stored_var", "blocks.4.0.conv_sc.u0"} <= set(shapes)
    assert shapes["blocks.3.1.gamma"] == () and "blocks.3.1.theta.u0" in shapes and "blocks.3.1.o.sv0" in shapes
    assert {"output_layer.0.gain", "output_layer.0.bias", "output_layer.0.stored_mean"} <= set(shapes)
    assert shapes["output_layer.2.weight"] == (3, 96, 3, 3)
    assert not any(".bn." in k for k in shapes)
    shapes = {k: tuple(v.shape) for k, v in d.items()}
    assert shapes["linear.weight"] == (1, 1536) and shapes["linear.u0"] == (1, 1)
    assert shapes["embed.weight"] == (1000, 1536) and shapes["embed.u0"] == (1, 1000)
    assert "blocks.0.1.gamma" in shapes and "blocks.5.0.conv_sc.weight" not in shapes
    assert "blocks.4.0.conv_sc.weight" in shapes


def test_deep_128_keys_match_pytorch_pretrained_biggan():
    with torch.device("meta"):
        sd = BigGANDeepGenerator(BigGANDeepConfig()).state_dict()
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    assert shapes["embeddings.weight"] == (128, 1000)
    assert shapes["generator.gen_z.weight_orig"] == (4 * 4 * 16 * 128, 256)
    assert {"generator.gen_z.bias", "generator.gen_z.weight_u", "generator.gen_z.weight_v"} <= set(shapes)
    assert shapes["generator.layers.0.bn_0.running_means"] == (51, 2048)
    assert shapes["generator.layers.0.bn_0.scale.weight_orig"] == (2048, 256)
    assert "generator.layers.0.bn_3.offset.weight_v" in shapes and "generator.layers.9.conv_3.bias" in shapes
    assert shapes["generator.layers.8.gamma"] == (1,)
    assert shapes["generator.layers.8.snconv1x1_theta.weight_orig"] == (32, 256, 1, 1)
    assert shapes["generator.layers.8.snconv1x1_o_conv.weight_orig"] == (256, 128, 1, 1)
    assert shapes["generator.bn.running_means"] == (51, 128) and "generator.bn.weight" in shapes
    assert shapes["generator.conv_to_rgb.weight_orig"] == (128, 128, 3, 3)
    assert max(int(k.split(".")[2]) for k in shapes if k.startswith("generator.layers.")) == 10


# -------------------------------------------------------------------------------------- BigGAN-PyTorch reference


def sn(sd: dict, p: str, eps: float) -> torch.Tensor:
    """BigGAN-PyTorch SN in eval mode: one power step from u0 (not stored), W / (v W^T u^T)."""
    w = sd[p + "weight"]
    mat = w.reshape(w.shape[0], -1)
    v = sd[p + "u0"] @ mat
    v = v / torch.clamp(v.norm(), min=eps)
    u = v @ mat.t()
    u = u / torch.clamp(u.norm(), min=eps)
    return w / (v @ mat.t() @ u.t()).squeeze()


def conv(sd: dict, p: str, x: torch.Tensor, eps: float) -> torch.Tensor:
    w = sn(sd, p, eps)
    return F.conv2d(x, w, sd.get(p + "bias"), padding=w.shape[-1] // 2)


def norm(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, eps: float) -> torch.Tensor:
    return (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + eps)


def up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


def attention(x: torch.Tensor, theta, phi, g, o, gamma) -> torch.Tensor:
    """SA-GAN: softmax over the 2x2-max-pooled keys; theta/phi/g/o are functions of a map."""
    n, c, h, w = x.shape
    q = theta(x).reshape(n, c // 8, h * w)
    k = F.max_pool2d(phi(x), 2).reshape(n, c // 8, -1)
    val = F.max_pool2d(g(x), 2).reshape(n, c // 2, -1)
    beta = torch.softmax(torch.einsum("ncq,nck->nqk", q, k), dim=-1)
    return gamma * o(torch.einsum("nck,nqk->ncq", val, beta).reshape(n, c // 2, h, w)) + x


def ccbn(sd: dict, p: str, x: torch.Tensor, cond: torch.Tensor, cfg: dict) -> torch.Tensor:
    h = norm(x, sd[p + "stored_mean"], sd[p + "stored_var"], cfg["bn_eps"])
    if cfg["shared"]:
        gain = cond @ sn(sd, p + "gain.", cfg["sn_eps"]).t()
        bias = cond @ sn(sd, p + "bias.", cfg["sn_eps"]).t()
    else:
        gain, bias = sd[p + "gain.weight"][cond], sd[p + "bias.weight"][cond]
    return h * (1 + gain)[:, :, None, None] + bias[:, :, None, None]


def reference_g(sd: dict, z: torch.Tensor, y: torch.Tensor, cfg: dict) -> torch.Tensor:
    """BigGAN-PyTorch ``Generator.forward(z, G.shared(y))`` in eval mode, from the state dict."""
    eps = cfg["sn_eps"]
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("blocks.") and k.endswith(".0.conv1.weight")})
    e = sd["shared.weight"][y] if cfg["shared"] else y
    if cfg["hier"]:
        zs = torch.split(z, cfg["chunk"], 1)
        h, conds = zs[0], [torch.cat([e, zi], 1) for zi in zs[1:]]
    else:
        h, conds = z, [e] * n_blocks
    h = F.linear(h, sn(sd, "linear.", eps), sd["linear.bias"]).view(z.shape[0], -1, 4, 4)
    for i in range(n_blocks):
        p = f"blocks.{i}.0."
        x = h
        h = up(F.relu(ccbn(sd, p + "bn1.", h, conds[i], cfg)))
        h = conv(sd, p + "conv2.", F.relu(ccbn(sd, p + "bn2.", conv(sd, p + "conv1.", h, eps), conds[i], cfg)), eps)
        h = h + conv(sd, p + "conv_sc.", up(x), eps)
        h = _maybe_attention(sd, f"blocks.{i}.1.", h, eps)
    h = norm(h, sd["output_layer.0.stored_mean"], sd["output_layer.0.stored_var"], 1e-5)  # layers.bn default eps
    h = F.relu(h * sd["output_layer.0.gain"][None, :, None, None] + sd["output_layer.0.bias"][None, :, None, None])
    return torch.tanh(conv(sd, "output_layer.2.", h, eps))


def _maybe_attention(sd: dict, p: str, h: torch.Tensor, eps: float) -> torch.Tensor:
    if p + "gamma" not in sd:
        return h
    fs = [lambda t, name=name: conv(sd, p + name + ".", t, eps) for name in ("theta", "phi", "g", "o")]
    return attention(h, *fs, sd[p + "gamma"])


def reference_d(sd: dict, x: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """BigGAN-PyTorch ``Discriminator.forward`` in eval mode, from the state dict."""
    n_blocks = len({k.split(".")[1] for k in sd if k.startswith("blocks.") and k.endswith(".0.conv1.weight")})
    h = x
    for i in range(n_blocks):
        p = f"blocks.{i}.0."
        downsample = i < n_blocks - 1  # 64 px table: 4 x True, then False
        out = conv(sd, p + "conv2.", F.relu(conv(sd, p + "conv1.", F.relu(h) if i else h, eps)), eps)
        out = F.avg_pool2d(out, 2) if downsample else out
        skip = h
        if i == 0:
            skip = conv(sd, p + "conv_sc.", F.avg_pool2d(skip, 2), eps)
        elif p + "conv_sc.weight" in sd:
            skip = conv(sd, p + "conv_sc.", skip, eps)
            skip = F.avg_pool2d(skip, 2) if downsample else skip
        h = _maybe_attention(sd, f"blocks.{i}.1.", out + skip, eps)
    h = F.relu(h).sum((2, 3))
    return F.linear(h, sn(sd, "linear.", eps), sd["linear.bias"]) + (sn(sd, "embed.", eps)[y] * h).sum(1, keepdim=True)


def randomize(sd: dict, seed: int) -> dict:
    """Realistic non-default values for every buffer and the attention gains."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in sd.items():
        v = v.clone()
        if k.endswith("stored_mean"):
            v = torch.randn(v.shape, generator=gen) * 0.2
        elif k.endswith("stored_var"):
            v = torch.rand(v.shape, generator=gen) + 0.5
        elif k.endswith("sv0"):
            v = torch.rand(v.shape, generator=gen) + 1.0
        elif k.endswith("gamma") or k in ("output_layer.0.gain", "output_layer.0.bias"):
            v = torch.rand(v.shape, generator=gen) + 0.3
        out[k] = v
    return out


def official_g(tmp: Path, name: str = "G_ema.pth", seed: int = 0, **config) -> tuple[Path, dict, BigGANConfig]:
    torch.manual_seed(seed)
    cfg = BigGANConfig(**{**SMALL, **config})
    sd = randomize(BigGANGenerator(cfg).state_dict(), seed)
    path = tmp / name
    torch.save(sd, path)
    return path, sd, cfg


def ref_cfg(cfg: BigGANConfig, **over) -> dict:
    return {"shared": cfg.shared, "hier": cfg.hier, "chunk": cfg.z_chunk, "sn_eps": 1e-6, "bn_eps": 1e-5, **over}


def inputs(g: nn.Module, n: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, g.dim_z, generator=gen), torch.randint(0, g.n_classes, (n,), generator=gen)


# ----------------------------------------------------------------------------------------------- BigGAN-PyTorch files


def test_g_ema_pth_loads_strictly_and_matches_the_official_forward(tmp_path):
    path, sd, cfg = official_g(tmp_path)
    g = load_model(path)
    assert type(g).__name__ == "BigGANGenerator" and not g.training
    assert (g.config.resolution, g.config.ch, g.config.dim_z, g.config.hier) == (64, 8, 50, True)
    assert (g.config.shared_dim, g.config.n_classes, g.config.g_attn) == (16, 7, (32,))
    z, y = inputs(g)
    with torch.no_grad():
        torch.testing.assert_close(g(z, y), reference_g(sd, z, y, ref_cfg(cfg)), rtol=1e-4, atol=1e-5)
    assert torch.equal(g.blocks[0][0].conv1.u0, sd["blocks.0.0.conv1.u0"]), "eval forward must not move u0"
    info = describe(path)
    assert info["layout"] == "biggan-pytorch" and info["arch"] == "biggan_generator"


def test_non_shared_cifar_style_generator(tmp_path):
    path, sd, cfg = official_g(
        tmp_path, resolution=32, shared=False, hier=False, dim_z=12, g_attn=[], d_attn=[], init="N02"
    )
    g = load_model(path)
    assert (g.config.shared, g.config.hier, g.config.dim_z, g.config.n_classes) == (False, False, 12, 7)
    z, y = inputs(g)
    with torch.no_grad():
        torch.testing.assert_close(g(z, y), reference_g(sd, z, y, ref_cfg(cfg)), rtol=1e-4, atol=1e-5)


def test_d_pth_loads_and_matches_the_official_forward(tmp_path):
    torch.manual_seed(2)
    cfg = BigGANConfig(**{**SMALL, "d_ch": 16})
    sd = randomize(BigGANDiscriminator(cfg).state_dict(), 2)
    torch.save(sd, tmp_path / "D.pth")
    d = load_model(tmp_path / "D.pth")
    assert type(d).__name__ == "BigGANDiscriminator"
    assert (d.config.resolution, d.config.d_ch, d.config.d_attn, d.config.n_classes) == (64, 16, (32,), 7)
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    y = torch.tensor([0, 6, 3])
    with torch.no_grad():
        torch.testing.assert_close(d(x, y), reference_d(sd, x, y, 1e-6), rtol=1e-4, atol=1e-4)


def relayout_bn(sd: dict, style: str, count: float = 4.0) -> dict:
    """Move BN buffers under ``.bn.`` as ``--mybn`` (sums + counter) or ``--cross_replica`` (SyncBN) save them."""
    out = {}
    for k, v in sd.items():
        base, _, leaf = k.rpartition(".")
        if leaf not in ("stored_mean", "stored_var"):
            out[k] = v
        elif style == "mybn":
            out[f"{base}.bn.{leaf}"] = v * count
            out[f"{base}.bn.accumulation_counter"] = torch.tensor([count])
        else:
            out[f"{base}.bn.{'running_mean' if leaf == 'stored_mean' else 'running_var'}"] = v
            out[f"{base}.bn.num_batches_tracked"] = torch.tensor(123)
    return out


@pytest.mark.parametrize("style,layout", [("mybn", "biggan-pytorch-mybn"), ("sync", "biggan-pytorch-syncbn")])
def test_mybn_and_syncbn_layouts(tmp_path, style, layout):
    path, sd, cfg = official_g(tmp_path)
    torch.save(relayout_bn(sd, style), path)
    assert describe(path)["layout"] == layout
    g = load_model(path)
    z, y = inputs(g)
    with torch.no_grad():
        torch.testing.assert_close(g(z, y), reference_g(sd, z, y, ref_cfg(cfg)), rtol=1e-4, atol=1e-5)


def test_tfhub_port_without_sv0(tmp_path):
    path, sd, cfg = official_g(tmp_path, "biggan-128.pth")
    port = {k: (v.reshape(1) if k.endswith("gamma") else v) for k, v in sd.items() if not k.endswith(".sv0")}
    torch.save(port, path)
    g = load_model(path)
    assert describe(path)["layout"] == "biggan-pytorch-tfhub-port"
    assert (g.config.sn_eps, g.config.bn_eps) == (1e-4, 1e-4)
    z, y = inputs(g)
    with torch.no_grad():
        expected = reference_g(sd, z, y, ref_cfg(cfg, sn_eps=1e-4, bn_eps=1e-4))
        torch.testing.assert_close(g(z, y), expected, rtol=1e-4, atol=1e-5)
    partial = dict(sd)
    del partial["linear.sv0"]
    torch.save(partial, path)
    with pytest.raises(GensrError, match=r"1 missing key\(s\): linear\.sv0"):
        load_model(path)


# ----------------------------------------------------------------------------------------------- state_dict.pth


def training_state(**config) -> dict:
    """What BigGAN-PyTorch's train.py saves as state_dict.pth (config holds nn.ReLU modules)."""
    base = {
        "model": "BigGAN", "G_param": "SN", "D_param": "SN", "norm_style": "bn", "resolution": 64,
        "n_classes": 7, "G_ch": 8, "D_ch": 16, "dim_z": 52, "shared_dim": 16, "G_shared": True, "hier": True,
        "G_attn": "32", "D_attn": "32", "SN_eps": 1e-4, "BN_eps": 0.3, "num_G_SVs": 1, "num_D_SVs": 1,
        "num_G_SV_itrs": 1, "num_D_SV_itrs": 1, "G_init": "N02", "D_init": "ortho", "D_wide": True,
        "G_activation": nn.ReLU(inplace=True), "D_activation": nn.ReLU(inplace=False), "dataset": "I64_hdf5",
    }  # fmt: skip
    return {"itr": 1000, "epoch": 2, "save_num": 0, "save_best_num": 1, "best_IS": 3.5, "best_FID": 80.0,
            "config": {**base, **config}}  # fmt: skip


def test_state_dict_pth_supplies_what_weights_cannot_tell(tmp_path):
    path, sd, cfg = official_g(tmp_path, "G_ema_best1.pth")
    torch.save(training_state(), tmp_path / "state_dict_best1.pth")
    g = load_model(path)
    c = g.config
    assert (c.sn_eps, c.bn_eps, c.init, c.d_ch, c.d_attn, c.dim_z) == (1e-4, 0.3, "N02", 16, (32,), 52)
    assert g.dim_z == 50  # 52 rounded down to 5 chunks of 10
    z, y = inputs(g)
    with torch.no_grad():
        out = g(z, y)
        expected = reference_g(sd, z, y, ref_cfg(cfg, sn_eps=1e-4, bn_eps=0.3))
        torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(out, reference_g(sd, z, y, ref_cfg(cfg)), atol=1e-3)  # the BN eps matters
    torch.save(sd, tmp_path / "G_ema.pth")  # no state_dict.pth for this one: defaults
    assert load_model(tmp_path / "G_ema.pth").config.bn_eps == 1e-5


def test_state_dict_pth_for_a_discriminator(tmp_path):
    torch.manual_seed(3)
    cfg = BigGANConfig(**{**SMALL, "d_ch": 16})
    torch.save(BigGANDiscriminator(cfg).state_dict(), tmp_path / "D.pth")
    torch.save(training_state(), tmp_path / "state_dict.pth")
    c = load_model(tmp_path / "D.pth").config
    assert (c.ch, c.d_ch, c.sn_eps, c.init, c.g_attn, c.dim_z, c.shared_dim) == (8, 16, 1e-4, "ortho", (32,), 52, 16)


def test_state_dict_pth_contradicting_or_unreadable(tmp_path):
    path, _, _ = official_g(tmp_path, "G.pth")
    torch.save(training_state(G_ch=16, n_classes=9), tmp_path / "state_dict.pth")
    with pytest.raises(GensrError, match=r"contradicts the weights: n_classes 9 vs weights 7; ch 16 vs weights 8"):
        load_model(path)
    torch.save(training_state(num_G_SVs=2), tmp_path / "state_dict.pth")
    with pytest.raises(GensrError, match="num_G_SVs=2"):
        load_model(path)
    torch.save(training_state(extra=Unlisted()), tmp_path / "state_dict.pth")
    with pytest.raises(GensrError, match=r"state_dict\.pth: cannot read .*weights_only=True.*move it away"):
        load_model(path)


class Unlisted:
    """A class weights_only loading must refuse."""


# ----------------------------------------------------------------------------------------------- strictness


def test_missing_unexpected_and_refused_layouts(tmp_path):
    path, sd, _ = official_g(tmp_path, "G.pth")
    broken = dict(sd)
    del broken["blocks.1.0.conv2.weight"]
    broken["blocks.0.0.extra_weight"] = torch.zeros(2)
    torch.save(broken, path)
    with pytest.raises(GensrError) as err:
        load_model(path)
    msg = str(err.value)
    assert "1 missing key(s): blocks.1.0.conv2.weight" in msg
    assert "1 unexpected key(s): blocks.0.0.extra_weight" in msg
    wrong = dict(sd)
    wrong["blocks.2.0.conv2.bias"] = torch.zeros(3)
    torch.save(wrong, path)
    with pytest.raises(GensrError, match=r"shape mismatch.*blocks\.2\.0\.conv2\.bias"):
        load_model(path)
    deep = {**sd, "blocks.0.0.conv4.weight": torch.zeros(1)}
    torch.save(deep, path)
    with pytest.raises(GensrError, match="BigGANdeep"):
        load_model(path)


def test_gensr_round_trip(tmp_path):
    path, _, _ = official_g(tmp_path)
    g = load_model(path)
    out = save_checkpoint(tmp_path / "g.safetensors", g.state_dict(), "biggan_generator", model_config_dict(g))
    g2 = load_model(out)
    assert g2.config == g.config
    z, y = inputs(g)
    with torch.no_grad():
        assert torch.equal(g(z, y), g2(z, y))


# ----------------------------------------------------------------------------------------------- ppb BigGAN-deep


def tsn(sd: dict, p: str) -> torch.Tensor:
    """torch.nn.utils.spectral_norm in eval mode: W / (u . W v) with the stored u, v."""
    w = sd[p + "weight_orig"]
    return w / torch.dot(sd[p + "weight_u"], w.reshape(w.shape[0], -1) @ sd[p + "weight_v"])


def stats(table: torch.Tensor, t: float) -> torch.Tensor:
    pos = t * (table.shape[0] - 1)
    i = int(pos + 1e-9)
    f = pos - i
    return table[i] if f < 1e-6 else (1 - f) * table[i] + f * table[i + 1]


def reference_ppb(sd: dict, z: torch.Tensor, y: torch.Tensor, t: float, eps: float) -> torch.Tensor:
    """ppb ``BigGAN.forward(z, one_hot(y), t)`` (with correctly weighted BN statistics), from the state dict."""
    ch = sd["generator.gen_z.weight_orig"].shape[0] // 256
    cond = torch.cat([z, sd["embeddings.weight"][:, y].t()], 1)
    h = F.linear(cond, tsn(sd, "generator.gen_z."), sd["generator.gen_z.bias"])
    h = h.view(-1, 4, 4, 16 * ch).permute(0, 3, 1, 2)

    def bn(p, x):
        m, v = stats(sd[p + "running_means"], t), stats(sd[p + "running_vars"], t)
        gain = 1 + cond @ tsn(sd, p + "scale.").t()
        return norm(x, m, v, eps) * gain[:, :, None, None] + (cond @ tsn(sd, p + "offset.").t())[:, :, None, None]

    def cv(p, x):
        w = tsn(sd, p)
        return F.conv2d(x, w, sd.get(p + "bias"), padding=w.shape[-1] // 2)

    n_layers = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("generator.layers."))
    block = 0
    for k in range(n_layers):
        p = f"generator.layers.{k}."
        if p + "gamma" in sd:
            fs = [lambda x, q=p + f"snconv1x1_{n}.": cv(q, x) for n in ("theta", "phi", "g", "o_conv")]
            h = attention(h, *fs, sd[p + "gamma"])
            continue
        upsample = block % 2 == 1  # ppb tables alternate (False, True)
        x = h
        h = cv(p + "conv_0.", F.relu(bn(p + "bn_0.", h)))
        h = F.relu(bn(p + "bn_1.", h))
        h = cv(p + "conv_1.", up(h) if upsample else h)
        h = cv(p + "conv_2.", F.relu(bn(p + "bn_2.", h)))
        h = cv(p + "conv_3.", F.relu(bn(p + "bn_3.", h)))
        x = x[:, : x.shape[1] // 2] if x.shape[1] != h.shape[1] else x
        h = h + (up(x) if upsample else x)
        block += 1
    m, v = stats(sd["generator.bn.running_means"], t), stats(sd["generator.bn.running_vars"], t)
    h = norm(h, m, v, eps) * sd["generator.bn.weight"][None, :, None, None]
    h = h + sd["generator.bn.bias"][None, :, None, None]
    return torch.tanh(cv("generator.conv_to_rgb.", F.relu(h))[:, :3])


def official_ppb(tmp: Path) -> dict:
    torch.manual_seed(4)
    sd = BigGANDeepGenerator(BigGANDeepConfig(ch=8, n_classes=6)).state_dict()
    gen = torch.Generator().manual_seed(4)
    for k, v in sd.items():
        if k.endswith("running_means"):
            sd[k] = torch.randn(v.shape, generator=gen) * 0.2
        elif k.endswith("running_vars"):
            sd[k] = torch.rand(v.shape, generator=gen) + 0.5
        elif k.endswith("gamma") or k in ("generator.bn.weight", "generator.bn.bias"):
            sd[k] = torch.rand(v.shape, generator=gen) + 0.3
    torch.save(sd, tmp / "pytorch_model.bin")
    return sd


@pytest.mark.parametrize("truncation", [1.0, 0.5, 0.404])
def test_ppb_pytorch_model_bin(tmp_path, truncation):
    sd = official_ppb(tmp_path)
    g = load_model(tmp_path / "pytorch_model.bin")
    assert type(g).__name__ == "BigGANDeepGenerator"
    c = g.config
    assert (c.resolution, c.ch, c.z_dim, c.class_embed_dim, c.n_classes, c.eps) == (128, 8, 128, 128, 6, 1e-4)
    assert describe(tmp_path / "pytorch_model.bin")["layout"] == "pytorch-pretrained-biggan"
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(2, 128, generator=gen) * truncation
    y = torch.tensor([5, 1])
    with torch.no_grad():
        expected = reference_ppb(sd, z, y, truncation, 1e-4)
        torch.testing.assert_close(g(z, y, truncation), expected, rtol=1e-4, atol=2e-5)


def test_ppb_config_json_and_strictness(tmp_path):
    import json

    sd = official_ppb(tmp_path)
    js = {"output_dim": 128, "z_dim": 128, "class_embed_dim": 128, "channel_width": 8, "num_classes": 6,
          "attention_layer_position": 8, "eps": 1e-3, "n_stats": 51}  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(js))
    assert load_model(tmp_path / "pytorch_model.bin").config.eps == 1e-3
    (tmp_path / "config.json").write_text(json.dumps({**js, "channel_width": 128}))
    with pytest.raises(GensrError, match=r"config\.json contradicts the weights: ch 128 vs weights 8"):
        load_model(tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").unlink()
    del sd["generator.layers.3.bn_2.scale.weight_v"]
    torch.save(sd, tmp_path / "pytorch_model.bin")
    with pytest.raises(GensrError, match=r"missing key\(s\): generator\.layers\.3\.bn_2\.scale\.weight_v"):
        load_model(tmp_path / "pytorch_model.bin")
