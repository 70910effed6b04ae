"""NIQE (MATLAB ``niqe``) and its fitting (MATLAB ``fitniqe``): value, behaviour, model files and `gensr niqe-fit`."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gensr.errors import GensrError
from gensr.imresize import imresize
from gensr.io import read_array, write_image
from gensr.metrics import niqe as N
from gensr.metrics.niqe import (
    fit_niqe_params,
    load_niqe_params,
    niqe,
    niqe_features,
    niqe_plane,
    save_niqe_params,
    shipped_params_path,
)

MATLAB_BABOON = 5.72957338  # MATLAB R2021a, Y channel (rgb2ycbcr, rounded), 96x96 blocks, no border crop


def gensr(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True, timeout=300)


def _one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gensr: error:"), proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def _textured(h: int, w: int, seed: int) -> np.ndarray:
    """A synthetic RGB uint8 image with structure at several scales plus a little grain."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3))
    for cells in (4, 16, 64):
        small = rng.random((max(h // cells, 2), max(w // cells, 2), 3))
        img += imresize(small, size=(h, w)) * 255.0 / 3.0
    img += rng.normal(0.0, 4.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _box_blur(img: np.ndarray, k: int) -> np.ndarray:
    """Separable k x k box blur with edge replication, uint8 in, uint8 out."""
    pad = k // 2
    x = np.pad(img.astype(np.float64), ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    x = sum(x[i : i + img.shape[0]] for i in range(k)) / k
    x = sum(x[:, j : j + img.shape[1]] for j in range(k)) / k
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------------ the value


def test_baboon_matches_matlab(datasets_dir):
    img = read_array(datasets_dir / "Set14" / "HR" / "baboon.png")
    score = niqe(img)
    assert abs(score - MATLAB_BABOON) < 1e-5, score
    # the same with the model given explicitly (path and object) and on the Y plane passed as gray
    assert niqe(img, shipped_params_path()) == score
    assert niqe(img, load_niqe_params()) == score
    assert niqe(niqe_plane(img).astype(np.uint8)) == score
    # MATLAB niqe's own conversion (rgb2gray) is a different, finite score
    gray_score = niqe(img, convert_to_y=False)
    assert math.isfinite(gray_score) and abs(gray_score - score) > 1e-3


def test_block_features_match_a_plain_per_block_computation():
    """The vectorised AGGD fits against a direct transcription of the release's per-block formulas."""
    rng = np.random.default_rng(3)
    blocks = (rng.laplace(size=(3, 12, 12)) + 0.2 * rng.normal(size=(3, 12, 12))).astype(np.float32)
    gam = 0.2 + 0.001 * np.arange(9801)
    r_gam = np.array([math.gamma(2 / a) ** 2 / (math.gamma(1 / a) * math.gamma(3 / a)) for a in gam])

    def aggd(vec):
        left = math.sqrt(np.mean(vec[vec < 0] ** 2))
        right = math.sqrt(np.mean(vec[vec > 0] ** 2))
        g = left / right
        rhat = np.mean(np.abs(vec)) ** 2 / np.mean(vec**2)
        rn = rhat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
        a = gam[int(np.argmin((r_gam - rn) ** 2))]
        t = math.sqrt(math.gamma(1 / a) / math.gamma(3 / a))
        return a, left * t, right * t

    got = N._block_features(blocks)
    for k, b in enumerate(blocks):
        a, bl, br = aggd(b.astype(np.float64).ravel())
        want = [a, (bl + br) / 2]
        for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a, bl, br = aggd((b * np.roll(b, shift, axis=(0, 1))).astype(np.float64).ravel())
            want += [a, (br - bl) * math.gamma(2 / a) / math.gamma(1 / a), bl, br]
        np.testing.assert_allclose(got[k], want, rtol=1e-9, atol=1e-12)


def test_shape_grid_is_matlab_colon():
    gam, r_gam, *_ = N._shape_grid()
    assert gam.size == 9801 and gam[0] == 0.2 and gam[-1] == 10.0
    assert np.all(np.diff(r_gam) > 0)  # monotonic, so the nearest point is well defined


def test_crop_to_blocks_and_block_count():
    img = _textured(200, 300, seed=1)
    feats, sharp = niqe_features(niqe_plane(img), 96)
    assert feats.shape == (2 * 3, 36) and sharp.shape == (6,)
    # the pixels beyond the last whole block do not matter
    img2 = img.copy()
    img2[192:] = 0
    img2[:, 288:] = 255
    assert niqe(img2) == niqe(img)


# ------------------------------------------------------------------------------------------------ behaviour


def test_sharp_image_scores_better_than_blurred(datasets_dir):
    """Bicubic x4 down-and-up (the SR input's loss of detail) and a strong blur both raise the score."""
    names = ("baboon", "bridge", "lenna", "monarch", "zebra")
    for name in names:
        img = read_array(datasets_dir / "Set14" / "HR" / f"{name}.png")
        h, w = img.shape[0] // 4 * 4, img.shape[1] // 4 * 4
        img = img[:h, :w]
        sharp = niqe(img)
        assert sharp < niqe(imresize(imresize(img, 0.25), 4.0)), name
        assert sharp < niqe(_box_blur(img, 9)), name


def test_constant_image_is_nan_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(niqe(np.full((192, 192, 3), 128, np.uint8)))
        assert math.isnan(niqe(np.full((100, 100), 37.2)))
        # flat blocks inside a textured image: their features are NaN and left out, the score stays finite
        img = _textured(288, 288, seed=2)
        img[:, :144] = 90
        feats, _ = niqe_features(niqe_plane(img))
        flat = np.isnan(feats).any(axis=1)
        assert flat.any() and not flat.all()
        assert np.all(feats[flat][:, 0] == 0.2)  # MATLAB's min over all-NaN picks the first grid point
        assert math.isfinite(niqe(img))


def test_bad_images_raise_value_error():
    with pytest.raises(ValueError, match=r"smaller than one NIQE block \(96x96\)"):
        niqe(np.zeros((95, 400, 3), np.uint8))
    with pytest.raises(ValueError, match="non-finite"):
        niqe(np.full((100, 100), np.nan))
    with pytest.raises(ValueError, match="block_size"):
        niqe(_textured(100, 100, 0), block_size=33)


def test_uint16_and_float_inputs_are_on_the_8bit_scale():
    img = _textured(192, 192, seed=4)
    base = niqe(img)
    assert niqe(img.astype(np.uint16) * 257) == base
    assert niqe(img.astype(np.float64)) == base


# ------------------------------------------------------------------------------------------------ model files


def test_shipped_model_is_the_matlab_one():
    p = load_niqe_params()
    assert p.mu.shape == (36,) and p.cov.shape == (36, 36) and p.gaussian_window.shape == (7, 7)
    assert p.block_size == 96 and p.sharpness_threshold == 0.0
    np.testing.assert_allclose(p.gaussian_window, N._default_window(), atol=1e-15)
    assert (shipped_params_path().parent / "NOTICE").is_file()


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _params_arrays() -> dict[str, np.ndarray]:
    p = load_niqe_params()
    return {"mu_pris_param": p.mu[None], "cov_pris_param": p.cov, "gaussian_window": p.gaussian_window}


@pytest.mark.parametrize(
    "case,fragment",
    [
        ("garbage", "cannot read NIQE model"),
        ("truncated", "cannot read NIQE model"),
        ("missing_key", "missing key(s) cov_pris_param"),
        ("extra_key", "unexpected key(s) weights"),
        ("cov_shape", "cov_pris_param has shape (35, 36), expected (36, 36)"),
        ("mu_shape", "mu_pris_param has shape (1, 35), expected (1, 36)"),
        ("nan", "mu_pris_param has non-finite values"),
        ("asymmetric", "cov_pris_param is not symmetric"),
        ("window", "gaussian_window has shape (6, 6)"),
        ("pickled", "cannot read NIQE model"),
        ("block_size", "block_size must be a positive even integer"),
        ("missing_file", "NIQE model file not found"),
    ],
)
def test_loader_rejects_bad_files_with_one_line(tmp_path, case, fragment):
    path = tmp_path / f"{case}.npz"
    a = _params_arrays()
    if case == "garbage":
        path.write_bytes(b"not a zip file at all")
    elif case == "truncated":
        _write_npz(path, **a)
        path.write_bytes(path.read_bytes()[:300])
    elif case == "missing_key":
        _write_npz(path, mu_pris_param=a["mu_pris_param"], gaussian_window=a["gaussian_window"])
    elif case == "extra_key":
        _write_npz(path, weights=np.zeros(3), **a)
    elif case == "cov_shape":
        _write_npz(path, **{**a, "cov_pris_param": a["cov_pris_param"][:35]})
    elif case == "mu_shape":
        _write_npz(path, **{**a, "mu_pris_param": a["mu_pris_param"][:, :35]})
    elif case == "nan":
        mu = a["mu_pris_param"].copy()
        mu[0, 3] = np.nan
        _write_npz(path, **{**a, "mu_pris_param": mu})
    elif case == "asymmetric":
        cov = a["cov_pris_param"].copy()
        cov[0, 1] += 1.0
        _write_npz(path, **{**a, "cov_pris_param": cov})
    elif case == "window":
        _write_npz(path, **{**a, "gaussian_window": np.ones((6, 6)) / 36})
    elif case == "pickled":
        _write_npz(path, **{**a, "mu_pris_param": np.array([{"x": 1}], dtype=object)})
    elif case == "block_size":
        _write_npz(path, block_size=np.array(95), **a)
    with pytest.raises(GensrError) as info:
        load_niqe_params(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg and fragment in msg, msg


def test_save_and_load_round_trip(tmp_path):
    p = load_niqe_params()
    out = save_niqe_params(p, tmp_path / "copy.npz")
    with zipfile.ZipFile(out) as z:
        assert sorted(z.namelist()) == sorted(
            f"{k}.npy"
            for k in ("mu_pris_param", "cov_pris_param", "gaussian_window", "block_size", "sharpness_threshold")
        )
    q = load_niqe_params(out)
    assert np.array_equal(q.mu, p.mu) and np.array_equal(q.cov, p.cov)
    assert (q.block_size, q.sharpness_threshold) == (96, 0.0)
    assert not list(tmp_path.glob(".copy*"))  # no temporary file left behind


# ------------------------------------------------------------------------------------------------ fitting


def test_fit_on_training_images(datasets_dir, tmp_path):
    folder = datasets_dir / "train" / "BSD200"
    if not folder.is_dir():
        pytest.skip(f"{folder} missing")
    images = [read_array(f) for f in sorted(folder.glob("*.jpg"))[:10]]
    params = fit_niqe_params(images, block_size=96, sharpness_threshold=0.75)
    path = save_niqe_params(params, tmp_path / "bsd.npz")
    loaded = load_niqe_params(path)
    assert loaded.block_size == 96 and loaded.sharpness_threshold == 0.75
    np.testing.assert_allclose(loaded.cov, loaded.cov.T)
    assert np.all(np.linalg.eigvalsh(loaded.cov) > -1e-9)
    test_img = read_array(datasets_dir / "Set14" / "HR" / "baboon.png")
    assert math.isfinite(niqe(test_img, loaded)) and math.isfinite(niqe(test_img, path))
    # the selection: a lower threshold keeps at least as many blocks, threshold 0 keeps all of them
    kept = [len(N.sharp_block_features(im, 96, t)) for t in (1.0, 0.75, 0.0) for im in images[:1]]
    total = len(niqe_features(niqe_plane(images[0]))[0])
    assert 1 <= kept[0] <= kept[1] <= kept[2] == total


def test_fit_needs_enough_blocks_and_skips_small_images():
    small = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(GensrError, match="too few usable 96x96 blocks"):
        fit_niqe_params([small, _textured(192, 192, 0)])
    params = fit_niqe_params([small] + [_textured(192, 192, s) for s in range(12)], sharpness_threshold=0.0)
    assert params.mu.shape == (36,) and np.isfinite(params.cov).all()


# ------------------------------------------------------------------------------------------------ CLI


def _synthetic_folder(folder: Path, count: int = 5) -> Path:
    folder.mkdir()
    for i in range(count):
        write_image(folder / f"img{i}.png", _textured(288, 288, seed=10 + i))
    write_image(folder / "tiny.png", _textured(40, 60, seed=99))  # smaller than a block: skipped
    return folder


def test_cli_fit_success_refusal_and_overwrite(tmp_path):
    folder = _synthetic_folder(tmp_path / "hr")
    out = tmp_path / "model.npz"
    proc = gensr("niqe-fit", folder, "-o", out, "--sharpness-threshold", "0")
    assert proc.returncode == 0, proc.stderr
    assert "45 block(s) from 5 image(s), 1 skipped" in proc.stderr
    params = load_niqe_params(out)
    assert params.block_size == 96 and params.sharpness_threshold == 0.0
    assert math.isfinite(niqe(_textured(192, 192, seed=50), out))

    before = out.read_bytes()
    _one_line_error(gensr("niqe-fit", folder, "-o", out), str(out), "--overwrite")
    assert out.read_bytes() == before

    proc = gensr("niqe-fit", folder, "-o", out, "--overwrite", "--block-size", "64", "--sharpness-threshold", "0")
    assert proc.returncode == 0, proc.stderr
    assert load_niqe_params(out).block_size == 64


def test_cli_errors(tmp_path):
    _one_line_error(gensr("niqe-fit", tmp_path / "nope", "-o", tmp_path / "m.npz"), "nope", "no such folder")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(gensr("niqe-fit", empty, "-o", tmp_path / "m.npz"), "no images")
    few = tmp_path / "few"
    few.mkdir()
    write_image(few / "a.png", _textured(192, 192, seed=1))
    _one_line_error(gensr("niqe-fit", few, "-o", tmp_path / "m.npz"), "too few usable")
    _one_line_error(gensr("niqe-fit", few, "-o", tmp_path / "m.txt"), ".npz")
    _one_line_error(gensr("niqe-fit", few, "-o", tmp_path / "m.npz", "--block-size", "7"), "--block-size")
    _one_line_error(
        gensr("niqe-fit", few, "-o", tmp_path / "m.npz", "--sharpness-threshold", "1.5"), "--sharpness-threshold"
    )
    assert not (tmp_path / "m.npz").exists()


def test_cli_fit_on_training_folder(datasets_dir, tmp_path):
    src = datasets_dir / "train" / "General100"
    if not src.is_dir():
        pytest.skip(f"{src} missing")
    folder = tmp_path / "hr"
    folder.mkdir()
    for f in sorted(src.glob("*.png"))[:8]:
        shutil.copy(f, folder / f.name)
    out = tmp_path / "g100.npz"
    proc = gensr("niqe-fit", folder, "-o", out)
    assert proc.returncode == 0, proc.stderr
    img = read_array(datasets_dir / "Set14" / "HR" / "baboon.png")
    assert math.isfinite(niqe(img, load_niqe_params(out)))
