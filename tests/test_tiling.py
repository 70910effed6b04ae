"""Tiled inference (overlap-blended, streamed from CPU), precision handling and the Upscaler core."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError
from gensr.inference.precision import PrecisionRunner, resolve_precision
from gensr.inference.tiling import feather_window, tile_count, tile_starts, tiled_forward
from gensr.inference.upscale import Upscaler, upscale
from gensr.models.registry import build_model


class Nearest(nn.Module):
    """A pointwise x``scale`` model: nearest upsample plus a per-pixel colour map."""

    def __init__(self, scale: int = 4) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return torch.stack([y[:, 0] * 0.5 + y[:, 2] ** 2, y[:, 1].sin(), y[:, 2] - y[:, 0]], dim=1)


def small_rrdbnet(scale: int = 4) -> nn.Module:
    torch.manual_seed(0)
    # init "rdb" (BasicSR: only the RDB convs scaled by 0.1): outputs vary enough for the tests to mean something
    return build_model("rrdbnet", {"scale": scale, "nf": 16, "nb": 1, "gc": 8, "init": "rdb"}).eval()


def seam_sensitive_rrdbnet(scale: int = 4) -> nn.Module:
    """A small x4 RRDBNet whose output depends strongly on context: hard-pasted tiles differ from the whole
    image by ~15/255 at the seams (the 0.1-scaled training init gives nearly flat outputs, where any tiling
    would pass). Receptive field ~18 LR px, mid-grey output."""
    net = small_rrdbnet(scale)
    torch.manual_seed(0)
    for mod in net.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, a=0.2)
            mod.weight.data *= 0.45
            nn.init.zeros_(mod.bias)
    nn.init.constant_(net.conv_last.bias, 0.5)
    return net


# ----------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "length,tile,overlap",
    [(100, 64, 32), (512, 128, 32), (129, 64, 8), (64, 64, 8), (65, 64, 0), (1000, 96, 95), (7, 100, 10)],
)
def test_tile_starts_cover_and_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    assert starts[0] == 0 and starts[-1] + size == length
    assert starts == sorted(set(starts))
    for a, b in zip(starts, starts[1:], strict=False):
        assert a + size - b >= overlap  # neighbours overlap by at least `overlap`
    # the fewest tiles that can do it
    if tile < length:
        assert len(starts) == -(-(length - tile) // (tile - overlap)) + 1


def test_tile_starts_rejects_overlap_not_smaller_than_tile():
    with pytest.raises(GensrError, match="overlap"):
        tile_starts(100, 32, 32)


def test_feather_window():
    w = feather_window(8, 4, True, True)
    assert torch.allclose(w, torch.tensor([0.125, 0.375, 0.625, 0.875, 0.875, 0.625, 0.375, 0.125]))
    assert torch.equal(feather_window(5, 2, False, False), torch.ones(5))
    assert torch.equal(feather_window(4, 0, True, True), torch.ones(4))
    assert (feather_window(6, 10, True, True) > 0).all()  # ramps longer than the tile stay positive


# ----------------------------------------------------------------------------------------------- blending


@pytest.mark.parametrize("tile,overlap,batch", [(16, 4, 1), (16, 4, 3), (24, 10, 8), (17, 0, 2), (40, 8, 4)])
def test_tiled_is_exact_for_pointwise_model(tile, overlap, batch):
    model = Nearest(4)
    x = torch.rand(1, 3, 45, 61)
    ref = model(x)
    calls = []

    def fn(b):
        calls.append(b.shape[0])
        assert b.shape[-2:] == (min(tile, 45), min(tile, 61))
        return model(b)

    out = tiled_forward(fn, x, 4, tile, overlap, batch_size=batch)
    assert out.shape == ref.shape and out.dtype == torch.float32 and out.device.type == "cpu"
    assert (out - ref).abs().max().item() <= 1e-6
    assert sum(calls) == tile_count(45, 61, tile, overlap) > 1
    assert max(calls) <= batch


def test_tiled_infers_scale_and_reports_progress():
    x = torch.rand(1, 3, 30, 20)
    seen = []
    out = tiled_forward(Nearest(2), x, None, 12, 4, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert torch.allclose(out, Nearest(2)(x), atol=1e-6)
    total = tile_count(30, 20, 12, 4)
    assert seen[-1] == (total, total) and len(seen) == -(-total // 2)


def test_tile_larger_than_image_runs_one_forward():
    x = torch.rand(1, 3, 20, 30)
    calls = []
    out = tiled_forward(lambda b: calls.append(b.shape) or Nearest(4)(b), x, 4, 64, 16)
    assert calls == [torch.Size([1, 3, 20, 30])]
    assert torch.equal(out, Nearest(4)(x))


def test_tile_on_one_axis_only():
    x = torch.rand(1, 3, 10, 50)  # tile taller than the image: one row of tiles 10 px high
    out = tiled_forward(Nearest(4), x, 4, 16, 4)
    assert (out - Nearest(4)(x)).abs().max() <= 1e-6


def test_wrong_output_shape_is_a_clear_error():
    with pytest.raises(GensrError, match="expected"):
        tiled_forward(lambda b: b, torch.rand(1, 3, 32, 32), 4, 16, 4)


@pytest.mark.slow
@torch.no_grad()
def test_tiled_rrdbnet_matches_untiled_within_one_level():
    model = seam_sensitive_rrdbnet()
    x = torch.rand(1, 3, 512, 512)
    ref = model(x).clamp(0, 1)
    out = tiled_forward(model, x, 4, 128, 32, batch_size=4).clamp(0, 1)
    assert out.shape == ref.shape == (1, 3, 2048, 2048)
    assert (out - ref).abs().max().item() <= 1 / 255
    # the criterion is meaningful: without overlap (hard-pasted tiles) the seams are far off
    hard = tiled_forward(model, x, 4, 128, 0, batch_size=4).clamp(0, 1)
    assert (hard - ref).abs().max().item() > 8 / 255


@torch.no_grad()
@pytest.mark.parametrize("scale,size", [(2, (90, 70)), (1, (45, 63))])
def test_tiled_rrdbnet_pixel_unshuffle_needs_aligned_tiles(scale, size):
    """x2/x1 RRDBNet pixel-unshuffles its input: tiles must start on the unshuffle grid (and odd image sizes
    are padded like the model pads them), else the tiles see another phase than the whole image."""
    model = small_rrdbnet(scale)
    f = model.config.unshuffle
    x = torch.rand(1, 3, *size)
    ref = model(x).clamp(0, 1)
    out = tiled_forward(model, x, scale, 48, 20, batch_size=3, align=f).clamp(0, 1)
    assert out.shape == ref.shape == (1, 3, size[0] * scale, size[1] * scale)
    assert (out - ref).abs().max().item() <= 1 / 255
    assert tile_count(*size, 48, 20, align=f) > 1
    # unaligned, the odd tile offsets give visibly different pixels
    unaligned = tiled_forward(model, x, scale, 48, 20, batch_size=3).clamp(0, 1)
    assert (unaligned - ref).abs().max().item() > 4 / 255


def test_upscaler_aligns_tiles_for_unshuffle_models():
    model = small_rrdbnet(2)
    x = torch.rand(1, 3, 91, 69)
    up = Upscaler(model, device="cpu", tile=48, tile_overlap=20)
    assert up.align == 2
    assert (up.run(x) - model(x).clamp(0, 1)).abs().max() <= 1 / 255


# ----------------------------------------------------------------------------------------------- precision


def test_resolve_precision_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == (torch.float32, None)
    assert resolve_precision("fp32", cpu) == (torch.float32, None)
    assert resolve_precision("bf16", cpu) == (torch.bfloat16, None)
    dtype, note = resolve_precision("fp16", cpu)
    assert dtype == torch.float32 and "fp32" in note
    with pytest.raises(GensrError, match="precision"):
        resolve_precision("int8", cpu)


class NaNUnlessFP32(nn.Module):
    """Returns NaN whenever its conv runs in a low-precision dtype (simulates the fp16 overflow)."""

    scale = 1

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        y = self.conv(x)
        return y * float("nan") if y.dtype != torch.float32 else y


def test_nonfinite_low_precision_output_is_recomputed_in_fp32():
    notes = []
    model = NaNUnlessFP32()
    runner = PrecisionRunner(model, "cpu", "bf16", note=notes.append)
    x = torch.rand(2, 3, 8, 8)
    out = runner(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.allclose(out, model(x))
    runner(x)
    assert runner.fallbacks == 2 and len(notes) == 1 and "fp32" in notes[0]  # said once


def test_fallback_inside_tiles():
    notes = []
    runner = PrecisionRunner(NaNUnlessFP32(), "cpu", "bf16", note=notes.append)
    x = torch.rand(1, 3, 40, 40)
    out = tiled_forward(runner, x, 1, 16, 4, batch_size=1)
    assert torch.isfinite(out).all() and runner.fallbacks == tile_count(40, 40, 16, 4) and len(notes) == 1


def test_bf16_on_cpu_runs_and_is_close():
    model = small_rrdbnet(4)
    x = torch.rand(1, 3, 16, 16)
    out = PrecisionRunner(model, "cpu", "bf16")(x)
    assert out.dtype == torch.float32
    assert (out - model(x)).abs().max() < 0.05


# ----------------------------------------------------------------------------------------------- Upscaler


def test_upscale_module_tiled_equals_untiled_and_clamps():
    model = Nearest(4)
    x = torch.rand(1, 3, 40, 36) * 1.4 - 0.2
    whole = upscale(x, model, device="cpu")
    tiled = upscale(x, model, device="cpu", tile=16, tile_overlap=4)
    assert whole.shape == (1, 3, 160, 144)
    assert whole.min() >= 0 and whole.max() <= 1
    assert torch.allclose(whole, tiled, atol=1e-6)
    assert torch.allclose(whole, model(x).clamp(0, 1), atol=1e-6)


def test_upscale_outscale_gray_and_3d_input():
    model = small_rrdbnet(4)
    x = torch.rand(3, 10, 14)
    assert upscale(x, model, device="cpu", outscale=2).shape == (3, 20, 28)
    assert upscale(x, model, device="cpu", outscale=1.5).shape == (3, 15, 21)
    g = torch.rand(1, 1, 10, 14)
    out = upscale(g, model, device="cpu")
    ref = model(g.expand(1, 3, 10, 14)).mean(1, keepdim=True).clamp(0, 1)
    assert out.shape == (1, 1, 40, 56) and torch.allclose(out, ref, atol=1e-6)


def test_upscale_bicubic_matches_imresize():
    from gensr.imresize import imresize

    x = torch.rand(1, 3, 12, 9)
    assert torch.allclose(upscale(x, "bicubic"), imresize(x, 4).clamp(0, 1))
    assert upscale(x, "bicubic", scale=2).shape == (1, 3, 24, 18)
    assert upscale(x, "bicubic", outscale=3).shape == (1, 3, 36, 27)  # one resize straight to the size


def test_upscaler_alpha():
    up = Upscaler(Nearest(4), device="cpu")
    a = torch.rand(1, 1, 8, 6)
    bic = up.run_alpha(a, (32, 24))
    assert bic.shape == (1, 1, 32, 24) and bic.min() >= 0 and bic.max() <= 1
    by_model = up.run_alpha(a, (32, 24), upsampler="model")
    ref = Nearest(4)(a.expand(1, 3, 8, 6)).mean(1, keepdim=True).clamp(0, 1)
    assert torch.allclose(by_model, ref, atol=1e-6)
    with pytest.raises(GensrError, match="alpha_upsampler"):
        up.run_alpha(a, (32, 24), upsampler="lanczos")


def test_upscaler_option_errors():
    with pytest.raises(GensrError, match="scale"):
        Upscaler(small_rrdbnet(4), scale=2, device="cpu")
    with pytest.raises(GensrError, match="tile_overlap"):
        Upscaler(Nearest(4), tile=32, tile_overlap=32, device="cpu")
    with pytest.raises(GensrError, match="interp"):
        Upscaler("bicubic", interp_with="x.safetensors")
    with pytest.raises(GensrError):
        Upscaler("no/such/file.pth", device="cpu")
    with pytest.raises(GensrError, match="outscale"):
        Upscaler("bicubic").run(torch.rand(1, 3, 4, 4), outscale=0)


def test_import_gensr_is_light_and_exports_lazily():
    import subprocess
    import sys

    code = (
        "import sys, gensr; assert 'torch' not in sys.modules, 'torch imported'; "
        "import gensr.imresize; f = gensr.imresize; assert callable(f), f; "
        "assert callable(gensr.upscale) and callable(gensr.load_model)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cpu_auto_tiling_when_memory_is_short(monkeypatch):
    import gensr.inference.upscale as up_mod

    notes = []
    model = Nearest(4)
    up = Upscaler(model, device="cpu", note=notes.append)
    x = torch.rand(1, 3, 300, 280)
    monkeypatch.setattr(up_mod, "available_memory", lambda: 10 * 2**30)
    assert up.tiles_for(300, 280) == 1
    whole = up.run(x)
    assert notes == []
    monkeypatch.setattr(up_mod, "available_memory", lambda: 2**20)  # 1 MiB: must tile
    assert up.tiles_for(300, 280) == tile_count(300, 280, up_mod.AUTO_TILE, 32) > 1
    tiled = up.run(x)
    assert len(notes) == 1 and "--tile 256" in notes[0]
    assert torch.allclose(whole, tiled, atol=1e-6)
    assert up.tile == 0  # decided per image, not remembered


def test_oom_shrinking_schedule():
    notes = []
    up = Upscaler(Nearest(4), device="cpu", batch_size=4, note=notes.append)
    steps = []
    with pytest.raises(GensrError, match="out of GPU memory"):
        for _ in range(10):
            up._shrink_after_oom(1000)
            steps.append((up.tile, up.batch_size))
    assert steps == [(500, 4), (500, 1), (250, 1), (125, 1)]
    assert up.tile_overlap == 31 and len(notes) == 4
