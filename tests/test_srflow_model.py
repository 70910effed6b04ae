"""SRFlowNet: official layout and parameter counts, invertibility, log-det vs autograd, likelihood numbers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.checkpoints import loader, srflow_official
from gensr.config import from_dict, to_dict
from gensr.errors import GensrError
from gensr.losses.likelihood import likelihood_summary
from gensr.models.registry import build_model
from gensr.models.rrdbnet import RRDBNet, RRDBNetConfig
from gensr.models.srflow import SRFlowConfig, SRFlowNet, load_rrdb_encoder
from gensr.nn.flow import ActNorm, gaussian_log_prob, set_actnorm_initialized

# config keys that official weights cannot tell: sampling/likelihood settings and gensr's reverse-pass guards
NOT_IN_WEIGHTS = ("quant", "heat", "net_input_bound", "min_scale", "max_prior_logs")


def tiny_config(**kw) -> SRFlowConfig:
    base = dict(nb=2, nf=8, gc=4, K=2, hidden=8, rrdb_blocks=[0, 1])
    base.update(kw)
    return SRFlowConfig(**base)


def randomize_(model: nn.Module, std: float = 0.05) -> nn.Module:
    """Perturb all parameters (not the 1x1 convs) so zero-initialised layers become input dependent."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "invconv" not in name:
                p.add_(torch.randn_like(p) * std)
    set_actnorm_initialized(model, True)
    return model


def tiny_model(**kw) -> SRFlowNet:
    return randomize_(SRFlowNet(tiny_config(**kw))).eval()


@pytest.fixture(scope="module")
def model4x() -> SRFlowNet:
    return SRFlowNet(SRFlowConfig()).eval()


# --------------------------------------------------------------------------------- sizes and layout


def test_default_4x_counts_and_official_shapes(model4x):
    sd = model4x.state_dict()
    assert len(sd) == 1733
    assert sum(p.numel() for p in model4x.parameters()) == 39_541_811  # 39.54M
    assert sum(p.numel() for p in model4x.RRDB.parameters()) == 16_697_987
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    p = "flowUpsamplerNet."
    assert shapes["RRDB.conv_first.weight"] == (64, 3, 3, 3)
    assert shapes["RRDB.RRDB_trunk.22.RDB3.conv5.weight"] == (64, 192, 3, 3)
    assert shapes["RRDB.RRDB_trunk.0.RDB1.conv4.weight"] == (32, 160, 3, 3)
    assert "RRDB.upconv2.weight" in sd and "RRDB.upconv3.weight" not in sd
    assert shapes["RRDB.HRconv.weight"] == (64, 64, 3, 3) and shapes["RRDB.conv_last.weight"] == (3, 64, 3, 3)
    assert shapes[p + "layers.1.actnorm.logs"] == (1, 12, 1, 1)
    assert shapes[p + "layers.1.invconv.weight"] == (12, 12)
    assert not any(k.startswith(p + "layers.1.affine") for k in sd)  # transition step
    assert shapes[p + "layers.3.affine.fAffine.0.weight"] == (64, 326, 3, 3)
    assert shapes[p + "layers.3.affine.fAffine.0.actnorm.bias"] == (1, 64, 1, 1)
    assert shapes[p + "layers.3.affine.fAffine.2.weight"] == (64, 64, 1, 1)
    assert shapes[p + "layers.3.affine.fAffine.4.logs"] == (12, 1, 1)
    assert shapes[p + "layers.3.affine.fFeatures.0.weight"] == (64, 320, 3, 3)
    assert shapes[p + "layers.3.affine.fFeatures.4.weight"] == (24, 64, 3, 3)
    assert shapes[p + "layers.19.conv.weight"] == (12, 6, 3, 3)
    assert shapes[p + "layers.19.conv.logs"] == (12, 1, 1)
    assert shapes[p + "layers.57.affine.fFeatures.4.weight"] == (192, 64, 3, 3)
    assert shapes[p + "f.0.weight"] == (96, 320, 3, 3)
    tensor_layers = {int(k.split(".")[2]) for k in sd if k.startswith(p + "layers.")}
    assert sorted(set(range(58)) - tensor_layers) == [0, 20, 39]  # squeezes hold no tensors
    assert len(model4x.flowUpsamplerNet.layers) == 58
    assert not any("initialized" in k for k in sd)


