"""SRFlow's reverse pass cannot run away, and no broken flow output reaches the user.

* First line (``gensr.nn.flow`` guards): the shipped model's failing Set5 "bird" sample (seed 0, sample 0,
  tau 0.9: Inf/NaN and 18 dB LR-PSNR with the official arithmetic) decodes to a consistent image; the guards
  keep every layer an exact bijection; at the model defaults they leave likelihoods and the tau-0 mean of
  natural images alone, and the shipped model's tighter bound (2) changes them only slightly.
* Second line (``gensr.inference.flow_sampling``): a NaN or saturated block in a sample is re-drawn
  (deterministically) or raises GensrError; latent edits and ``gensr decode`` fail with one line instead of
  writing a broken image; non-finite latents are refused.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gensr.cli import main
from gensr.errors import GensrError
from gensr.inference import latent as L
from gensr.inference.flow_sampling import (
    FlowSampler,
    check_flow_output,
    draw_latents,
    load_flow_model,
    pad_to_multiple,
)
from gensr.io import read_image
from gensr.models.srflow import SRFlowConfig
from gensr.nn.flow import CondAffineSeparatedAndCond, Split2d


@pytest.fixture(scope="module")
def shipped():
    return load_flow_model("srflow", "cpu")


@pytest.fixture(scope="module")
def bird_lr(datasets_dir) -> torch.Tensor:
    return read_image(datasets_dir / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").rgb_tensor()


@pytest.fixture(scope="module")
def small_lr(bird_lr) -> torch.Tensor:
    """A 24 x 24 crop of the bird LR: the shipped model, decoded in a fraction of a second."""
    return bird_lr[:, :, 24:48, 24:48].contiguous()


def set_guards(model: torch.nn.Module, on: bool, config: SRFlowConfig | None = None) -> None:
    """Switch the reverse-pass guards of every layer to the values of ``config`` (default: the model's own) or
    off (the official arithmetic)."""
    c = config or model.config
    for m in model.modules():
        if isinstance(m, CondAffineSeparatedAndCond):
            m.input_bound, m.min_scale = (c.net_input_bound, c.min_scale) if on else (0.0, 0.0)
        elif isinstance(m, Split2d):
            m.input_bound, m.max_logs = (c.net_input_bound, c.max_prior_logs) if on else (0.0, 0.0)


def bird_sample0(model, lr) -> torch.Tensor:
    """The raw sample 0 that ``gensr sample birdx4.png --seed 0`` draws (tau 0.9), decoded without checks."""
    xp, _ = pad_to_multiple(lr, model.config.lr_multiple)
    fields = draw_latents(model.z_shapes(tuple(xp.shape[-2:])), 0.9, 1, torch.Generator().manual_seed(0))
    with torch.inference_mode():
        return model.decode(xp, fields, heat=0.9)


# ------------------------------------------------------------------------------------------ first line


def test_failing_bird_seed_decodes_to_a_consistent_sample(shipped, bird_lr):
    set_guards(shipped, False)
    try:
        broken = bird_sample0(shipped, bird_lr)  # the official arithmetic: the runaway inverse
    finally:
        set_guards(shipped, True)
    assert not bool(torch.isfinite(broken).all()) or float(broken.abs().max()) > 1e6
    assert L.lr_psnr_torch(broken.nan_to_num(0).clamp(0, 1), bird_lr, 4) < 35
    fixed = bird_sample0(shipped, bird_lr)
    assert bool(torch.isfinite(fixed).all()) and float(fixed.abs().max()) < 100
    assert L.lr_psnr_torch(fixed.clamp(0, 1), bird_lr, 4) >= 40
    # and through the sampler (sample 0 of seed 0 does not depend on the number of samples)
    out = FlowSampler(shipped, device="cpu").sample(bird_lr, temperature=0.9, num_samples=1, seed=0)
    assert L.lr_psnr_torch(out, bird_lr, 4) >= 40
    assert float(check_flow_output(out, bird_lr, 4).psnr.min()) >= 30


def test_guards_leave_natural_images_alone(shipped, datasets_dir):
    """Guards at the model defaults (bound 12): bit-identical likelihood and tau-0 mean on a natural crop. The
    shipped model's bound 2 (set after training at 3, see its card) moves them by < 1 % and < 10 grey levels
    (measured with the K 12 model: 0.46 %, 6.2 grey levels)."""
    hr = read_image(datasets_dir / "Set5" / "HR" / "bird.png").rgb_tensor()[:, :, 96:192, 96:192]
    lr = L._downscale(hr, 4)
    defaults = dataclasses.replace(shipped.config, net_input_bound=12.0, min_scale=0.05, max_prior_logs=5.0)
    results = []
    for on, config in ((False, None), (True, defaults), (True, None)):
        set_guards(shipped, on, config)
        with torch.inference_mode():
            nll = shipped.encode(hr, lr, add_noise=True, generator=torch.Generator().manual_seed(0))[1]
            mean = shipped.decode(lr, None, heat=0.0)
        results.append((nll, mean))
    set_guards(shipped, True)
    (nll_off, mean_off), (nll_default, mean_default), (nll_shipped, mean_shipped) = results
    assert torch.equal(nll_off, nll_default) and torch.equal(mean_off, mean_default)
    assert shipped.config.net_input_bound == 2.0
    assert float((nll_shipped - nll_off).abs() / nll_off.abs()) < 1e-2
    assert float((mean_shipped - mean_off).abs().max()) < 10 / 255


@pytest.mark.parametrize("layer", ["coupling", "split"])
def test_active_guards_keep_an_exact_bijection(layer):
    """Inputs far outside the guards' range: the inverse still inverts the forward, the logdet is exact."""
    torch.manual_seed(0)
    if layer == "coupling":
        net = CondAffineSeparatedAndCond(4, 3, hidden=8, input_bound=1.0, min_scale=0.3)
    else:
        net = Split2d(4, input_bound=1.0, max_logs=0.2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    net = net.double().eval()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64) * 6
    cond = torch.randn(1, 3, 3, 3, dtype=torch.float64)
    if layer == "coupling":
        y, logdet = net(x, cond)
        assert torch.allclose(net.inverse(y, cond), x, atol=1e-9)
        scale, _ = net._coupling_params(net.forward_injector(x, cond)[0][:, :2], cond, x)
        assert float(scale.detach().min()) >= 0.3 - 1e-12

        def f(v):
            return net(v.reshape(x.shape), cond)[0].flatten()
    else:
        y, logdet = net(x)
        assert torch.allclose(net.inverse(y), x, atol=1e-9)
        assert float(net.prior(y[:, :2])[1].detach().abs().max()) <= 0.2 + 1e-12

        def f(v):
            return net(v.reshape(x.shape))[0].flatten()

    jac = torch.autograd.functional.jacobian(f, x.flatten())
    assert torch.allclose(torch.linalg.slogdet(jac)[1], logdet[0], atol=1e-8)


def test_guard_settings_are_validated():
    from gensr.config import from_dict
    from gensr.models.srflow import SRFlowConfig

    with pytest.raises(GensrError, match="min_scale"):
        from_dict(SRFlowConfig, {"min_scale": 1.5})
    with pytest.raises(GensrError, match="net_input_bound"):
        from_dict(SRFlowConfig, {"net_input_bound": -1.0})
    assert from_dict(SRFlowConfig, {"net_input_bound": 0, "min_scale": 0, "max_prior_logs": 0}).min_scale == 0


# ----------------------------------------------------------------------------------------- second line


def corrupt(monkeypatch, model, how: str, calls: int | None):
    """Make ``model.decode`` return a broken block (NaN, or +5 = saturated) in its first ``calls`` calls
    (every call for None); returns the latents of every call."""
    real, seen = model.decode, []

    def fake(lr, z_list, *args, **kwargs):
        out = real(lr, z_list, *args, **kwargs)
        seen.append([z.clone() for z in z_list])
        if calls is None or len(seen) <= calls:
            out = out.clone()
            out[:, :, 8:40, 16:48] = float("nan") if how == "nan" else 5.0
        return out

    monkeypatch.setattr(model, "decode", fake)
    return seen


@pytest.mark.parametrize("how", ["nan", "saturated"])
def test_a_broken_region_is_redrawn_deterministically(monkeypatch, shipped, small_lr, how):
    sampler = FlowSampler(shipped, device="cpu", batch_size=2)
    runs = []
    for _ in range(2):
        sampler = FlowSampler(shipped, device="cpu", batch_size=2)
        seen = corrupt(monkeypatch, shipped, how, calls=1)
        runs.append(sampler.sample(small_lr, temperature=0.9, num_samples=2, seed=3))
        monkeypatch.undo()
        assert sampler.stats["redrawn_samples"] == 2 and sampler.stats["redrawn_regions"] >= 2
    assert torch.equal(runs[0], runs[1])  # the re-draws depend only on the seed
    out = runs[0]
    assert bool(torch.isfinite(out).all())
    assert float(check_flow_output(out, small_lr, 4).psnr.min()) >= 30
    # the block covers LR rows/cols 2-10 x 4-12: the regions (8 LR px) 0-1 x 0-1, plus a 4 px margin = LR 0-20,
    # i.e. final-z positions 0-10 (of 12) and split-eps positions 0-40 (of 48) are re-drawn, the rest is kept
    first, redraw = seen[0], [z for z in seen[1:] if z[-1].shape[0] == 1 and bool(z[-1].any())][0]
    for z0, z1, k in zip(first, redraw, (40, 10), strict=True):
        assert torch.equal(z0[0, :, k:, :], z1[0, :, k:, :]) and torch.equal(z0[0, :, :, k:], z1[0, :, :, k:])
        assert not torch.equal(z0[0, :, :k, :k], z1[0, :, :k, :k])


def test_a_region_that_stays_broken_is_an_error(monkeypatch, shipped, small_lr):
    seen = corrupt(monkeypatch, shipped, "nan", calls=None)
    with pytest.raises(GensrError, match=r"sample 0 \(seed 3, temperature 0.9\) is broken after 3 re-draw") as exc:
        FlowSampler(shipped, device="cpu").sample(small_lr, temperature=0.9, seed=3)
    assert "\n" not in str(exc.value) and "non-finite" in str(exc.value)
    assert len(seen) == 5  # the sample, the tau-0 mean (the reference) and three re-draws
    seen.clear()
    with pytest.raises(GensrError, match="tau-0 mean cannot be re-drawn"):
        FlowSampler(shipped, device="cpu").sample(small_lr, temperature=0.0, seed=3)
    with pytest.raises(GensrError, match="broken after 0 re-draw"):
        FlowSampler(shipped, device="cpu", redraws=0).sample(small_lr, temperature=0.9, seed=3)


def test_gensr_sample_names_the_input_of_a_broken_sample(monkeypatch, tmp_path, capsys):
    """The CLI's one-line error for a sample that stays broken names the LR file and what was written before it."""
    from PIL import Image

    from gensr.inference.flow_sampling import FlowSampler as Sampler

    def fake_iter(self, x, *, num_samples, chunk, **kwargs):
        yield torch.full((chunk, 3, 4 * x.shape[-2], 4 * x.shape[-1]), 0.5)
        raise GensrError("SRFlow sample 2 (seed 0, temperature 0.9) is broken after 3 re-draw(s): test")

    monkeypatch.setattr(Sampler, "sample_iter", fake_iter)
    lr = tmp_path / "lr.png"
    Image.fromarray(np.full((12, 12, 3), 128, np.uint8)).save(lr)
    rc = main(
        ["sample", str(lr), "--model", "srflow", "-n", "4", "--batch-size", "2", "-q", "-o", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(lr) in err[0] and "sample 2" in err[0] and "(2 of 4 sample(s) written)" in err[0]
    assert len(list((tmp_path / "out").glob("*.png"))) == 2  # the finished ones stay, each a whole file


def test_an_all_nan_sample_is_an_error(monkeypatch, shipped, small_lr):
    monkeypatch.setattr(shipped, "decode", lambda lr, *a, **k: torch.full((lr.shape[0], 3, 96, 96), float("nan")))
    with pytest.raises(GensrError, match="9 of 9 region"):
        FlowSampler(shipped, device="cpu").sample(small_lr, temperature=0.9, seed=0)
    with pytest.raises(GensrError, match="broken"):
        L.decode_latents(small_lr, [None, torch.zeros(1, 96, 12, 12)], shipped)


def test_an_untrained_model_is_judged_against_its_own_mean():
    """A random flow is nowhere LR-consistent; its samples are not 'broken' for that (only NaN would be)."""
    from flow_helpers import tiny_srflow

    lr = torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(1))
    sampler = FlowSampler(tiny_srflow(), device="cpu")
    out = sampler.sample(lr, temperature=0.9, num_samples=3, seed=0)
    assert out.shape == (3, 3, 52, 68) and sampler.stats["redrawn_regions"] == 0
    assert float(check_flow_output(out, lr, 4).psnr.max()) < 30


def test_normalize_on_bird_is_consistent_or_an_error(shipped, datasets_dir, tmp_path, capsys):
    """The tester's case: ``gensr manipulate normalize`` printed LR-PSNR 10.63 dB and exited 0."""
    hr = datasets_dir / "Set5" / "HR" / "bird.png"
    for mode in ("global", "spatial"):
        out = tmp_path / f"{mode}.png"
        code = main(["manipulate", "normalize", str(hr), "--mode", mode, "--seed", "0", "-o", str(out)])
        text = capsys.readouterr()
        if code == 0:
            assert float(text.out.split("LR-PSNR ")[1].split(" dB")[0]) >= 30
        else:
            lines = [ln for ln in text.err.splitlines() if ln.strip()]
            assert code == 2 and len(lines) == 1 and "broken" in lines[0] and not out.exists()


def test_decode_refuses_non_finite_latents(shipped, small_lr, tmp_path, capsys):
    shapes = shipped.z_shapes((24, 24))
    z = np.zeros((1, *shapes[-1]), np.float32)
    z[0, 3, 2, 2] = np.nan
    npz = tmp_path / "z.npz"
    np.savez(npz, eps_0=np.zeros((1, *shapes[0]), np.float32), z=z, lr=small_lr.numpy())
    out = tmp_path / "back.png"
    code = main(["decode", str(npz), "--model", "srflow", "--device", "cpu", "-o", str(out)])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert code == 2 and len(err) == 1 and "z holds 1 non-finite value" in err[0] and str(npz) in err[0]
    assert not out.exists()
    with pytest.raises(GensrError, match="eps_0 holds 2 non-finite"):
        eps = torch.zeros(1, *shapes[0])
        eps[0, 0, 0, :2] = float("inf")
        L.decode_latents(small_lr, [eps, torch.zeros(1, *shapes[-1])], shipped)
