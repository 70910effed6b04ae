"""FID / IS: the TF Inception (random weights in the official key layout), IS, the exact Frechet distance,
cached statistics, agreement with torch-fidelity when it is installed, and `gensr fid` end to end."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from gensr.errors import GensrError
from gensr.metrics import frechet
from gensr.metrics.frechet import (
    FeatureStats,
    cached_feature_stats,
    feature_statistics,
    frechet_distance,
    load_feature_stats,
    save_feature_stats,
)
from gensr.metrics.inception import (
    fid_from_stats,
    fid_statistics,
    inception_identity,
    inception_outputs,
    inception_score,
    reference_stats,
)
from gensr.nn.inception import (
    WEIGHTS_ENV,
    InceptionV3FID,
    check_inception_state_dict,
    expected_shapes,
    resize_bilinear_tf1,
    resolve_weights_path,
    weights_digest,
)

# ----------------------------------------------------------------------------------------------- random weights


def _units() -> list[tuple[str, int, int, tuple[int, int]]]:
    """(prefix, in, out, kernel) of every conv+BN unit of the 2015-12-05 graph, under torchvision's names.

    Written from the TF graph's description (torch-fidelity's converter table), independently of gensr.nn.inception.
    """
    one, three = (1, 1), (3, 3)
    u = [
        ("Conv2d_1a_3x3", 3, 32, three),
        ("Conv2d_2a_3x3", 32, 32, three),
        ("Conv2d_2b_3x3", 32, 64, three),
        ("Conv2d_3b_1x1", 64, 80, one),
        ("Conv2d_4a_3x3", 80, 192, three),
    ]
    for m, cin, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        u += [
            (f"{m}.branch1x1", cin, 64, one),
            (f"{m}.branch5x5_1", cin, 48, one),
            (f"{m}.branch5x5_2", 48, 64, (5, 5)),
        ]
        u += [(f"{m}.branch3x3dbl_1", cin, 64, one), (f"{m}.branch3x3dbl_2", 64, 96, three)]
        u += [(f"{m}.branch3x3dbl_3", 96, 96, three), (f"{m}.branch_pool", cin, pool, one)]
    u += [("Mixed_6a.branch3x3", 288, 384, three), ("Mixed_6a.branch3x3dbl_1", 288, 64, one)]
    u += [("Mixed_6a.branch3x3dbl_2", 64, 96, three), ("Mixed_6a.branch3x3dbl_3", 96, 96, three)]
    for m, c in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        u += [(f"{m}.branch1x1", 768, 192, one), (f"{m}.branch7x7_1", 768, c, one)]
        u += [(f"{m}.branch7x7_2", c, c, (1, 7)), (f"{m}.branch7x7_3", c, 192, (7, 1))]
        u += [(f"{m}.branch7x7dbl_1", 768, c, one), (f"{m}.branch7x7dbl_2", c, c, (7, 1))]
        u += [(f"{m}.branch7x7dbl_3", c, c, (1, 7)), (f"{m}.branch7x7dbl_4", c, c, (7, 1))]
        u += [(f"{m}.branch7x7dbl_5", c, 192, (1, 7)), (f"{m}.branch_pool", 768, 192, one)]
    u += [("Mixed_7a.branch3x3_1", 768, 192, one), ("Mixed_7a.branch3x3_2", 192, 320, three)]
    u += [("Mixed_7a.branch7x7x3_1", 768, 192, one), ("Mixed_7a.branch7x7x3_2", 192, 192, (1, 7))]
    u += [("Mixed_7a.branch7x7x3_3", 192, 192, (7, 1)), ("Mixed_7a.branch7x7x3_4", 192, 192, three)]
    for m, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        u += [(f"{m}.branch1x1", cin, 320, one), (f"{m}.branch3x3_1", cin, 384, one)]
        u += [(f"{m}.branch3x3_2a", 384, 384, (1, 3)), (f"{m}.branch3x3_2b", 384, 384, (3, 1))]
        u += [(f"{m}.branch3x3dbl_1", cin, 448, one), (f"{m}.branch3x3dbl_2", 448, 384, three)]
        u += [(f"{m}.branch3x3dbl_3a", 384, 384, (1, 3)), (f"{m}.branch3x3dbl_3b", 384, 384, (3, 1))]
        u += [(f"{m}.branch_pool", cin, 192, one)]
    return u


def random_inception_state_dict(seed: int = 0, counters: bool = False) -> dict[str, torch.Tensor]:
    """Every tensor of pytorch-fid's pt_inception-2015-12-05 file, random (He-scaled convs, sane BN statistics).

    ``counters``: also the ``num_batches_tracked`` buffers a torchvision-built module would save.
    """
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    for prefix, cin, cout, (kh, kw) in _units():
        sd[f"{prefix}.conv.weight"] = torch.randn(cout, cin, kh, kw, generator=g) * (2.0 / (cin * kh * kw)) ** 0.5
        sd[f"{prefix}.bn.weight"] = torch.rand(cout, generator=g) * 0.5 + 0.75
        sd[f"{prefix}.bn.bias"] = torch.randn(cout, generator=g) * 0.1
        sd[f"{prefix}.bn.running_mean"] = torch.randn(cout, generator=g) * 0.1
        sd[f"{prefix}.bn.running_var"] = torch.rand(cout, generator=g) + 0.5
        if counters:
            sd[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(0)
    sd["fc.weight"] = torch.randn(1008, 2048, generator=g) / 2048**0.5
    sd["fc.bias"] = torch.randn(1008, generator=g)
    return sd


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("inception") / "pt_inception-2015-12-05-6726825d.pth"
    torch.save(random_inception_state_dict(), path)
    return path


@pytest.fixture(scope="module")
def net(weights_file) -> InceptionV3FID:
    return InceptionV3FID(weights_file)


def _images(n: int, seed: int, h: int = 32, w: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def outputs(net):
    """Pool features and logits of 6 images (the expensive part, shared)."""
    return inception_outputs(net, _images(6, 1), batch_size=4)


# ----------------------------------------------------------------------------------------------- network + weights


def test_layout_has_the_472_official_keys():
    shapes = expected_shapes()
    sd = random_inception_state_dict()
    assert len(shapes) == 472 and list(shapes) == list(sd)
    assert shapes == {k: tuple(v.shape) for k, v in sd.items()}
    assert sum(torch.Size(s).numel() for s in shapes.values()) == 23_885_392


def test_features_shapes_and_batch_independence(net, outputs):
    pool, logits = outputs
    assert pool.shape == (6, 2048) and logits.shape == (6, 1008)
    assert pool.dtype == np.float32 and np.isfinite(pool).all() and np.isfinite(logits).all()
    assert (pool >= 0).all() and pool.std(axis=0).mean() > 0  # post-ReLU averages that depend on the image
    # unbiased logits: fc without its bias
    np.testing.assert_allclose(logits, pool @ net.fc.weight.numpy().T, rtol=1e-4, atol=1e-4)
    one_pool, one_logits = inception_outputs(net, torch.from_numpy(_images(6, 1)[4:5]).permute(0, 3, 1, 2))
    np.testing.assert_allclose(one_pool[0], pool[4], rtol=1e-5, atol=1e-5)
    assert not any(p.requires_grad for p in net.parameters()) and not net.train().training


def test_tf_graph_quirks(net):
    """BN eps 1e-3; padding-excluding 3x3 average pools; the 2015-12-05 graph max-pools in Mixed_7c."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 94 and all(m.eps == 1e-3 for m in bns)
    ones = torch.ones(1, 1, 5, 5)
    pooled_7b, pooled_7c = net.Mixed_7b.pool(ones * 2), net.Mixed_7c.pool(torch.arange(25.0).view(1, 1, 5, 5))
    assert torch.equal(pooled_7b, ones * 2)  # border windows average only pixels inside the image
    assert pooled_7c[0, 0, 0, 0] == 6 and pooled_7c[0, 0, 4, 4] == 24  # a max, not an average
    x = torch.rand(1, 192, 35, 35)
    manual = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
    ref = net.Mixed_5b.branch_pool(manual)
    torch.testing.assert_close(net.Mixed_5b(x)[:, -32:], ref)


