"""NIQE (Natural Image Quality Evaluator), no-reference, as MATLAB's ``niqe`` computes it; and ``fitniqe``.

Sources of the facts (read, not copied): the NIQE release of Mittal et al. (``computequality.m``,
``estimatemodelparam.m``, ``computefeature.m``, ``estimateaggdparam.m``), the Image Processing Toolbox's
``niqe.m`` / ``fitniqe.m`` / ``niqeModel.m`` / ``estimateAGGDParameters.m`` (2016-2017 versions), and BasicSR's
port. Lower scores are better (closer to the pristine model).

Scoring (:func:`niqe`):

1. One plane on the 8-bit scale, rounded to integers (MATLAB: ``round(255 * im2double(im))``): RGB -> the
   BT.601 Y of MATLAB's ``rgb2ycbcr`` (``convert_to_y=True``, the SR-paper / BasicSR convention, 16..235) or
   MATLAB's ``rgb2gray`` (``convert_to_y=False``, what MATLAB's own ``niqe`` does with RGB input); gray input
   as it is. uint16 is brought to the 8-bit scale (/257), float input is taken as 0..255.
2. Cropped (top-left) to a multiple of the block size (96; positive and even, as MATLAB requires).
3. At two scales: local mean ``mu`` and second moment with the model's 7x7 Gaussian window
   (``fspecial('gaussian', 7, 7/6)``, borders replicated: ``imgaussfilt(..., 'Padding', 'replicate')``),
   ``sigma = sqrt(|E[x^2] - mu^2|)``, MSCN ``= (x - mu) / (sigma + 1)``. Non-overlapping blocks (96x96 at
   scale 1, 48x48 at scale 2), 18 features each: an AGGD moment-matching fit of the MSCN values (shape alpha,
   (beta_l + beta_r) / 2) and of the products with the neighbour in four directions (``circshift`` of the
   block by [0 1], [1 0], [1 1], [1 -1]: the shift wraps inside the block): alpha, mean
   ``(beta_r - beta_l) Gamma(2/alpha) / Gamma(1/alpha)``, beta_l, beta_r. The left std is over the values
   < 0, the right one over the values > 0 (the release's and BasicSR's rule; the 2016 toolbox code counts
   zeros on the right, which moves baboon's score 2e-3 away from MATLAB R2021a's value); the shape is the point
   of the grid ``0.2:0.001:10`` whose ``Gamma(2/a)^2 / (Gamma(1/a) Gamma(3/a))`` is nearest (first on ties) to
   the normalised moment ratio. Between the scales the image is halved with MATLAB's antialiased bicubic
   ``imresize(im, 0.5)`` (:func:`gensr.imresize.imresize`), unrounded.
4. The blocks with ``sharpness >= threshold * max(sharpness)`` are kept, sharpness being the mean of ``sigma``
   (scale 1) over the block and ``threshold`` the model's (0 for MATLAB's default model: every block).
5. ``mu = nanmean`` over blocks, ``cov = nancov`` (rows with a NaN left out; normalised by n - 1, by 1 when
   n = 1), score ``sqrt((mu_p - mu) pinv((cov_p + cov) / 2) (mu_p - mu)')`` with MATLAB's ``pinv`` tolerance.

Precision: the images, local moments, MSCN maps and neighbour products are held in single precision (float32;
the local sums are accumulated in float64 and rounded once), everything after them (AGGD moments, features,
statistics) in float64. This reproduces MATLAB R2021a's published value for Set14 ``baboon`` (5.72957338;
gensr 5.7295736), which an all-float64 computation misses by 3.9e-4 (5.7299602): the subtraction
``E[x^2] - mu^2`` is where the precision of the stored moments shows. BasicSR's float32 port gives 5.7295763.

Undefined features: a block without negative or without positive MSCN values (or products), e.g. a flat
block, gets NaN betas and the fallback shape 0.2 (MATLAB's ``min`` over an all-NaN vector returns the first
index), as in MATLAB. Such blocks are left out of the covariance and of the NaN entries of the mean. When no
block of an image has a complete feature vector (e.g. a constant image), NIQE is undefined and :func:`niqe`
returns ``math.nan`` (MATLAB's ``pinv`` would fail); callers decide how to report it. Nothing here raises or
warns on NaN.

Fitting (:func:`fit_niqe_params`, MATLAB ``fitniqe``): every pristine image goes through steps 1-3; per image,
the blocks with ``sharpness >= threshold * max(sharpness of that image's blocks)`` are kept (MATLAB's
documentation: "All blocks which have sharpness more than s*max(sharpness among all blocks) are used"; the
release's ``estimatemodelparam.m`` uses ``>``); the 36 features of the kept blocks of all images give
``mean = nanmean``, ``cov = nancov``. The default threshold is 0.75, the value the release used for the
shipped model (MATLAB ``fitniqe``'s own default is 0). The threshold is stored with the model and, as in
MATLAB, applied to the scored image too (step 4). Deviations, stated: the release and MATLAB convert RGB with
``rgb2gray``; here fitting uses the same conversion as scoring (``convert_to_y``). MATLAB uses the whole side as
one block when an image is smaller than a block; here :func:`niqe` refuses such an image (``ValueError``) and
fitting skips it.

Model files (:func:`load_niqe_params`, :func:`save_niqe_params`) are ``.npz`` with BasicSR's keys
``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36), ``gaussian_window`` (k, k), plus the optional
``block_size`` and ``sharpness_threshold`` scalars of MATLAB's ``niqeModel``. The shipped model
(``gensr/assets/niqe``, Apache-2.0, see its NOTICE) is MATLAB's default one (block 96, threshold 0).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from gensr.errors import GensrError
from gensr.fileutil import atomic_path
from gensr.imresize import imresize
from gensr.metrics.fidelity import rgb_to_y, to_float255

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_SHARPNESS_THRESHOLD",
    "MIN_FIT_BLOCKS",
    "NUM_FEATURES",
    "NiqeParams",
    "fit_niqe_params",
    "load_niqe_params",
    "niqe",
    "niqe_features",
    "niqe_plane",
    "params_from_features",
    "save_niqe_params",
    "sharp_block_features",
    "shipped_params_path",
]

NUM_FEATURES = 36  # 18 per scale, 2 scales
DEFAULT_BLOCK_SIZE = 96
DEFAULT_SHARPNESS_THRESHOLD = 0.75  # the NIQE release's value (MATLAB fitniqe's default is 0)
MIN_FIT_BLOCKS = NUM_FEATURES + 1  # fewer complete feature vectors cannot give a full-rank covariance
_REQUIRED_KEYS = ("mu_pris_param", "cov_pris_param", "gaussian_window")
_OPTIONAL_KEYS = ("block_size", "sharpness_threshold")
_ARGMIN_CHUNK = 256  # blocks per (chunk, 9801) distance matrix in the shape search
# MATLAB rgb2gray: the first row of inv([1 0.956 0.621; 1 -0.272 -0.647; 1 -1.106 1.703]) (NTSC YIQ).
_YIQ = np.array([[1.0, 0.956, 0.621], [1.0, -0.272, -0.647], [1.0, -1.106, 1.703]], dtype=np.float64)
_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))  # circshift offsets (rows, columns) of the neighbour products


@dataclass(frozen=True)
class NiqeParams:
    """A NIQE model (MATLAB ``niqeModel``): the Gaussian of pristine features and how they were computed.

    ``mu`` (36,) and ``cov`` (36, 36) float64; ``gaussian_window`` (k, k) float64, k odd (7 for MATLAB's);
    ``block_size`` the block side; ``sharpness_threshold`` in [0, 1], the block selection used when fitting
    and scoring (0 = every block, MATLAB's default model). Arrays are read-only.
    """

    mu: np.ndarray
    cov: np.ndarray
    gaussian_window: np.ndarray
    block_size: int = DEFAULT_BLOCK_SIZE
    sharpness_threshold: float = 0.0


# ------------------------------------------------------------------------------------------------ pieces


def _matlab_colon(start: float, step: float, stop: float) -> np.ndarray:
    """MATLAB's ``start:step:stop``: the first half counted up from ``start``, the second down from ``stop``."""
    steps = (stop - start) / step
    n = int(math.floor(steps + 1e-10)) + 1
    end = stop if abs(steps - (n - 1)) < 1e-10 else start + (n - 1) * step
    k = np.arange(n, dtype=np.float64)
    out = start + k * step
    half = n // 2
    out[half:] = end - (n - 1 - k[half:]) * step
    return out


@lru_cache(maxsize=1)
def _shape_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``gam = 0.2:0.001:10`` and, on it, r(gam), Gamma(1/gam), Gamma(2/gam), Gamma(3/gam) (all read-only)."""
    gam = _matlab_colon(0.2, 0.001, 10.0)
    g1 = np.array([math.gamma(v) for v in 1.0 / gam])
    g2 = np.array([math.gamma(v) for v in 2.0 / gam])
    g3 = np.array([math.gamma(v) for v in 3.0 / gam])
    r_gam = (g2 * g2) / (g1 * g3)
    for arr in (gam, r_gam, g1, g2, g3):
        arr.flags.writeable = False
    return gam, r_gam, g1, g2, g3


def _matlab_round(x: np.ndarray) -> np.ndarray:
    """Round half away from zero (MATLAB ``round`` and its float -> integer casts)."""
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def niqe_plane(img: np.ndarray, convert_to_y: bool = True) -> np.ndarray:
    """The plane NIQE scores: (H, W) float64, integer-valued, on the 8-bit scale (step 1 of the module doc).

    ``img``: (H, W), (H, W, 1) or (H, W, 3); uint8, uint16 (/257) or float taken as 0..255.
    ValueError for other shapes or dtypes and for non-finite values.
    """
    a = np.asarray(img)
    x = to_float255(a)  # (H, W, C) float64; ValueError for bad shapes / dtypes
    if not np.isfinite(x).all():
        raise ValueError("image has non-finite values")
    if x.shape[2] == 1:
        plane = x[:, :, 0]
    elif convert_to_y:
        plane = rgb_to_y(x)[:, :, 0]
    elif a.dtype == np.uint16:  # rgb2gray keeps the class (rounds on the 16-bit scale), then niqe rescales
        plane = _matlab_round(a.astype(np.float64) @ np.linalg.inv(_YIQ)[0]) / 257.0
    else:
        plane = x @ np.linalg.inv(_YIQ)[0]
    return _matlab_round(plane)


def _filter_replicate(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Same-size correlation with ``window``, borders replicated (MATLAB ``imfilter(x, w, 'replicate')``).

    Accumulated in float64 whatever the input; returns float64.
    """
    kh, kw = window.shape
    h, w = x.shape
    padded = np.pad(x.astype(np.float64), ((kh // 2, kh // 2), (kw // 2, kw // 2)), mode="edge")
    out = np.zeros((h, w), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            out += window[i, j] * padded[i : i + h, j : j + w]
    return out


def _mscn(im: np.ndarray, window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MSCN coefficients, local deviation sigma) of a float32 (H, W) image, both float32 (see Precision)."""
    mu = _filter_replicate(im, window).astype(np.float32)
    second = _filter_replicate(im.astype(np.float64) ** 2, window).astype(np.float32)
    sigma = np.sqrt(np.abs(second - mu * mu))
    return (im - mu) / (sigma + np.float32(1.0)), sigma


def _blocks(x: np.ndarray, b: int) -> np.ndarray:
    """(N, b, b) non-overlapping blocks of an (nh*b, nw*b) map (order: row of blocks, then column)."""
    nh, nw = x.shape[0] // b, x.shape[1] // b
    return x[: nh * b, : nw * b].reshape(nh, b, nw, b).transpose(0, 2, 1, 3).reshape(nh * nw, b, b)


def _nearest_shape(rhatnorm: np.ndarray) -> np.ndarray:
    """Index into the shape grid minimising ``(r_gam - rhatnorm)^2`` (first on ties; 0 for NaN, as MATLAB)."""
    _, r_gam, *_ = _shape_grid()
    idx = np.zeros(rhatnorm.shape, dtype=np.intp)
    for s in range(0, rhatnorm.size, _ARGMIN_CHUNK):
        chunk = rhatnorm[s : s + _ARGMIN_CHUNK]
        d = r_gam[None, :] - chunk[:, None]
        found = np.argmin(d * d, axis=1)
        found[np.isnan(chunk)] = 0
        idx[s : s + _ARGMIN_CHUNK] = found
    return idx


def _aggd(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Moment-matching AGGD fit of each row of ``v`` (N, n) float64: (shape-grid index, beta_l, beta_r).

    Left std over the values < 0, right std over the values > 0 (NaN when there are none),
    ``rhat = mean(|v|)^2 / mean(v^2)`` over all values, normalised by the std ratio; the shape from the grid,
    then the betas.
    """
    sq = v * v
    neg, pos = v < 0, v > 0
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        left = np.sqrt(np.where(neg, sq, 0.0).sum(axis=1) / neg.sum(axis=1))  # 0/0 = NaN when none
        right = np.sqrt(np.where(pos, sq, 0.0).sum(axis=1) / pos.sum(axis=1))
        gammahat = left / right
        rhat = np.abs(v).mean(axis=1) ** 2 / sq.mean(axis=1)
        rhatnorm = (rhat * (gammahat**3 + 1) * (gammahat + 1)) / ((gammahat**2 + 1) ** 2)
    idx = _nearest_shape(rhatnorm)
    _, _, g1, _, g3 = _shape_grid()
    ratio = np.sqrt(g1[idx] / g3[idx])
    return idx, left * ratio, right * ratio


def _block_features(blocks: np.ndarray) -> np.ndarray:
    """(N, 18) float64 features of MSCN blocks (N, b, b): see step 3 of the module docstring."""
    gam, _, g1, g2, _ = _shape_grid()
    n = blocks.shape[0]
    idx, bl, br = _aggd(blocks.reshape(n, -1).astype(np.float64))
    cols = [gam[idx], (bl + br) / 2]
    for shift in _SHIFTS:
        pair = blocks * np.roll(blocks, shift, axis=(1, 2))  # float32 products, as the MSCN map
        idx, bl, br = _aggd(pair.reshape(n, -1).astype(np.float64))
        cols += [gam[idx], (br - bl) * (g2[idx] / g1[idx]), bl, br]
    return np.stack(cols, axis=1)


def _check_block_size(block_size: int) -> int:
    if isinstance(block_size, bool) or int(block_size) != block_size or block_size < 2 or block_size % 2:
        raise ValueError(f"block_size must be a positive even integer, got {block_size}")
    return int(block_size)


def _check_threshold(threshold: float) -> float:
    if not (0.0 <= float(threshold) <= 1.0):
        raise ValueError(f"sharpness_threshold must be in [0, 1], got {threshold}")
    return float(threshold)


def niqe_features(
    plane: np.ndarray, block_size: int = DEFAULT_BLOCK_SIZE, gaussian_window: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The NIQE features of every block of a plane (steps 2-3 of the module docstring).

    Args:
        plane: (H, W) on the 8-bit scale, already converted and rounded (:func:`niqe_plane`).
        block_size: block side at scale 1 (positive, even).
        gaussian_window: (k, k) window; None = MATLAB's 7x7 Gaussian (sigma 7/6).

    Returns:
        (features (N, 36) float64, sharpness (N,) float64) per block, in row-major block order; sharpness is
        the mean local deviation ``sigma`` over the block at scale 1.
    """
    b = _check_block_size(block_size)
    im = np.asarray(plane)
    if im.ndim != 2:
        raise ValueError(f"expected an (H, W) plane, got shape {im.shape}")
    h, w = im.shape
    if h < b or w < b:
        raise ValueError(f"image {w}x{h} is smaller than one NIQE block ({b}x{b})")
    window = _default_window() if gaussian_window is None else np.asarray(gaussian_window, dtype=np.float64)
    im = im[: h // b * b, : w // b * b].astype(np.float32)
    mscn, sigma = _mscn(im, window)
    sharpness = _blocks(sigma, b).astype(np.float64).mean(axis=(1, 2))
    feats1 = _block_features(_blocks(mscn, b))
    half = imresize(im.astype(np.float64), 0.5).astype(np.float32)  # unrounded, held in single like the rest
    mscn2, _ = _mscn(half, window)
    feats2 = _block_features(_blocks(mscn2, b // 2))
    return np.concatenate([feats1, feats2], axis=1), sharpness


def _select(features: np.ndarray, sharpness: np.ndarray, threshold: float) -> np.ndarray:
    """The rows whose block sharpness is >= threshold x the image's largest (MATLAB's block selection)."""
    return features[sharpness >= threshold * sharpness.max()]


def _default_window() -> np.ndarray:
    """MATLAB ``fspecial('gaussian', 7, 7/6)`` normalised to sum 1."""
    x = np.arange(7, dtype=np.float64) - 3.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2.0 * (7.0 / 6.0) ** 2))
    return g / g.sum()


# ------------------------------------------------------------------------------------------------ statistics


def _nan_mvg(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """MATLAB ``nanmean`` and ``nancov`` of (N, 36) features: (mean (36,), cov (36, 36), complete rows).

    The covariance uses only rows without NaN, normalised by n - 1 (by 1 when n = 1); it is all-NaN when no
    row is complete.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN, as in MATLAB
        mean = np.nanmean(features, axis=0)
    complete = features[~np.isnan(features).any(axis=1)]
    n = complete.shape[0]
    if n == 0:
        return mean, np.full((features.shape[1],) * 2, np.nan), 0
    centred = complete - complete.mean(axis=0)
    cov = centred.T @ centred / max(n - 1, 1)
    return mean, cov, n


def _pinv(a: np.ndarray) -> np.ndarray:
    """MATLAB ``pinv``: SVD, singular values above ``max(size(a)) * eps(norm(a))`` inverted."""
    u, s, vt = np.linalg.svd(a)
    if s.size == 0 or s[0] == 0:
        return np.zeros(a.T.shape)
    keep = s > max(a.shape) * np.spacing(s[0])
    return (vt[keep].T / s[keep]) @ u[:, keep].T


def _distance(params: NiqeParams, features: np.ndarray) -> float:
    """The NIQE distance of an image's block features to the model; NaN when no block is complete."""
    mu, cov, n = _nan_mvg(features)
    if n == 0:
        return math.nan
    d = params.mu - mu
    q = float((d @ _pinv((params.cov + cov) / 2.0)) @ d)
    return math.sqrt(max(q, 0.0))


# ------------------------------------------------------------------------------------------------ public API


def niqe(
    img: np.ndarray,
    params: NiqeParams | str | os.PathLike | None = None,
    *,
    block_size: int | None = None,
    convert_to_y: bool = True,
) -> float:
    """NIQE score of one image (lower is better), as MATLAB's ``niqe`` (see the module docstring).

    Args:
        img: (H, W, 3) RGB or (H, W) / (H, W, 1) gray; uint8, uint16 (/257) or float on the 0..255 scale.
        params: a :class:`NiqeParams`, a path to a model ``.npz``, or None for MATLAB's default model.
        block_size: block side; None = the model's (96 for the default model). Positive and even.
        convert_to_y: RGB -> MATLAB ``rgb2ycbcr`` Y (default; SR papers, BasicSR) or, if False, MATLAB
            ``rgb2gray`` (MATLAB ``niqe``'s own conversion). Either is rounded to integers.

    Returns:
        The score; ``math.nan`` when no block has defined features (e.g. a constant image).

    Raises:
        ValueError: bad image shape/dtype, non-finite values, image smaller than one block, bad block size.
        GensrError: ``params`` names a missing or invalid model file.
    """
    p = params if isinstance(params, NiqeParams) else load_niqe_params(params)
    b = p.block_size if block_size is None else block_size
    features, sharpness = niqe_features(niqe_plane(img, convert_to_y), b, p.gaussian_window)
    return _distance(p, _select(features, sharpness, p.sharpness_threshold))


def sharp_block_features(
    img: np.ndarray,
    block_size: int = DEFAULT_BLOCK_SIZE,
    sharpness_threshold: float = DEFAULT_SHARPNESS_THRESHOLD,
    *,
    convert_to_y: bool = True,
    gaussian_window: np.ndarray | None = None,
) -> np.ndarray:
    """(k, 36) features of the blocks of one pristine image that ``fitniqe`` keeps (sharpness selection).

    An image smaller than one block gives (0, 36). ``sharpness_threshold`` is in [0, 1].
    """
    b = _check_block_size(block_size)
    threshold = _check_threshold(sharpness_threshold)
    plane = niqe_plane(img, convert_to_y)
    if plane.shape[0] < b or plane.shape[1] < b:
        return np.zeros((0, NUM_FEATURES))
    features, sharpness = niqe_features(plane, b, gaussian_window)
    return _select(features, sharpness, threshold)


def params_from_features(
    features: Iterable[np.ndarray],
    block_size: int = DEFAULT_BLOCK_SIZE,
    sharpness_threshold: float = DEFAULT_SHARPNESS_THRESHOLD,
    gaussian_window: np.ndarray | None = None,
) -> NiqeParams:
    """A model from the kept block features of all images (``nanmean`` / ``nancov`` over all rows).

    Raises GensrError when fewer than :data:`MIN_FIT_BLOCKS` blocks have complete (NaN-free) features.
    """
    b = _check_block_size(block_size)
    threshold = _check_threshold(sharpness_threshold)
    rows = [np.asarray(f, dtype=np.float64).reshape(-1, NUM_FEATURES) for f in features]
    all_rows = np.concatenate(rows, axis=0) if rows else np.zeros((0, NUM_FEATURES))
    mean, cov, n = _nan_mvg(all_rows)
    if n < MIN_FIT_BLOCKS:
        raise GensrError(
            f"too few usable {b}x{b} blocks to fit a NIQE model: {n} (need at least {MIN_FIT_BLOCKS}); "
            "add images, or lower the sharpness threshold or the block size"
        )
    window = _default_window() if gaussian_window is None else np.asarray(gaussian_window, dtype=np.float64)
    return _make_params(mean, cov, window, b, threshold)


def fit_niqe_params(
    images: Iterable[np.ndarray],
    block_size: int = DEFAULT_BLOCK_SIZE,
    sharpness_threshold: float = DEFAULT_SHARPNESS_THRESHOLD,
    *,
    convert_to_y: bool = True,
) -> NiqeParams:
    """MATLAB ``fitniqe``: a NIQE model from pristine images (arrays as for :func:`niqe`).

    Per image, the blocks at least ``sharpness_threshold`` x as sharp as the image's sharpest are kept (see
    the module docstring); images smaller than one block are skipped. GensrError when too few blocks remain.
    """
    window = _default_window()
    kept = [
        sharp_block_features(img, block_size, sharpness_threshold, convert_to_y=convert_to_y, gaussian_window=window)
        for img in images
    ]
    return params_from_features(kept, block_size, sharpness_threshold, window)


def _make_params(mu, cov, window, block_size, sharpness_threshold) -> NiqeParams:
    arrays = [np.array(a, dtype=np.float64) for a in (np.reshape(mu, -1), cov, window)]
    for a in arrays:
        a.flags.writeable = False
    return NiqeParams(arrays[0], arrays[1], arrays[2], int(block_size), float(sharpness_threshold))


def shipped_params_path() -> Path:
    """The MATLAB pristine model shipped with gensr (``gensr/assets/niqe/niqe_pris_params.npz``)."""
    return Path(__file__).resolve().parent.parent / "assets" / "niqe" / "niqe_pris_params.npz"


def load_niqe_params(path: str | os.PathLike | None = None) -> NiqeParams:
    """Read and check a NIQE model ``.npz`` (None = the shipped MATLAB model). GensrError naming the file."""
    if path is None:
        return _load_shipped()
    return _load_npz(Path(path).expanduser())


@lru_cache(maxsize=1)
def _load_shipped() -> NiqeParams:
    return _load_npz(shipped_params_path())


def _load_npz(p: Path) -> NiqeParams:
    if not p.is_file():
        raise GensrError(f"{p}: NIQE model file not found" if not p.exists() else f"{p}: not a file")
    try:
        with np.load(p, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in _REQUIRED_KEYS if k not in keys]
            unknown = sorted(keys - set(_REQUIRED_KEYS) - set(_OPTIONAL_KEYS))
            if missing or unknown:
                parts = ([f"missing key(s) {', '.join(missing)}"] if missing else []) + (
                    [f"unexpected key(s) {', '.join(unknown)}"] if unknown else []
                )
                raise GensrError(f"{p}: not a NIQE model: {'; '.join(parts)}")
            arrays = {k: z[k] for k in keys}
    except GensrError:
        raise
    except Exception as exc:  # corrupt zip, truncated file, pickled object arrays, ...
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise GensrError(f"{p}: cannot read NIQE model .npz ({reason})") from None
    return _validate(p, arrays)


def _numeric(p: Path, key: str, a: np.ndarray, shape: tuple[int, ...] | None) -> np.ndarray:
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise GensrError(f"{p}: {key} has dtype {a.dtype}, expected real numbers")
    if shape is not None and a.shape != shape:
        raise GensrError(f"{p}: {key} has shape {a.shape}, expected {shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise GensrError(f"{p}: {key} has non-finite values")
    return a


def _validate(p: Path, z: dict[str, np.ndarray]) -> NiqeParams:
    mu_raw = z["mu_pris_param"]
    mu = _numeric(p, "mu_pris_param", mu_raw, (1, NUM_FEATURES) if mu_raw.ndim == 2 else (NUM_FEATURES,))
    cov = _numeric(p, "cov_pris_param", z["cov_pris_param"], (NUM_FEATURES, NUM_FEATURES))
    if not np.allclose(cov, cov.T, rtol=1e-8, atol=1e-12):
        raise GensrError(f"{p}: cov_pris_param is not symmetric")
    win = _numeric(p, "gaussian_window", z["gaussian_window"], None)
    if win.ndim != 2 or win.shape[0] != win.shape[1] or win.shape[0] % 2 == 0 or win.sum() <= 0:
        raise GensrError(f"{p}: gaussian_window has shape {win.shape}, expected a square odd-sized window")
    block_size = DEFAULT_BLOCK_SIZE
    if "block_size" in z:
        bs = float(_numeric(p, "block_size", z["block_size"], ()))
        if bs != int(bs) or bs < 2 or int(bs) % 2:
            raise GensrError(f"{p}: block_size must be a positive even integer, got {bs:g}")
        block_size = int(bs)
    threshold = 0.0  # MATLAB's default model, and any model file without the key
    if "sharpness_threshold" in z:
        threshold = float(_numeric(p, "sharpness_threshold", z["sharpness_threshold"], ()))
        if not 0.0 <= threshold <= 1.0:
            raise GensrError(f"{p}: sharpness_threshold must be in [0, 1], got {threshold:g}")
    return _make_params(mu, cov, win, block_size, threshold)


def save_niqe_params(params: NiqeParams, path: str | os.PathLike) -> Path:
    """Write ``params`` as a ``.npz`` in MATLAB's/BasicSR's key layout, atomically (temporary file + rename).

    Keys: ``mu_pris_param`` (1, 36), ``cov_pris_param`` (36, 36), ``gaussian_window`` (k, k), ``block_size``
    and ``sharpness_threshold``. Returns the path written. Replaces an existing file: callers
    check for ``--overwrite`` first.
    """
    out = Path(path).expanduser()
    arrays = {
        "mu_pris_param": np.asarray(params.mu, dtype=np.float64).reshape(1, NUM_FEATURES),
        "cov_pris_param": np.asarray(params.cov, dtype=np.float64),
        "gaussian_window": np.asarray(params.gaussian_window, dtype=np.float64),
        "block_size": np.asarray(params.block_size, dtype=np.int64),
        "sharpness_threshold": np.asarray(params.sharpness_threshold, dtype=np.float64),
    }
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return out