@pytest.mark.parametrize(
    ("config", "params", "tensors", "z_shapes"),
    [
        (dict(scale=8), 50_821_891, 2080, [(6, 40, 40), (12, 20, 20), (192, 5, 5)]),
        (dict(scale=8, nb=8), 40_030_531, 1630, [(6, 40, 40), (12, 20, 20), (192, 5, 5)]),  # CelebA 8x
    ],
)
def test_8x_counts_and_latent_shapes(config, params, tensors, z_shapes):
    with torch.device("meta"):
        model = SRFlowNet(SRFlowConfig(**config))
    sd = model.state_dict()
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(sd) == tensors
    assert model.z_shapes((10, 10)) == z_shapes
    assert "RRDB.upconv3.weight" in sd
    assert tuple(sd["flowUpsamplerNet.f.0.weight"].shape) == (96, 320, 3, 3)
    assert tuple(sd["flowUpsamplerNet.layers.39.conv.weight"].shape) == (24, 12, 3, 3)
    found = srflow_official.detect(sd)
    assert found is not None and found.arch == "srflow"
    assert found.config == {k: v for k, v in to_dict(SRFlowConfig(**config)).items() if k not in NOT_IN_WEIGHTS}


def test_4x_latent_shapes(model4x):
    assert model4x.z_shapes((20, 20)) == [(6, 40, 40), (96, 10, 10)]  # final z 96 x h/2 x w/2
    assert model4x.z_shapes((6, 8)) == [(6, 12, 16), (96, 3, 4)]


def test_official_4x_detect_and_strict_load(model4x):
    sd = {k: v.clone() for k, v in model4x.state_dict().items()}
    found = srflow_official.detect(sd)
    assert found.arch == "srflow" and found.layout == "srflow-official"
    assert found.config == {
        "scale": 4,
        "nf": 64,
        "nb": 23,
        "gc": 32,
        "K": 16,
        "L": 3,
        "n_transition": 2,
        "hidden": 64,
        "rrdb_blocks": [1, 8, 15, 22],
        "lu_decomposed": False,
    }
    converted = found.convert(sd)
    assert converted.keys() == sd.keys()
    with torch.device("meta"):
        fresh = build_model("srflow", found.config)
    loader.check_state_dict(fresh, converted)
    fresh.load_state_dict(converted, strict=True, assign=True)  # a real strict load of all 1733 tensors
    assert torch.equal(
        fresh.flowUpsamplerNet.layers[57].affine.fFeatures[4].weight,
        sd["flowUpsamplerNet.layers.57.affine.fFeatures.4.weight"],
    )
    assert all(m.is_initialized() for m in fresh.modules() if isinstance(m, ActNorm))
    with pytest.raises(GensrError, match="missing"):
        loader.check_state_dict(fresh, {k: v for k, v in converted.items() if "layers.19" not in k})


def test_default_4x_runs_on_a_tiny_input(model4x):
    lr = torch.rand(1, 3, 2, 2)
    hr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        z, logp = model4x.encode(hr, lr, add_noise=False)
        assert [tuple(t.shape) for t in z] == [(1, 6, 4, 4), (1, 96, 1, 1)]
        assert torch.isfinite(logp).all()
        assert (model4x.decode(lr, z) - hr).abs().max() < 1e-4


def test_detector_rejects_other_layouts():
    assert srflow_official.detect(RRDBNet(RRDBNetConfig(nb=1, nf=8, gc=4)).state_dict()) is None
    sd = SRFlowNet(tiny_config()).state_dict()
    bad = {k: v for k, v in sd.items() if not k.startswith("flowUpsamplerNet.layers.5.")}  # a hole = 2 squeezes
    with pytest.raises(GensrError, match="level"):
        srflow_official.detect(bad)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_file_loads_through_the_reader(tmp_path, prefix):
    model = tiny_model(nb=8, rrdb_blocks=[1, 3, 5, 7])  # a small CelebA-like layout
    path = tmp_path / "SRFlow_tiny.pth"
    torch.save({prefix + k: v for k, v in model.state_dict().items()}, path)
    sd, info = loader.read_state_dict(path)
    assert info["prefixes"] == ([prefix] if prefix else [])
    found = srflow_official.detect(sd)
    assert found.config == {k: v for k, v in to_dict(model.config).items() if k not in NOT_IN_WEIGHTS}
    loaded = build_model("srflow", found.config)
    loader.load_state_dict_strict(loaded, found.convert(sd))
    loaded.eval()
    lr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.encode(hr, lr, add_noise=False)[1], model.encode(hr, lr, add_noise=False)[1])
    if "gensr.checkpoints.srflow_official" in loader.DETECTORS:
        assert loader.read_checkpoint_any(path).arch == "srflow"


