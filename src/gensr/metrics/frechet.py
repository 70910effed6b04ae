"""The Frechet distance between Gaussians fitted to feature sets, and cached feature statistics.

One implementation serves FID (Inception ``pool_3`` features, :mod:`gensr.metrics.inception`) and the offline
classifier distance (:mod:`gensr.metrics.classifier_metrics`). numpy float64 throughout, no scipy.

Formula (Dowson & Landau 1982; Heusel et al. 2017)::

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1 S2)^(1/2) )

The matrix square root is exact (no Newton-Schulz iterations). Symmetric eigendecompositions (``eigh``, float64)
give S_i = V_i W_i V_i^T, eigenvalues below ``max(W_i) * D * eps`` counted as 0 and dropped (numpy's
``matrix_rank`` tolerance), so V_i is (D, k_i) with orthonormal columns and R_i = V_i W_i^(1/2) V_i^T is the PSD
root. S1 S2 has the same non-zero eigenvalues as R1 S2 R1 = (R1 R2)(R1 R2)^T, hence

    tr( (S1 S2)^(1/2) ) = sum_i sqrt(eig_i(R1 S2 R1)) = sum_i sigma_i(R1 R2) = sum_i sigma_i(M),
    M = W1^(1/2) (V1^T V2) W2^(1/2)   (k1 x k2: R1 R2 = V1 M V2^T with orthonormal V1, V2),

the sum of the singular values of M. Singular values (rather than square roots of the eigenvalues of
R1 S2 R1) keep the small terms accurate: an eigenvalue with rounding error eps * |S|^2 would become a square
root with error sqrt(eps) * |S|. So rank-deficient covariances (fewer samples than dimensions) need no
``eps * I`` offset. For identical covariances the term is the sum of the kept eigenvalues (one decomposition).
Rounding can leave about -1e-12; the distance is clipped at 0.

Statistics: mean and unbiased covariance (``ddof=1``, as ``np.cov``) in float64, kept in a
:class:`FeatureStats` together with the identity of what produced them (extractor, weights digest,
preprocessing). :func:`save_feature_stats` / :func:`load_feature_stats` write and read them as ``.npz``
(``allow_pickle=False``); :func:`cached_feature_stats` computes them once and refuses a cache file made by a
different extractor, different weights or different preprocessing.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gensr.errors import GensrError

STATS_FORMAT = "gensr-feature-stats-1"
IDENTITY_FIELDS = ("extractor", "weights", "preprocess")


# ----------------------------------------------------------------------------------------------- distance


def _psd_root_factor(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V (D, k), sqrt(W) (k,)) of a symmetric PSD matrix, eigenvalues under the rank tolerance dropped."""
    sym = (sigma + sigma.T) / 2
    w, v = np.linalg.eigh(sym)
    tol = max(float(w.max(initial=0.0)), 0.0) * sym.shape[0] * np.finfo(np.float64).eps
    keep = w > tol
    return v[:, keep], np.sqrt(w[keep])


