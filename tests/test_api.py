"""The Python API: a torch-free ``import gensr``, a clean ``dir(gensr)``, and ``gensr.upscale`` returning the
kind it was given (tensor, numpy array, PIL image)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import gensr
from gensr.models.registry import build_model


def test_import_is_torch_free_and_dir_is_the_public_api():
    code = "import sys, gensr; print('torch' in sys.modules); print(','.join(dir(gensr)))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    torch_loaded, names = r.stdout.split()
    assert torch_loaded == "False"
    assert names.split(",") == sorted(gensr.__all__)
    assert {"upscale", "load_model", "sample_sr", "generate", "imresize", "GensrError"} <= set(gensr.__all__)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4}).eval()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_upscale_returns_an_array_of_the_same_kind(net, dtype):
    rng = np.random.default_rng(0)
    if dtype == np.float32:
        img = rng.random((10, 12, 3)).astype(np.float32)
    else:
        img = rng.integers(0, np.iinfo(dtype).max, (10, 12, 3)).astype(dtype)
    out = gensr.upscale(img, net)
    assert isinstance(out, np.ndarray) and out.dtype == dtype and out.shape == (40, 48, 3)
    gray = gensr.upscale(img[:, :, 0], net)
    assert gray.shape == (40, 48) and gray.dtype == dtype


def test_upscale_returns_a_pil_image_for_a_pil_image(net):
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8))
    out = gensr.upscale(rgb, net)
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (48, 40)
    assert gensr.upscale(rgb.convert("L"), net).mode == "L"
    expected = gensr.upscale(np.asarray(rgb), net)
    np.testing.assert_array_equal(np.asarray(out), expected)


def test_upscale_rejects_other_kinds(net):
    with pytest.raises(gensr.GensrError, match="numpy array, PIL image or path"):
        gensr.upscale([[1, 2], [3, 4]], net)


def test_the_installed_console_script_starts():
    import shutil
    from pathlib import Path

    script = Path(sys.executable).with_name("gensr")
    exe = str(script) if script.exists() else shutil.which("gensr")
    if exe is None:
        pytest.skip("the gensr console script is not installed (pip install -e .)")
    r = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "upscale" in r.stdout, r.stderr