def test_detector_taps_error_for_unknown_layouts():
    sd = SRFlowNet(tiny_config(rrdb_blocks=[0])).state_dict()  # 1 tap of 2 blocks: no released layout
    with pytest.raises(GensrError, match="taps"):
        srflow_official.detect(sd)


# ------------------------------------------------------------------------------------ the bijection


@pytest.mark.parametrize(("scale", "lr_size"), [(4, 4), (8, 4)])
def test_decode_inverts_encode_float32(scale, lr_size):
    model = tiny_model(scale=scale)
    lr = torch.rand(2, 3, lr_size, lr_size)
    hr = torch.rand(2, 3, lr_size * scale, lr_size * scale)
    with torch.no_grad():
        z, logp = model.encode(hr, lr, add_noise=False)
        assert [tuple(t.shape[1:]) for t in z] == model.z_shapes((lr_size, lr_size))
        assert logp.shape == (2,) and logp.dtype == torch.float32
        assert (model.decode(lr, z) - hr).abs().max() < 1e-4


def test_whole_net_logdet_matches_autograd_jacobian():
    model = tiny_model().double()
    hr = torch.rand(2, 3, 8, 8, dtype=torch.float64)  # 4x: LR 2x2, deepest level 1x1
    lr = torch.rand(2, 3, 2, 2, dtype=torch.float64)
    z, logp = model.encode(hr, lr, add_noise=False)
    # logp = log|det J| of HR -> (eps..., z) + log N(eps) + log N(z)
    logdet = logp - sum(gaussian_log_prob(t) for t in z)
    for i in range(2):
        conds = model.conditions(lr[i : i + 1])

        def fn(x, conds=conds):
            return torch.cat([t.flatten() for t in model.flowUpsamplerNet.encode(x, conds)[0]])

        jac = torch.autograd.functional.jacobian(fn, hr[i : i + 1], vectorize=True).reshape(192, 192)
        assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[i], atol=1e-7, rtol=1e-9)


def test_lu_model_encodes_like_the_plain_one():
    model = tiny_model()
    lr, hr = torch.rand(1, 3, 4, 4), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        z, logp = model.encode(hr, lr, add_noise=False)
        model.to_lu_()
        z2, logp2 = model.encode(hr, lr, add_noise=False)
    assert model.config.lu_decomposed and "flowUpsamplerNet.layers.1.invconv.log_s" in model.state_dict()
    assert torch.allclose(z[-1], z2[-1], atol=1e-4) and torch.allclose(logp, logp2, rtol=1e-5, atol=1e-2)


# -------------------------------------------------------------------------------------- the encoder


def _official_conditions(enc, lr, blocks):
    """The official RRDBNet.forward(get_steps=True) + rrdbPreprocessing, in-place LeakyReLU included."""
    lrelu = nn.LeakyReLU(0.2, inplace=True)
    fea = enc.conv_first(lr)
    taps = []
    for idx, m in enumerate(enc.RRDB_trunk.children()):
        fea = m(fea)
        if idx in blocks:
            taps.append(fea)
    last = fea + enc.trunk_conv(fea)
    fea_up2 = enc.upconv1(F.interpolate(last, scale_factor=2, mode="nearest"))
    fea = lrelu(fea_up2)  # modifies fea_up2 in place
    fea_up0 = F.interpolate(last, scale_factor=1 / 2, mode="bilinear", align_corners=False, recompute_scale_factor=True)
    concat = torch.cat(taps, 1)
    return [torch.cat([f, F.interpolate(concat, f.shape[-2:])], 1) for f in (fea_up2, last, fea_up0)]


def test_conditions_match_the_official_forward():
    model = tiny_model()
    lr = torch.rand(2, 3, 6, 4)
    with torch.no_grad():
        conds = model.conditions(lr)
        ref = _official_conditions(model.RRDB, lr, [0, 1])
    assert [tuple(c.shape) for c in conds] == [(2, 24, 12, 8), (2, 24, 6, 4), (2, 24, 3, 2)]
    for c, r in zip(conds, ref, strict=True):
        assert torch.allclose(c, r, atol=1e-6)
    assert (conds[0][:, :8] >= 0).float().mean() < 1  # fea_up2 is the activated feature: negatives scaled 0.2


def test_encoder_sr_output_uses_the_official_residual():
    model = tiny_model()
    enc = model.RRDB
    lr = torch.rand(1, 3, 4, 4)
    with torch.no_grad():
        h = enc.RRDB_trunk(enc.conv_first(lr))
        h = h + enc.trunk_conv(h)
        for conv in (enc.upconv1, enc.upconv2):
            h = F.leaky_relu(conv(F.interpolate(h, scale_factor=2, mode="nearest")), 0.2)
        ref = enc.conv_last(F.leaky_relu(enc.HRconv(h), 0.2))
        assert torch.allclose(enc(lr), ref, atol=1e-6)


