"""CPU speed paths (issue 12): fused conv + LeakyReLU, bf16 weights, the ``auto`` precision rule, model loading
without random initialisation and the torch-free bicubic command. Each fast path must give what the plain path
gives: bit for bit in float32, within bf16 rounding in bfloat16."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gensr.inference.precision as precision_mod
import gensr.nn.rrdb as rrdb_mod
from gensr.inference.precision import PrecisionRunner, resolve_precision
from gensr.models.registry import build_model

needs_fused_op = pytest.mark.skipif(
    rrdb_mod._fused_op() is None or not torch.backends.mkldnn.is_available(), reason="no oneDNN fused conv op"
)


def _net(nf: int = 16, nb: int = 2, gc: int = 8) -> nn.Module:
    torch.manual_seed(0)
    net = build_model("rrdbnet", {"nf": nf, "nb": nb, "gc": gc, "init": "all"})
    with torch.no_grad():  # larger weights than the 0.1-scaled init, so that negative pre-activations matter
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(4.0)
                m.bias.normal_(0, 0.05)
    return net.eval().to(memory_format=torch.channels_last)


@pytest.fixture
def plain(monkeypatch):
    """A context in which conv_lrelu never fuses (the plain conv + in-place leaky_relu)."""

    def force(*dtypes):
        monkeypatch.setattr(rrdb_mod, "_fuse_failed", set(dtypes or (torch.float32, torch.bfloat16)))

    return force


def _x(*shape: int) -> torch.Tensor:
    return torch.rand(*shape).contiguous(memory_format=torch.channels_last)


@needs_fused_op
def test_fused_conv_lrelu_is_bit_identical_in_fp32(plain):
    net, x = _net(), _x(2, 3, 20, 17)
    with torch.no_grad():
        fused = net(x)
        plain()
        unfused = net(x)
    assert torch.equal(fused, unfused)
    assert (fused < 0).any() and fused.std() > 0.01  # a meaningful comparison


@needs_fused_op
def test_fused_conv_lrelu_in_bf16_is_close_and_rounds_once(plain):
    net, x = _net().bfloat16(), _x(1, 3, 16, 16).bfloat16()
    with torch.no_grad():
        ref = _net()(x.float())
        fused = net(x).float()
        plain()
        unfused = net(x).float()
    assert not torch.equal(fused, unfused)  # the activation sees the float32 accumulator
    assert (fused - ref).abs().max() <= (unfused - ref).abs().max() * 1.5
    assert (fused - ref).abs().max() < 0.05


def test_training_and_autocast_use_the_plain_ops(plain):
    net, x = _net().train(), _x(2, 3, 12, 12)
    out = net(x)
    out.square().mean().backward()  # the fused op has no backward: autograd must not have seen it
    assert all(p.grad is not None for p in net.parameters())
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        auto = net.eval()(x)
    plain()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        auto_plain = net(x)
    assert auto.dtype == torch.bfloat16 and torch.equal(auto, auto_plain)


def test_bf16_weights_compute_what_autocast_computes(plain):
    plain(torch.bfloat16)  # compare like with like: autocast never fuses
    net, x = _net(), _x(1, 3, 14, 18)
    runner = PrecisionRunner(net, "cpu", "bf16")
    assert runner.low_model is not None and next(runner.low_model.parameters()).dtype == torch.bfloat16
    assert next(runner.model.parameters()).dtype == torch.float32  # kept for the fp32 fallback
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = net(x).float()
    assert torch.equal(runner(x), expected)


def test_auto_precision_rule_on_cpu(monkeypatch):
    cpu = torch.device("cpu")
    net = _net()
    for native in (True, False):
        monkeypatch.setattr(precision_mod, "cpu_has_native_bf16", lambda native=native: native)
        want = torch.bfloat16 if native else torch.float32
        assert resolve_precision("auto", cpu, net) == (want, None)
        assert resolve_precision("auto", cpu, nn.Conv2d(3, 3, 1)) == (torch.float32, None)  # no cpu_bf16 claim
        assert resolve_precision("auto", cpu) == (torch.float32, None)
        assert resolve_precision("fp32", cpu, net) == (torch.float32, None)
        assert PrecisionRunner(_net(), "cpu", "auto").precision == ("bf16" if native else "fp32")


def test_native_bf16_detection_matches_cpuinfo():
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if not flags or not ({"avx2"} & flags):
        pytest.skip("not an x86 CPU with a flags line")
    assert precision_mod.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16", "amx_tile"} & flags)


def test_low_precision_nan_that_fp32_also_gives_is_one_error():
    class Broken(nn.Module):
        cpu_bf16 = True
        scale = 1

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return self.conv(x) * float("inf")

    from gensr.errors import GensrError

    notes: list[str] = []
    runner = PrecisionRunner(Broken(), "cpu", "bf16", note=notes.append)
    with pytest.raises(GensrError, match="NaN/inf"):
        runner(torch.rand(1, 3, 4, 4))
    assert notes == []  # no "recomputed in fp32" note for a recomputation that did not help


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_loading_a_model_imports_no_compiler_and_skips_random_init():
    code = (
        "import sys, torch\n"
        "from gensr.checkpoints.loader import load_model, read_checkpoint_any\n"
        "m = load_model('default')\n"
        "sd = read_checkpoint_any('default').state_dict\n"
        "same = all(torch.equal(v.float(), m.state_dict()[k]) for k, v in sd.items())\n"
        "print('torch._dynamo' in sys.modules, 'sympy' in sys.modules, same)\n"
    )
    assert _python(code) == "False False True"


def test_torch_free_bicubic_command_matches_the_upscaler(tmp_path):
    from gensr.inference.upscale import Upscaler
    from gensr.io import read_image, tensor_to_pixels, write_image

    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "rgba.png", rng.integers(0, 256, (11, 13, 3), dtype=np.uint8),
                alpha=rng.integers(0, 256, (11, 13), dtype=np.uint8))  # fmt: skip
    write_image(src / "gray.png", rng.integers(0, 256, (9, 10, 1), dtype=np.uint8))
    write_image(src / "deep.png", rng.integers(0, 65536, (8, 7, 3), dtype=np.uint16))
    out = tmp_path / "out"
    code = (
        "import sys\nfrom gensr.cli import main\n"
        f"code = main(['upscale', {str(src)!r}, '-o', {str(out)!r}, '-m', 'bicubic', '-s', '3', '-q'])\n"
        "print(code, 'torch' in sys.modules)\n"
    )
    assert _python(code) == "0 False"
    up = Upscaler("bicubic", scale=3)
    for name in ("rgba", "gray", "deep"):
        img, res = read_image(src / f"{name}.png"), read_image(out / f"{name}.png")
        x = img.rgb_tensor()[:, :1] if img.is_gray else img.rgb_tensor()
        expected = tensor_to_pixels(up.run(x), img.bit_depth)
        assert res.pixels.shape == expected.shape and res.bit_depth == img.bit_depth
        assert np.abs(res.pixels.astype(np.int64) - expected).max() <= 1
        if img.has_alpha:
            alpha = tensor_to_pixels(up.run_alpha(img.alpha_tensor(), res.size), 8)[:, :, 0]
            assert np.abs(res.alpha.astype(np.int64) - alpha).max() <= 1
