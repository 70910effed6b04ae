"""SRFlow sampling (gensr.inference.flow_sampling): shapes, temperature 0, seeds, batching, padding, tiling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import gensr
from flow_helpers import tiny_srflow
from gensr.errors import GensrError
from gensr.inference.flow_sampling import (
    FlowSampler,
    draw_latents,
    load_flow_model,
    pad_to_multiple,
    sample_sr,
)
from gensr.inference.tiling import TileGrid, tile_grid
from gensr.models.srflow import SRFlowNet


@pytest.fixture(scope="module")
def model() -> SRFlowNet:
    return tiny_srflow()


@pytest.fixture(scope="module")
def lr() -> torch.Tensor:
    return torch.rand(1, 3, 13, 17, generator=torch.Generator().manual_seed(1))


def test_shapes_range_any_size(model, lr):
    out = sample_sr(lr, model, temperature=0.9, num_samples=2, seed=0)
    assert out.shape == (2, 3, 52, 68) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(out[0], out[1])
    # 3-d and gray inputs
    assert sample_sr(lr[0], model, temperature=0, seed=0).shape == (1, 3, 52, 68)
    assert sample_sr(lr[:, :1], model, temperature=0).shape == (1, 3, 52, 68)
    # one-pixel side: replication padding
    assert sample_sr(torch.rand(1, 3, 1, 5), model, temperature=0.5, seed=0).shape == (1, 3, 4, 20)


def test_temperature_zero_is_the_deterministic_mean(model, lr):
    out = sample_sr(lr, model, temperature=0, num_samples=3, seed=123)
    assert torch.equal(out[0], out[1]) and torch.equal(out[0], out[2])
    other = sample_sr(lr, model, temperature=0, num_samples=1, seed=7)
    assert torch.allclose(out[:1], other, atol=1e-6)
    padded, _ = pad_to_multiple(lr, 2)
    with torch.no_grad():
        ref = model.decode(padded, None, heat=0.0).clamp(0, 1)[:, :, :52, :68]
    assert torch.allclose(out[:1], ref, atol=1e-5)


def test_seeds_reproduce_and_do_not_depend_on_batching(model, lr):
    a = sample_sr(lr, model, temperature=0.8, num_samples=3, seed=5, batch_size=2)
    b = sample_sr(lr, model, temperature=0.8, num_samples=3, seed=5, batch_size=2)
    assert torch.equal(a, b)
    c = sample_sr(lr, model, temperature=0.8, num_samples=1, seed=5, batch_size=4)
    assert torch.allclose(a[:1], c, atol=1e-4)  # sample 0 is sample 0, whatever N and the batch size
    d = sample_sr(lr, model, temperature=0.8, num_samples=3, seed=6)
    assert (a - d).abs().mean() > 0.05


def test_odd_lr_is_reflect_padded_and_cropped(model, lr):
    padded, size = pad_to_multiple(lr, 2)
    assert size == (13, 17) and padded.shape[-2:] == (14, 18)
    assert torch.equal(padded[..., 13, :17], lr[..., 11, :])  # reflection, bottom row
    full = sample_sr(padded, model, temperature=0.7, seed=3)
    odd = sample_sr(lr, model, temperature=0.7, seed=3)
    assert torch.allclose(odd, full[:, :, :52, :68], atol=1e-5)


def test_draw_latents_per_sample_order():
    shapes = [(2, 4, 4), (8, 2, 2)]
    one = draw_latents(shapes, 0.5, 1, torch.Generator().manual_seed(0))
    three = draw_latents(shapes, 0.5, 3, torch.Generator().manual_seed(0))
    assert all(torch.equal(x[0], y[0]) for x, y in zip(one, three, strict=True))
    assert not torch.equal(three[1][0], three[1][1])
    assert all(float(z.abs().max()) == 0 for z in draw_latents(shapes, 0.0, 2, None))
    std = torch.cat([z.flatten() for z in draw_latents([(4, 64, 64)], 0.5, 2, None)]).std()
    assert abs(float(std) - 0.5) < 0.02


def test_tile_grid_is_aligned():
    g = tile_grid(40, 26, 11, 3, 2)
    assert g.th == 10 and g.tw == 10 and g.overlap == 4
    assert all(y % 2 == 0 for y in g.ys + g.xs)
    assert g.ys[0] == 0 and g.ys[-1] + g.th == 40 and g.xs[-1] + g.tw == 26
    assert all(b - a <= g.th - g.overlap for a, b in zip(g.ys, g.ys[1:], strict=False))
    assert tile_grid(40, 26, 0, 3, 2) == TileGrid(40, 26, [0], [0], 0)


def test_tiled_sampling_shares_latents_and_blends(model):
    lr = F.interpolate(torch.rand(1, 3, 6, 7, generator=torch.Generator().manual_seed(2)), size=(24, 28))
    whole = sample_sr(lr, model, temperature=0.8, seed=11)
    calls = []
    sampler = FlowSampler(model, tile=12, tile_overlap=4, batch_size=3)
    assert sampler.tiles_for(24, 28) > 1
    tiled = sampler.sample(lr, temperature=0.8, seed=11, progress=lambda d, t: calls.append((d, t)))
    assert tiled.shape == whole.shape
    assert calls[-1][0] == calls[-1][1]
    other_seed = sample_sr(lr, model, temperature=0.8, seed=12)
    # same latent field: tiles differ from the whole image only through their limited LR context
    assert (tiled - whole).abs().mean() < 0.25 * (other_seed - whole).abs().mean()
    mean_whole = sample_sr(lr, model, temperature=0)
    mean_tiled = sample_sr(lr, model, temperature=0, tile=12, tile_overlap=4)
    assert (mean_tiled - mean_whole).abs().mean() < 0.05
    # reproducible with tiles too
    assert torch.equal(tiled, FlowSampler(model, tile=12, tile_overlap=4, batch_size=3).sample(lr, 0.8, seed=11))


def test_model_from_checkpoint_and_path_input(tmp_path, model, lr):
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.config import to_dict
    from gensr.io import read_image, write_image

    ckpt = save_checkpoint(tmp_path / "tiny.safetensors", model.state_dict(), "srflow", to_dict(model.config))
    path = write_image(tmp_path / "lr.png", lr)
    out = sample_sr(path, ckpt, temperature=0.6, num_samples=2, seed=4)
    ref = sample_sr(read_image(path).rgb_tensor(), model, temperature=0.6, num_samples=2, seed=4)
    assert torch.allclose(out, ref, atol=1e-5)
    assert gensr.sample_sr is sample_sr


def test_bad_arguments(model, lr):
    from gensr.models.rrdbnet import RRDBNet, RRDBNetConfig

    with pytest.raises(GensrError, match="temperature"):
        sample_sr(lr, model, temperature=-1)
    with pytest.raises(GensrError, match="samples"):
        sample_sr(lr, model, num_samples=0)
    with pytest.raises(GensrError, match="batch size"):
        sample_sr(lr, model, batch_size=0)
    with pytest.raises(GensrError, match="overlap"):
        sample_sr(lr, model, tile=8, tile_overlap=8)
    with pytest.raises(GensrError, match="not an SRFlow"):
        load_flow_model(RRDBNet(RRDBNetConfig(nb=1, nf=8, gc=4)))
    with pytest.raises(GensrError, match="shape"):
        sample_sr(torch.rand(2, 3, 8, 8), model)
    with pytest.raises(GensrError, match="no such"):
        sample_sr("/nonexistent/lr.png", model)


def test_samples_handed_out_in_chunks_are_the_samples_of_one_call():
    from gensr.inference.flow_sampling import FlowSampler

    torch.manual_seed(0)
    sampler = FlowSampler(tiny_srflow(), device="cpu")
    lr = torch.rand(1, 3, 6, 10)
    whole = sampler.sample(lr, temperature=0.8, num_samples=5, seed=7)
    chunks = list(sampler.sample_iter(lr, temperature=0.8, num_samples=5, seed=7, chunk=2))
    assert [c.shape[0] for c in chunks] == [2, 2, 1]
    assert torch.equal(torch.cat(chunks), whole)
    with pytest.raises(GensrError, match="number of samples must be in"):
        next(sampler.sample_iter(lr, num_samples=100_000))