def test_load_rrdb_encoder_from_rrdbnet():
    from gensr.checkpoints.srflow_official import rrdb_encoder_state

    rrdb = RRDBNet(RRDBNetConfig(scale=4, nf=8, nb=2, gc=4))
    model = SRFlowNet(tiny_config())
    load_rrdb_encoder(model, rrdb_encoder_state(rrdb.state_dict()))
    assert torch.equal(model.RRDB.RRDB_trunk[1].RDB3.conv5.weight, rrdb.body[1].rdb3.conv5.weight)
    assert torch.equal(model.RRDB.trunk_conv.bias, rrdb.conv_body.bias)
    assert torch.equal(model.RRDB.upconv2.weight, rrdb.conv_up2.weight)
    assert torch.equal(model.RRDB.HRconv.weight, rrdb.conv_hr.weight)
    # official names (e.g. from RRDB_DF2K_4X.pth) and an `RRDB.` prefix are accepted too
    load_rrdb_encoder(model, rrdb_encoder_state({"RRDB." + k: v for k, v in model.RRDB.state_dict().items()}))
    with pytest.raises(GensrError, match="missing"):
        load_rrdb_encoder(model, rrdb_encoder_state(RRDBNet(RRDBNetConfig(scale=4, nf=8, nb=1, gc=4)).state_dict()))
    with pytest.raises(GensrError, match="shape"):
        load_rrdb_encoder(model, rrdb_encoder_state(RRDBNet(RRDBNetConfig(scale=4, nf=8, nb=2, gc=6)).state_dict()))
    with pytest.raises(GensrError, match="missing"):  # the loader itself renames nothing
        load_rrdb_encoder(model, rrdb.state_dict())
    with pytest.raises(GensrError, match="two checkpoint keys map to"):  # one tensor under two names
        rrdb_encoder_state({"conv_body.weight": rrdb.conv_body.weight, "trunk_conv.weight": rrdb.conv_body.weight})


# --------------------------------------------------------------------------------------- likelihood


def test_dequantisation_and_likelihood_numbers():
    model = tiny_model()
    lr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16)
    q, hw = model.config.quant, 16 * 16
    with torch.no_grad():
        z_a, logp_a = model.encode(hr, lr, add_noise=False)
        z_b, logp_b = model.encode(hr, lr, add_noise=False)
        assert torch.equal(logp_a, logp_b)
        g = torch.Generator().manual_seed(1)
        z_n, _ = model.encode(hr, lr, add_noise=True, generator=g)
        x_n = model.decode(lr, z_n)
        noise = x_n - hr  # the noise really reaches the flow, and is U(-1/2, 1/2)/quant
        assert noise.abs().max() <= 0.5 / q + 1e-5 and noise.abs().max() > 0.25 / q
        _, logp_n = model.encode(hr, lr, add_noise=True, generator=torch.Generator().manual_seed(2))
        out = likelihood_summary(logp_n, hw, q, dequantized=True)
        assert set(out) == {"logp", "nll", "bpp", "bpd", "loss"}
        logp = out["logp"]
        assert torch.allclose(out["nll"], -logp)
        assert torch.allclose(out["bpp"], (-logp + hw * math.log(q)) / (math.log(2) * hw))
        assert torch.allclose(out["bpd"], (-logp + 3 * hw * math.log(q)) / (math.log(2) * 3 * hw))
        assert torch.allclose(out["bpd"], out["bpp"] / 3 + 2 / 3 * math.log2(q), atol=1e-5)
        assert torch.allclose(out["loss"], out["bpp"].mean())
        clean = likelihood_summary(logp_a, hw, q, dequantized=False)
        assert torch.allclose(clean["bpp"], -logp_a / (math.log(2) * hw))  # the released training-loop number
        assert torch.allclose(model(hr, lr, add_noise=False)["logp"], logp_a)


# ----------------------------------------------------------------------------------------- sampling