def _check_gaussian(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(f"{name}: expected mu (D,) and sigma (D, D), got {mu.shape} and {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"{name}: statistics contain NaN or inf")
    return mu, sigma


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for symmetric PSD S1, S2: the nuclear norm of S1^(1/2) S2^(1/2) (float64)."""
    s1 = np.asarray(sigma1, dtype=np.float64)
    s2 = np.asarray(sigma2, dtype=np.float64)
    v1, r1 = _psd_root_factor(s1)
    if s1 is s2 or np.array_equal(s1, s2):  # (S S)^(1/2) = S: the sum of the kept eigenvalues
        return float((r1**2).sum())
    v2, r2 = _psd_root_factor(s2)
    if r1.size == 0 or r2.size == 0:
        return 0.0
    m = r1[:, None] * (v1.T @ v2) * r2[None, :]
    return float(np.linalg.svd(m, compute_uv=False).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mu1, S1) and N(mu2, S2); see the module docstring."""
    mu1, sigma1 = _check_gaussian(mu1, sigma1, "first")
    mu2, sigma2 = _check_gaussian(mu2, sigma2, "second")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: {mu1.shape[0]} vs {mu2.shape[0]}")
    diff = mu1 - mu2
    d = float(diff @ diff) + float(np.trace(sigma1)) + float(np.trace(sigma2))
    d -= 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(d, 0.0)


# ----------------------------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class FeatureStats:
    """Gaussian fit of N feature vectors: ``mu`` (D,), ``sigma`` (D, D) float64 (unbiased), ``n``, and the
    identity of the features: ``extractor`` (network and layer), ``weights`` (digest), ``preprocess``."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    extractor: str
    weights: str
    preprocess: str

    def identity(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in IDENTITY_FIELDS}


def feature_statistics(features: np.ndarray, extractor: str, weights: str, preprocess: str) -> FeatureStats:
    """Mean and unbiased covariance (float64) of (N, D) features, N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"expected (N, D) features, got shape {f.shape}")
    if f.shape[0] < 2:
        raise GensrError(f"a covariance needs at least 2 images, got {f.shape[0]}")
    if not np.isfinite(f).all():
        raise GensrError(f"{extractor}: non-finite features (NaN or inf)")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return FeatureStats(mu, sigma, int(f.shape[0]), extractor, weights, preprocess)


def identity_mismatch(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """'field: a != b' for every identity field that differs."""
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in IDENTITY_FIELDS if a.get(k) != b.get(k)]


def stats_frechet_distance(a: FeatureStats, b: FeatureStats) -> float:
    """Frechet distance of two statistics of the same features; GensrError if their identities differ."""
    bad = identity_mismatch(a.identity(), b.identity())
    if bad:
        raise GensrError(f"statistics of different features cannot be compared ({'; '.join(bad)})")
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def stats_to_npz_bytes(stats: FeatureStats) -> bytes:
    """The ``.npz`` encoding of ``stats``: float64 ``mu``, ``sigma``, int64 ``n``, unicode identity fields."""
    buf = io.BytesIO()
    np.savez(
        buf,
        mu=np.asarray(stats.mu, dtype=np.float64),
        sigma=np.asarray(stats.sigma, dtype=np.float64),
        n=np.int64(stats.n),
        format=np.str_(STATS_FORMAT),
        **{k: np.str_(v) for k, v in stats.identity().items()},
    )
    return buf.getvalue()


def save_feature_stats(path: str | os.PathLike, stats: FeatureStats, overwrite: bool = False) -> Path:
    """Write ``stats`` atomically to ``path`` (``.npz``); an existing file is replaced only with ``overwrite``."""
    from gensr.fileutil import write_bytes_atomic

    return write_bytes_atomic(path, stats_to_npz_bytes(stats), overwrite=overwrite)


def is_stats_file(path: str | os.PathLike) -> bool:
    """True for an ``.npz`` holding ``mu`` and ``sigma`` (gensr's, pytorch-fid's or TTUR's statistics)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return "mu" in z.files and "sigma" in z.files
    except (OSError, ValueError, EOFError):
        return False


def load_feature_stats(
    path: str | os.PathLike, expect: dict[str, str] | None = None, allow_foreign: bool = False
) -> FeatureStats:
    """Statistics written by :func:`save_feature_stats`, checked against the ``expect``-ed identity.

    ``allow_foreign``: also accept an ``.npz`` with only ``mu`` and ``sigma`` (pytorch-fid ``--save-stats``,
    TTUR's published files); it then takes the expected identity and ``n = 0`` (unknown), on the caller's word.
    """
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise GensrError(f"{p}: not a readable .npz statistics file ({exc})") from None
    if "mu" not in data or "sigma" not in data:
        raise GensrError(f"{p}: no 'mu' and 'sigma' arrays (keys: {', '.join(sorted(data)) or 'none'})")
    try:
        mu, sigma = _check_gaussian(data["mu"], data["sigma"], str(p))
    except ValueError as exc:
        raise GensrError(str(exc)) from None
    if "format" not in data:
        if not (allow_foreign and expect):
            raise GensrError(
                f"{p}: statistics without gensr metadata (which network, weights, resize made them); "
                "refusing them (`gensr fid --foreign-ref-stats` accepts such a file as Inception pool_3 statistics)"
            )
        return FeatureStats(mu, sigma, 0, **{k: expect[k] for k in IDENTITY_FIELDS})
    if str(data["format"]) != STATS_FORMAT:
        raise GensrError(f"{p}: unknown statistics format {str(data['format'])!r} (expected {STATS_FORMAT})")
    stats = FeatureStats(mu, sigma, int(data["n"]), *(str(data[k]) for k in IDENTITY_FIELDS))
    if expect is not None:
        bad = identity_mismatch(stats.identity(), expect)
        if bad:
            raise GensrError(f"{p}: cached statistics were made differently, refusing them ({'; '.join(bad)})")
    return stats


def cached_feature_stats(
    path: str | os.PathLike | None, identity: dict[str, str], compute: Callable[[], FeatureStats]
) -> FeatureStats:
    """Load ``path`` if it exists (its identity must equal ``identity``), else ``compute()`` and save it there.

    ``path`` None: just compute. A cache made with other weights, another extractor or another preprocessing
    is a GensrError (delete it or pick another path), never silently reused or replaced.
    """
    if path is not None and Path(path).exists():
        return load_feature_stats(path, expect=identity)
    stats = compute()
    bad = identity_mismatch(stats.identity(), identity)
    if bad:
        raise ValueError(f"computed statistics do not have the requested identity ({'; '.join(bad)})")
    if path is not None:
        save_feature_stats(path, stats)
    return stats