def test_preprocess_range_and_input_check(net):
    x = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 4, 4).contiguous()
    y = net.preprocess(x)
    assert y.shape == (1, 3, 299, 299)
    assert y[0, :, 100, 100].tolist() == [-1.0, 0.0, 127 / 128]
    with pytest.raises(ValueError, match="uint8"):
        net.preprocess(x.float())


def test_weights_from_env_and_missing(monkeypatch, weights_file, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(weights_file))
    assert resolve_weights_path() == weights_file
    assert resolve_weights_path(str(weights_file)) == weights_file
    monkeypatch.delenv(WEIGHTS_ENV)
    with pytest.raises(GensrError) as exc:
        resolve_weights_path(None)
    assert WEIGHTS_ENV in str(exc.value) and "--inception-weights" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(GensrError, match="not found"):
        InceptionV3FID(tmp_path / "nope.pth")
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(GensrError, match="not a readable Inception weights file"):
        InceptionV3FID(bad)


def test_counters_accepted_and_digest_ignores_container():
    plain = random_inception_state_dict()
    with_counters = random_inception_state_dict(counters=True)
    assert len(with_counters) == 472 + 94
    checked = check_inception_state_dict(with_counters)
    assert list(checked) == list(plain)
    assert weights_digest(plain) == weights_digest(with_counters) == weights_digest(checked)
    assert weights_digest(plain) != weights_digest(random_inception_state_dict(seed=1))