def test_decode_sampling_controls():
    model = tiny_model()
    lr = torch.rand(2, 3, 4, 4)
    with torch.no_grad():
        mean = model.decode(lr, heat=0.0)
        assert mean.shape == (2, 3, 16, 16)
        assert torch.equal(mean, model.decode(lr, heat=0.0))
        many = model.decode(lr, heat=0.0, num_samples=3)
        assert many.shape == (6, 3, 16, 16)
        assert torch.allclose(many[0], mean[0], atol=1e-5) and torch.allclose(
            many[3:6], mean[1:2].expand(3, -1, -1, -1), atol=1e-5
        )
        s1 = model.decode(lr, heat=0.9, generator=torch.Generator().manual_seed(5), num_samples=2)
        s2 = model.decode(lr, heat=0.9, generator=torch.Generator().manual_seed(5), num_samples=2)
        assert torch.equal(s1, s2) and not torch.allclose(s1[0], s1[1])
        # partial latents: a given final z with sampled split eps
        z = model.encode(torch.rand(2, 3, 16, 16), lr, add_noise=False)[0]
        part = model.decode(lr, [None, z[-1]], heat=0.0)
        assert part.shape == (2, 3, 16, 16)
        with pytest.raises(ValueError, match="entries"):
            model.decode(lr, [z[-1]])
        with pytest.raises(ValueError, match="shape"):
            model.decode(lr, [z[0], z[-1][:1]])
        with pytest.raises(ValueError, match="divisible by 2"):
            model.decode(torch.rand(1, 3, 5, 4))
        with pytest.raises(ValueError, match="does not match"):
            model.encode(torch.rand(2, 3, 12, 16), lr, add_noise=False)


def test_decode_caches_inverses_under_inference_mode():
    model = tiny_model()
    lr = torch.rand(1, 3, 4, 4)
    with torch.inference_mode():
        a = model.decode(lr, heat=0.5, generator=torch.Generator().manual_seed(0))
        cached = [m.invconv._inv_cache for m in model.flowUpsamplerNet.layers if hasattr(m, "invconv")]
        assert all(c is not None for c in cached)
        b = model.decode(lr, heat=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------- training


def test_first_training_forward_initialises_actnorms_and_loading_prevents_it():
    model = SRFlowNet(tiny_config()).train()
    norms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert not any(m.is_initialized() for m in norms)
    lr, hr = torch.rand(4, 3, 4, 4), torch.rand(4, 3, 16, 16)
    model(hr, lr)
    assert all(m.is_initialized() for m in norms)

    fresh = SRFlowNet(tiny_config()).train()
    fresh.load_state_dict(model.state_dict(), strict=True)
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    fresh(hr * 0.5, lr)
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())

    evald = SRFlowNet(tiny_config()).eval()
    with torch.no_grad():
        evald(hr, lr)
    assert not any(m.is_initialized() for m in evald.modules() if isinstance(m, ActNorm))


def test_every_trainable_parameter_gets_a_gradient():
    model = SRFlowNet(tiny_config()).train()
    lr, hr = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 16, 16)
    (-model(hr, lr)["logp"].mean()).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # DDP without find_unused_parameters
    assert set(model.unused_parameter_names()) == {
        "RRDB.upconv2.weight",
        "RRDB.upconv2.bias",
        "RRDB.HRconv.weight",
        "RRDB.HRconv.bias",
        "RRDB.conv_last.weight",
        "RRDB.conv_last.bias",
        "flowUpsamplerNet.f.0.weight",
        "flowUpsamplerNet.f.0.bias",
    }
    assert "RRDB.conv_first.weight" in trainable
    model.set_rrdb_trainable(False)
    assert not any(p.requires_grad for p in model.RRDB.parameters())
    model.set_rrdb_trainable(True)
    assert not model.RRDB.HRconv.weight.requires_grad and model.RRDB.upconv1.weight.requires_grad


def test_registry_and_config():
    model = build_model("srflow", {"nb": 2, "nf": 8, "gc": 4, "K": 1, "hidden": 8, "rrdb_blocks": [1]})
    cfg = to_dict(model.config)
    assert cfg["L"] == 3 and cfg["rrdb_blocks"] == [1] and cfg["quant"] == 32 and cfg["heat"] == 0.9
    assert from_dict(SRFlowConfig, cfg) == model.config
    assert SRFlowConfig(scale=8).L == 4 and SRFlowConfig(scale=8).rrdb_blocks == [1, 3, 5, 7]
    assert SRFlowConfig().cond_channels == 320 and SRFlowConfig().lr_multiple == 2
    with pytest.raises(GensrError, match="rrdb_blocks"):
        build_model("srflow", {"nb": 2})
    with pytest.raises(GensrError, match="scale"):
        build_model("srflow", {"scale": 3})
    with pytest.raises(GensrError, match="unknown"):
        build_model("srflow", {"levels": 3})
