"""SRFlow latents (gensr.inference.latent): encode/decode, scores, normalisation math, masks, edits, LR-consistency."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flow_helpers import tiny_srflow
from gensr.errors import GensrError
from gensr.imresize import imresize
from gensr.inference import latent as L
from gensr.inference.flow_sampling import sample_sr
from gensr.losses.likelihood import likelihood_summary
from gensr.models.srflow import SRFlowConfig, SRFlowNet


@pytest.fixture(scope="module")
def model() -> SRFlowNet:
    return tiny_srflow()


@pytest.fixture(scope="module")
def lr() -> torch.Tensor:
    return torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def sr(model, lr) -> torch.Tensor:
    return sample_sr(lr, model, temperature=0.5, seed=0)


# ------------------------------------------------------------------------------------- encode / decode


def test_encode_decode_round_trip_odd_lr(model, lr, sr):
    enc = L.encode(sr, lr, model)
    assert [tuple(z.shape) for z in enc["latents"]] == [(1, 6, 28, 36), (1, 96, 7, 9)]  # padded 14x18 LR
    assert enc["z"] is enc["latents"][-1] and len(enc["eps"]) == 1 and enc["lr_size"] == (13, 17)
    back = L.decode_latents(lr, enc, model, clamp=False)
    assert back.shape == sr.shape
    assert (back - sr).abs().max() < 1e-4
    # deterministic without noise; noise changes the latents
    assert torch.equal(L.encode(sr, lr, model)["z"], enc["z"])
    noisy = L.encode(sr, lr, model, add_noise=True, seed=1)
    assert not torch.equal(noisy["z"], enc["z"])
    # an HR a few pixels larger than scale x LR is mod-cropped first
    bigger = F.pad(sr, (0, 3, 0, 2), mode="replicate")
    assert torch.equal(L.encode(bigger, lr, model)["z"], enc["z"])


def test_encode_without_lr_uses_bicubic_of_modcropped_hr(model):
    hr = torch.rand(1, 3, 34, 41, generator=torch.Generator().manual_seed(3))
    enc = L.encode(hr, None, model)
    assert enc["lr_size"] == (8, 10)
    assert torch.allclose(enc["lr"], imresize(hr[:, :, :32, :40], 0.25).clamp(0, 1))
    back = L.decode_latents(enc["lr"], enc["latents"], model, clamp=False)
    assert (back - hr[:, :, :32, :40]).abs().max() < 1e-4


def test_likelihood_numbers_match_the_model(model, lr, sr):
    enc = L.encode(sr, lr, model)
    padded_hw = 56 * 72
    assert enc["bpp"] == pytest.approx(-enc["logp"] / (math.log(2) * padded_hw), rel=1e-5)
    assert enc["bpd"] == pytest.approx(enc["bpp"] / 3 + math.log2(32), rel=1e-5)
    even_lr, even_sr = lr[:, :, :12, :16], sr[:, :, :48, :64]
    with torch.no_grad():
        _, logp = model.encode(even_sr, even_lr, add_noise=False)
    ref = likelihood_summary(logp, 48 * 64, model.config.quant, dequantized=False)
    score = L.score_image(sr, lr, model, add_noise=False)  # odd LR: cropped to 12x16
    assert score["bpd"] == pytest.approx(float(ref["bpd"][0]), rel=1e-5)
    assert score["noise_draws"] == 0 and score["pixels"] == 48 * 64
    one = L.score_image(sr, lr, model, noise_draws=1, seed=0)
    three = L.score_image(sr, lr, model, noise_draws=3, seed=0)
    assert L.score_image(sr, lr, model, noise_draws=3, seed=0) == three  # fixed seed: repeatable
    assert one["bpd"] != three["bpd"] and abs(one["bpd"] - three["bpd"]) < 0.05
    with pytest.raises(GensrError, match="not x4"):
        L.score_image(sr[:, :, :40], lr, model)
    with pytest.raises(GensrError, match="noise draws"):
        L.score_image(sr, lr, model, noise_draws=0)


def test_decode_missing_and_wrong_latents(model, lr, sr):
    enc = L.encode(sr, lr, model)
    eps0 = L.decode_latents(lr, [torch.zeros_like(enc["eps"][0]), enc["z"]], model)
    missing = L.decode_latents(lr, [None, enc["z"]], model, temperature_for_missing=0.0)
    assert torch.allclose(eps0, missing, atol=1e-6)
    drawn = L.decode_latents(lr, [None, enc["z"]], model, temperature_for_missing=0.8, seed=1)
    assert not torch.allclose(drawn, missing)
    batch = L.decode_latents(lr, [enc["eps"][0].repeat(2, 1, 1, 1), enc["z"].repeat(2, 1, 1, 1)], model)
    assert batch.shape[0] == 2 and torch.allclose(batch[0], batch[1])
    with pytest.raises(GensrError, match="entries"):
        L.decode_latents(lr, [enc["z"]], model)
    with pytest.raises(GensrError, match="shape"):
        L.decode_latents(lr[:, :, :8, :8], enc, model)
    with pytest.raises(GensrError, match="not x4"):
        L.encode(sr[:, :, :, :60], lr, model)


# ------------------------------------------------------------------------------------- normalisation math


def _latents(seed: int = 0, scale: float = 2.0, shift: float = 0.7) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 6, 16, 16, generator=g) * scale + shift, torch.randn(2, 96, 4, 4, generator=g) * scale]


def _sets(latents, mode) -> list[torch.Tensor]:
    """The sets of ``mode`` as (S, M) rows, one tensor per group of equal-size sets (the implementation's order)."""
    if mode == "local":
        return [z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double() for z in latents]
    if mode == "spatial":
        return [z.reshape(z.shape[0] * z.shape[1], -1).double() for z in latents]
    n = latents[0].shape[0]
    return [torch.cat([z.reshape(n, -1) for z in latents], 1).double()]


@pytest.mark.parametrize("mode", L.MODES)
def test_normalised_sets_have_exactly_the_drawn_statistics(mode):
    lat = _latents()
    tau = 0.8
    out = L.normalize_latents(lat, mode, tau, torch.Generator().manual_seed(9))
    assert [o.shape for o in out] == [z.shape for z in lat]
    g = torch.Generator().manual_seed(9)  # the same draws, in the same order, as the implementation
    for before, after in zip(_sets(lat, mode), _sets(out, mode), strict=True):
        n_sets, n = before.shape
        mu_hat, sigma_hat = L._target_stats(torch.full((n_sets,), float(n)), tau, g)
        assert torch.allclose(after.mean(1), mu_hat, atol=1e-5)
        assert torch.allclose(after.std(1), sigma_hat, atol=1e-5, rtol=1e-5)
        assert float(sigma_hat.min()) > 0
        # the pattern inside each set is kept: standardised values are unchanged
        zb = (before - before.mean(1, keepdim=True)) / before.std(1, keepdim=True)
        za = (after - after.mean(1, keepdim=True)) / after.std(1, keepdim=True)
        assert torch.allclose(za, zb, atol=1e-4)


def test_target_statistics_follow_the_reference_distributions():
    n, tau, sets = 96, 0.7, 20000
    mu, sigma = L._target_stats(torch.full((sets,), float(n)), tau, torch.Generator().manual_seed(0))
    assert float((sigma**2).mean()) == pytest.approx(tau**2, rel=0.01)  # E Gamma(k, theta) = k theta = tau^2
    assert float((sigma**2).var()) == pytest.approx(2 * tau**4 / (n - 1), rel=0.05)  # k theta^2
    assert float(mu.var()) == pytest.approx(tau**2 / n, rel=0.05)
    mu0, sigma0 = L._target_stats(torch.full((4,), float(n)), 0.0, None)
    assert float(mu0.abs().max()) == 0 and float(sigma0.abs().max()) == 0


def test_temperature_zero_normalisation_gives_the_mean_sample(model, lr, sr):
    lat = _latents()
    assert all(float(z.abs().max()) == 0 for z in L.normalize_latents(lat, "global", 0.0))
    out = L.normalize(sr, model, lr=lr, mode="global", temperature=0.0)
    assert torch.allclose(out, sample_sr(lr, model, temperature=0), atol=1e-5)
    with pytest.raises(GensrError, match="mode"):
        L.normalize_latents(lat, "sideways")


def test_masks_limit_the_edits():
    lat = _latents()
    mk = torch.zeros(1, 1, 64, 64)
    mk[..., 8:24, 40:56] = 1
    masks = L.level_masks(mk, [z.shape[1:] for z in lat])
    assert [tuple(m.shape) for m in masks] == [(1, 1, 16, 16), (1, 1, 4, 4)]
    assert int(masks[0].sum()) == 16 and int(masks[1].sum()) == 4
    for out in (
        L.normalize_latents(lat, "local", 0.9, torch.Generator().manual_seed(0), masks),
        L.normalize_latents(lat, "spatial", 0.9, torch.Generator().manual_seed(0), masks),
        L.normalize_latents(lat, "global", 0.9, torch.Generator().manual_seed(0), masks),
        L.resample_latents(lat, masks, 0.9, torch.Generator().manual_seed(0)),
    ):
        for z, o, m in zip(lat, out, masks, strict=True):
            inside = m.expand_as(z)
            assert torch.equal(o[~inside], z[~inside])
            assert not torch.allclose(o[inside], z[inside])
    # spatial with a mask: each channel's in-mask entries get mean mu^ (checked via the standardised pattern)
    out = L.normalize_latents(lat, "spatial", 0.9, torch.Generator().manual_seed(1), masks)
    vals = out[0][0, 0][masks[0][0, 0]]
    orig = lat[0][0, 0][masks[0][0, 0]]
    assert torch.allclose((vals - vals.mean()) / vals.std(), (orig - orig.mean()) / orig.std(), atol=1e-4)


def test_level_masks_any_pooling_and_nearest():
    mk = torch.zeros(32, 32)
    mk[5, 9] = 1  # one HR pixel
    small, same, big = L.level_masks(mk, [(1, 4, 4), (1, 32, 32), (1, 64, 64)])
    assert int(small.sum()) == 1 and bool(small[0, 0, 0, 1])
    assert torch.equal(same[0, 0], mk.bool())
    assert int(big.sum()) == 4
    with pytest.raises(GensrError, match="does not fit"):
        L.region_mask((10, 10), (5, 5, 6, 2))


# ------------------------------------------------------------------------------------- image-level edits


def _capture(monkeypatch):
    """Record the latents each edit decodes."""
    seen = []
    real = L._decode_pair

    def spy(net, pair, latents):
        seen.append([z.clone() for z in latents])
        return real(net, pair, latents)

    monkeypatch.setattr(L, "_decode_pair", spy)
    return seen


def test_resample_and_transfer_change_only_the_region_latents(monkeypatch, model, lr, sr):
    seen = _capture(monkeypatch)
    mask = L.region_mask((52, 68), (20, 8, 16, 24))
    out = L.resample(sr, mask, model, lr=lr, temperature=0.9, seed=1)
    assert out.shape == sr.shape
    pair = L.prepare_pair(sr, lr, model)
    base = L._encode_pair(model, pair)
    masks = L.level_masks(pair.pad_hr_like(mask), [z.shape[1:] for z in base])
    for z, o, m in zip(base, seen[-1], masks, strict=True):
        inside = m.expand_as(z)
        assert torch.equal(o[~inside], z[~inside]) and not torch.allclose(o[inside], z[inside])
    # outside the region (and the receptive field around it) the image barely moves
    assert (out - sr).abs()[..., :, 48:].mean() < 0.2 * (out - sr).abs()[..., 8:32, 20:36].mean()

    source = torch.rand(1, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    out = L.transfer(lr, source, (4, 6, 12, 8), model, sr=sr, at=(30, 20), temperature=0.9, seed=2)
    edited = sr.clone()
    edited[:, :, 20:28, 30:42] = source[:, :, 6:14, 4:16]
    pair = L.prepare_pair(edited, lr, model)
    base = L._encode_pair(model, pair)
    masks = L.level_masks(pair.pad_hr_like(L.region_mask((52, 68), (30, 20, 12, 8))), [z.shape[1:] for z in base])
    for z, o, m in zip(base, seen[-1], masks, strict=True):
        inside = m.expand_as(z)
        assert torch.equal(o[~inside], z[~inside]) and not torch.allclose(o[inside], z[inside])
    with pytest.raises(GensrError, match="does not fit"):
        L.transfer(lr, source, (30, 30, 20, 20), model, sr=sr)


def test_edits_keep_the_lr_consistency_of_plain_samples(model, lr, sr):
    """A random model has not learned LR-consistency; edits must not be worse than a plain sample."""
    plain = L.lr_psnr_torch(sr, lr, 4)
    results = {mode: L.normalize(sr, model, lr=lr, mode=mode, temperature=0.5, seed=1) for mode in L.MODES}
    results["resample"] = L.resample(sr, L.region_mask((52, 68), (8, 8, 24, 24)), model, lr=lr, temperature=0.5)
    results["transfer"] = L.transfer(lr, torch.rand(1, 3, 52, 68), (8, 8, 16, 16), model, sr=sr, temperature=0.5)
    results["restore"] = L.restore((sr + 0.05 * torch.randn_like(sr)).clamp(0, 1), model, lr=lr, temperature=0.5)
    for name, out in results.items():
        assert out.shape == sr.shape and float(out.min()) >= 0 and float(out.max()) <= 1, name
        assert L.lr_psnr_torch(out, lr, 4) > plain - 3.0, name


def _smooth_batch(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    return imresize(torch.rand(n, 3, size // 8, size // 8, generator=g), size=(size, size)).clamp(0, 1)


@pytest.mark.slow
def test_briefly_trained_srflow_edits_stay_lr_consistent():
    """100 NLL steps on smooth synthetic images teach a tiny SRFlow some LR-consistency (~5 -> ~23 dB);
    the edits keep it, and transfer repairs the consistency that plain pasting breaks."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = SRFlowNet(SRFlowConfig(nb=1, nf=8, gc=4, K=2, hidden=16, rrdb_blocks=[0]))
    hr_t = _smooth_batch(1, 64, g)
    lr_t = imresize(hr_t, 0.25)
    untrained = L.lr_psnr_torch(sample_sr(lr_t, model.eval(), temperature=0), lr_t, 4)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    for _ in range(100):
        hr = _smooth_batch(4, 32, g)
        logp = model(hr, imresize(hr, 0.25))["logp"]  # dequantised (add_noise defaults to True)
        loss = likelihood_summary(logp, 32 * 32, model.config.quant, dequantized=True)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    mean = L.lr_psnr_torch(sample_sr(lr_t, model, temperature=0), lr_t, 4)
    assert mean > untrained + 5
    sr = sample_sr(lr_t, model, temperature=0.8, seed=0)
    plain = L.lr_psnr_torch(sr, lr_t, 4)
    src = _smooth_batch(1, 64, g)
    pasted = sr.clone()
    pasted[..., 20:44, 20:44] = src[..., 4:28, 4:28]
    transferred = L.transfer(lr_t, src, (4, 4, 24, 24), model, sr=sr, at=(20, 20), temperature=0.8, seed=2)
    assert L.lr_psnr_torch(transferred, lr_t, 4) > L.lr_psnr_torch(pasted, lr_t, 4) + 1.5
    assert L.lr_psnr_torch(transferred, lr_t, 4) > plain - 1.5
    for mode in L.MODES:
        assert (
            L.lr_psnr_torch(L.normalize(sr, model, lr=lr_t, mode=mode, temperature=0.8, seed=1), lr_t, 4) > plain - 1.5
        )
    mask = L.region_mask((64, 64), (20, 10, 30, 30))
    assert L.lr_psnr_torch(L.resample(sr, mask, model, lr=lr_t, temperature=0.8, seed=3), lr_t, 4) > plain - 1.5
    noisy = (hr_t + 0.05 * torch.randn(hr_t.shape, generator=g)).clamp(0, 1)
    assert L.lr_psnr_torch(L.restore(noisy, model, lr=lr_t, temperature=0.8, seed=0), lr_t, 4) > plain - 1.5