def test_missing_unexpected_and_misshapen_keys_are_listed():
    sd = random_inception_state_dict()
    missing = dict(sd)
    del missing["Mixed_6c.branch7x7dbl_4.bn.running_var"]
    with pytest.raises(GensrError, match=r"missing 1 key\(s\): Mixed_6c\.branch7x7dbl_4\.bn\.running_var"):
        check_inception_state_dict(missing)
    extra = {**sd, "Mixed_5b.extra.weight": torch.zeros(1)}
    with pytest.raises(GensrError, match=r"unexpected 1 key\(s\): Mixed_5b\.extra\.weight"):
        check_inception_state_dict(extra)
    stray_counter = {**sd, "fc.num_batches_tracked": torch.tensor(0)}  # not a BatchNorm
    with pytest.raises(GensrError, match="fc.num_batches_tracked"):
        check_inception_state_dict(stray_counter)
    torchvision_like = {**sd, "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    torchvision_like["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    with pytest.raises(GensrError, match="torchvision's ImageNet inception_v3"):
        check_inception_state_dict(torchvision_like)
    shape = {**sd, "fc.bias": torch.zeros(1000)}
    with pytest.raises(GensrError, match=r"fc\.bias \(1000,\) != \(1008,\)"):
        check_inception_state_dict(shape)
    with pytest.raises(GensrError, match="module."):
        check_inception_state_dict({f"module.{k}": v for k, v in sd.items()})


# ----------------------------------------------------------------------------------------------- TF1 resize


def _tf1_resize_reference(img: np.ndarray, oh: int, ow: int) -> np.ndarray:
    """Per-pixel loops of TF 1.x resize_bilinear(align_corners=False) in float32 (H, W)."""
    h, w = img.shape
    sy, sx = np.float32(h / oh), np.float32(w / ow)
    out = np.zeros((oh, ow), np.float32)
    for i in range(oh):
        y = np.float32(i) * sy
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - np.float32(y0)
        for j in range(ow):
            x = np.float32(j) * sx
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, w - 1), x - np.float32(x0)
            top = img[y0, x0] + (img[y0, x1] - img[y0, x0]) * fx
            bottom = img[y1, x0] + (img[y1, x1] - img[y1, x0]) * fx
            out[i, j] = top + (bottom - top) * fy
    return out


def test_resize_tf1_known_values_and_reference():
    row = torch.tensor([[[[0.0, 10.0]]]])
    # TF1 (no half-pixel centres): positions 0, 0.5, 1, 1.5 -> the last one clamps to the edge
    assert resize_bilinear_tf1(row, (1, 4)).flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in (((5, 7), (11, 13)), ((13, 9), (4, 6)), ((3, 3), (299, 299))):
        img = rng.integers(0, 256, (h, w)).astype(np.float32)
        got = resize_bilinear_tf1(torch.from_numpy(img)[None, None], (oh, ow))[0, 0].numpy()
        np.testing.assert_allclose(got, _tf1_resize_reference(img, oh, ow), rtol=0, atol=1e-4)
    x = torch.rand(2, 3, 6, 5)
    assert torch.equal(resize_bilinear_tf1(x, (6, 5)), x)


# ----------------------------------------------------------------------------------------------- IS


def _is_by_hand(logits: np.ndarray, splits: int) -> list[float]:
    """exp(E_x KL(p(y|x) || p(y))) per split, written out naively."""
    n = len(logits)
    out = []
    for i in range(splits):
        part = logits[i * n // splits : (i + 1) * n // splits].astype(np.float64)
        p = np.exp(part) / np.exp(part).sum(axis=1, keepdims=True)
        py = p.mean(axis=0)
        out.append(np.exp(np.mean([np.sum(pi * (np.log(pi) - np.log(py))) for pi in p])))
    return out


def test_inception_score_of_identical_images_is_one(net, outputs):
    _, logits = outputs
    same = np.repeat(logits[:1], 10, axis=0)
    assert inception_score(same) == (1.0, 0.0)
    # identical images give identical logits through the network
    x = np.repeat(_images(1, 5), 2, axis=0)
    _, two = inception_outputs(net, x)
    assert np.array_equal(two[0], two[1])


def test_inception_score_formula_splits_and_shuffle():
    rng = np.random.default_rng(0)
    # confident predictions: each split of 2 samples sees 2 different classes -> IS 2 per split
    labels = np.array([0, 1] * 10)
    confident = np.full((20, 8), -30.0)
    confident[np.arange(20), labels] = 30.0
    mean, std = inception_score(confident, splits=10, shuffle=False)
    assert mean == pytest.approx(2.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)
    logits = rng.normal(0, 3, (23, 1008)).astype(np.float32)
    by_hand = _is_by_hand(logits, 10)
    assert inception_score(logits, shuffle=False) == pytest.approx((np.mean(by_hand), np.std(by_hand)), rel=1e-10)
    # shuffling = torch-fidelity's convention: RandomState(2020).permutation(N) before splitting
    perm = np.random.RandomState(2020).permutation(23)
    assert inception_score(logits) == inception_score(logits[perm], shuffle=False)
    assert inception_score(logits) != inception_score(logits, shuffle=False)
    with pytest.raises(GensrError, match="at least 10 images"):
        inception_score(logits[:9])


# ----------------------------------------------------------------------------------------------- Frechet distance


def _closed_form(mu1, a, mu2, b):
    """FID of Gaussians with commuting covariances Q diag(a) Q^T, Q diag(b) Q^T."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def test_frechet_closed_forms():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expect = _closed_form(mu1, a, mu2, b)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expect, rel=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expect, rel=1e-10)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(expect, rel=1e-10)
    a[:3] = 0.0  # singular covariances
    b[1:4] = 0.0
    singular = _closed_form(mu1, a, mu2, b)
    assert frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T) == pytest.approx(singular, rel=1e-9)
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == pytest.approx(5)
    with pytest.raises(ValueError, match="dimensions differ"):
        frechet_distance(mu1, s1, mu2[:3], s2[:3, :3])


def test_frechet_general_matrices_against_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    rng = np.random.default_rng(1)
    d = 12
    x, y = rng.normal(size=(40, d)), rng.normal(size=(30, d)) @ rng.normal(size=(d, d))
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    mu1, mu2 = x.mean(0), y.mean(0)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-9)


def test_frechet_rank_deficient_is_stable_and_symmetric():
    rng = np.random.default_rng(2)
    d = 300
    a = rng.normal(size=(5, d)) * rng.uniform(0.1, 10, d)
    b = rng.normal(size=(7, d)) + 0.3
    sa, sb = feature_statistics(a, "x", "w", "p"), feature_statistics(b, "x", "w", "p")
    scale = np.trace(sa.sigma)
    assert abs(frechet_distance(sa.mu, sa.sigma, sa.mu, sa.sigma)) < 1e-10 * scale
    d_ab = frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma)
    assert d_ab == pytest.approx(frechet_distance(sb.mu, sb.sigma, sa.mu, sa.sigma), rel=1e-9)
    # the exact value from the sample space: tr sqrt(S_a S_b) = nuclear norm of A_c^T B_c / sqrt((na-1)(nb-1))
    ac, bc = a - a.mean(0), b - b.mean(0)
    nuclear = np.linalg.svd(ac @ bc.T, compute_uv=False).sum() / np.sqrt(4 * 6)
    exact = np.sum((sa.mu - sb.mu) ** 2) + np.trace(sa.sigma) + np.trace(sb.sigma) - 2 * nuclear
    assert d_ab == pytest.approx(exact, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_through_the_network(net, outputs, monkeypatch):
    calls = []
    real = frechet.frechet_distance
    monkeypatch.setattr(frechet, "frechet_distance", lambda *a: calls.append(1) or real(*a))
    stats = fid_statistics(net, outputs[0])
    assert stats.n == 6 and stats.mu.dtype == np.float64 and stats.sigma.shape == (2048, 2048)
    value = fid_from_stats(stats, stats)
    assert 0.0 <= value < 1e-8 * np.trace(stats.sigma) and calls  # the one shared implementation


# ----------------------------------------------------------------------------------------------- cached statistics


def test_stats_cache_roundtrip_and_refusals(tmp_path):
    rng = np.random.default_rng(3)
    ident = {"extractor": "inception-v3-tf-2015-12-05:pool_3", "weights": "0123abcd", "preprocess": "p"}
    computed = []

    def compute():
        computed.append(1)
        return feature_statistics(rng.normal(size=(9, 4)), **ident)

    path = tmp_path / "ref_stats.npz"
    first = cached_feature_stats(path, ident, compute)
    second = cached_feature_stats(path, ident, compute)
    assert len(computed) == 1 and second.n == 9
    assert np.array_equal(first.mu, second.mu) and np.array_equal(first.sigma, second.sigma)
    with np.load(path, allow_pickle=False) as z:
        assert {"mu", "sigma", "n", "extractor", "weights", "preprocess", "format"} <= set(z.files)
    with pytest.raises(GensrError, match="weights: '0123abcd' != 'ffff'"):
        cached_feature_stats(path, {**ident, "weights": "ffff"}, compute)
    with pytest.raises(GensrError, match="output exists"):
        save_feature_stats(path, first)
    foreign = tmp_path / "fid_stats_cifar10_train.npz"
    np.savez(foreign, mu=first.mu, sigma=first.sigma)
    with pytest.raises(GensrError, match="without gensr metadata"):
        load_feature_stats(foreign, expect=ident)
    assert load_feature_stats(foreign, expect=ident, allow_foreign=True).identity() == ident
    with pytest.raises(GensrError, match="different features"):
        fid_from_stats(first, FeatureStats(first.mu, first.sigma, 9, ident["extractor"], "ffff", "p"))


def test_reference_stats_with_the_network(net, tmp_path):
    path = tmp_path / "ref.npz"
    imgs = _images(3, 7)
    stats = reference_stats(net, imgs, cache_path=path)
    assert stats.identity() == inception_identity(net) and stats.n == 3
    again = reference_stats(net, iter(()), cache_path=path)  # read from the cache: nothing to compute
    assert np.array_equal(again.sigma, stats.sigma)


# ----------------------------------------------------------------------------------------------- torch-fidelity


def _is_tf_module(name: str) -> bool:
    return name == "torch_fidelity" or name.startswith("torch_fidelity.")


@pytest.fixture
def torch_fidelity():
    """torch-fidelity's Inception, IS and FID modules, or skip. Without torchvision its package ``__init__``
    cannot run, so the torchvision-free modules are then loaded under a bare package stub; every
    ``torch_fidelity*`` entry of ``sys.modules`` is put back as it was afterwards."""
    if importlib.util.find_spec("torch_fidelity") is None:
        pytest.skip("torch-fidelity is not installed")
    before = {k: v for k, v in sys.modules.items() if _is_tf_module(k)}
    try:
        try:
            import torch_fidelity  # noqa: F401
        except ImportError:  # no torchvision
            for key in [k for k in sys.modules if _is_tf_module(k)]:
                del sys.modules[key]
            pkg = types.ModuleType("torch_fidelity")
            pkg.__path__ = list(importlib.util.find_spec("torch_fidelity").submodule_search_locations)
            utils = types.ModuleType("torch_fidelity.utils")  # the metric modules import these names from it
            for name in (
                "extract_featuresdict_from_input_id_cached",
                "create_feature_extractor",
                "resolve_feature_extractor",
                "resolve_feature_layer_for_metric",
                "get_cacheable_input_name",
                "cache_lookup_one_recompute_on_miss",
            ):
                setattr(utils, name, None)
            sys.modules.update({"torch_fidelity": pkg, "torch_fidelity.utils": utils})
        yield [
            importlib.import_module(f"torch_fidelity.{m}")
            for m in ("feature_extractor_inceptionv3", "metric_isc", "metric_fid")
        ]
    finally:
        for key in [k for k in sys.modules if _is_tf_module(k)]:
            del sys.modules[key]
        sys.modules.update(before)


@pytest.mark.slow
def test_agrees_with_torch_fidelity(torch_fidelity, monkeypatch, weights_file, net):
    fe, isc, fidm = torch_fidelity
    real_load = torch.load

    def weights_only_load(*args, **kwargs):  # torch-fidelity asks for a full unpickle; we never allow one
        kwargs["weights_only"] = True
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", weights_only_load)
    ref = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"], str(weights_file))
    monkeypatch.setattr(torch, "load", real_load)
    g = torch.Generator().manual_seed(4)
    a = torch.randint(0, 256, (6, 3, 37, 45), dtype=torch.uint8, generator=g)
    b = torch.randint(0, 256, (6, 3, 37, 45), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        (ref_a, ref_la), (ref_b, _) = ref(a), ref(b)
    ours_a, ours_la = inception_outputs(net, a)
    ours_b, _ = inception_outputs(net, b)
    np.testing.assert_allclose(ours_a, ref_a.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours_la, ref_la.numpy(), rtol=1e-5, atol=1e-5)
    ref_is = isc.isc_features_to_metric(ref_la, splits=3)
    ours_is = inception_score(ours_la, splits=3)
    assert ours_is[0] == pytest.approx(ref_is["inception_score_mean"], rel=1e-4)
    assert ours_is[1] == pytest.approx(ref_is["inception_score_std"], rel=1e-4, abs=1e-9)
    stats = [fidm.fid_features_to_statistics(f) for f in (ref_a, ref_b)]
    ref_fid = fidm.fid_statistics_to_metric(*stats, False)["frechet_inception_distance"]
    ours = [fid_statistics(net, f) for f in (ours_a, ours_b)]
    ours_fid = fid_from_stats(*ours)
    assert ours_fid == pytest.approx(ref_fid, rel=1e-4)
    assert fid_from_stats(ours[1], ours[0]) == pytest.approx(ours_fid, rel=1e-9)  # symmetric


# ----------------------------------------------------------------------------------------------- gensr fid


def gensr(*args, env_weights: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != WEIGHTS_ENV}
    env["OMP_NUM_THREADS"] = "1"
    if env_weights is not None:
        env[WEIGHTS_ENV] = str(env_weights)
    return subprocess.run(
        [sys.executable, "-m", "gensr", "fid", *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )


def _error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.startswith("gensr: error:")]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]
    return lines[0]


def _png_folder(folder: Path, images: np.ndarray) -> Path:
    from gensr.io import write_image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        write_image(folder / f"{i:03d}.png", img)
    return folder


def _in_process(capsys, monkeypatch, *args) -> subprocess.CompletedProcess:
    """`gensr fid ARGS` through gensr.cli.main in this process (same code path as the console script)."""
    from gensr.cli import main

    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    capsys.readouterr()
    rc = main(["fid", *map(str, args)])
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, rc, out.out, out.err)


def test_cli_missing_weights_is_one_line(tmp_path):
    gen = tmp_path / "gen.npz"
    np.savez(gen, x=_images(3, 0))
    _error(gensr(gen, "--ref", gen), WEIGHTS_ENV, "--inception-weights")


def test_cli_bad_inputs(tmp_path, weights_file, capsys, monkeypatch):
    gen = tmp_path / "gen.npz"
    np.savez(gen, x=_images(3, 0))
    w = ["--inception-weights", weights_file]

    def fid(*args):
        return _in_process(capsys, monkeypatch, *args, *w)

    _error(_in_process(capsys, monkeypatch, gen, "--ref", gen), WEIGHTS_ENV, "--inception-weights")
    (tmp_path / "empty").mkdir()
    _error(fid(tmp_path / "empty", "--ref", gen), "no images")
    no_x = tmp_path / "no_x.npz"
    np.savez(no_x, images=_images(3, 0))
    _error(fid(no_x, "--ref", gen), "no 'x' array", "images")
    wrong = tmp_path / "float.npz"
    np.savez(wrong, x=np.zeros((3, 8, 8, 3), np.float32))
    _error(fid(wrong, "--ref", gen), "uint8 (N, H, W, 3)")
    _error(fid(gen, "--ref", tmp_path / "missing"), "does not exist")
    _error(fid(gen, "--ref", gen, "--is"), "needs >= 10 images")
    _error(fid(gen, "--ref", gen, "--batch-size", "0"), "--batch-size")
    stats = tmp_path / "stats.npz"
    np.savez(stats, mu=np.zeros(4), sigma=np.eye(4))
    _error(fid(stats, "--ref", gen), "statistics file")
    _error(fid(gen, "--ref", stats, "--save-ref-stats", tmp_path / "s.npz"), "needs reference images")
    _error(fid(gen, "--ref", stats), "without gensr metadata")
    mixed = _png_folder(tmp_path / "mixed", _images(2, 0))
    from gensr.io import write_image

    write_image(mixed / "002.png", _images(1, 0, 16, 16)[0])
    _error(fid(mixed, "--ref", gen), "002.png", "one size")


@pytest.mark.slow
def test_cli_fid_is_json_and_cached_reference(tmp_path, weights_file, net):
    gen_imgs, ref_imgs = _images(4, 10), _images(5, 11, 24, 24)
    gen = tmp_path / "gen.npz"
    np.savez(gen, x=gen_imgs)
    ref_dir = _png_folder(tmp_path / "ref", ref_imgs)
    stats_path, out_json = tmp_path / "ref_stats.npz", tmp_path / "fid.json"
    first_json = tmp_path / "fid_first.json"
    first = gensr(
        gen,
        "--ref",
        ref_dir,
        "--save-ref-stats",
        stats_path,
        "--is",
        "--splits",
        "2",
        "--json",
        first_json,
        env_weights=weights_file,
    )
    assert first.returncode == 0, first.stderr
    expect_fid = fid_from_stats(
        fid_statistics(net, inception_outputs(net, gen_imgs)[0]),
        fid_statistics(net, inception_outputs(net, ref_imgs)[0]),
    )
    fid_line = next(ln for ln in first.stdout.splitlines() if ln.startswith("FID:"))
    assert float(fid_line.split()[1]) == pytest.approx(expect_fid, abs=1e-4)
    assert "IS:" in first.stdout
    second = gensr(gen, "--ref", stats_path, "--json", out_json, "--inception-weights", weights_file)
    assert second.returncode == 0, second.stderr
    doc = json.loads(out_json.read_text())
    # The cached statistics give the first run's FID exactly; against this process's own features only to
    # float rounding (another thread count sums the convolutions in another order).
    assert doc["fid"] == json.loads(first_json.read_text())["fid"]
    assert doc["fid"] == pytest.approx(expect_fid, rel=1e-6) and doc["n_gen"] == 4 and doc["n_ref"] == 5
    assert doc["settings"]["weights_digest"] == net.weights_digest
    _error(gensr(gen, "--ref", stats_path, "--json", out_json, env_weights=weights_file), "output exists")
    other = tmp_path / "other.pth"
    torch.save(random_inception_state_dict(seed=5), other)
    _error(gensr(gen, "--ref", stats_path, "--inception-weights", other), "refusing", "weights")
