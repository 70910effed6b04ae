"""The small CIFAR classifier and the offline (NOT FID-comparable) measures built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gensr.errors import GensrError
from gensr.metrics import frechet
from gensr.metrics.classifier_metrics import (
    class_accuracy,
    classifier_feature_stats,
    classifier_features,
    classifier_frechet_distance,
    classifier_identity,
    classifier_reference_stats,
)
from gensr.metrics.frechet import feature_statistics, frechet_distance
from gensr.models.classifier import CifarResNet, ClassifierConfig
from gensr.models.registry import arch_of, build_model


def _trained_like(seed: int = 0, **config) -> CifarResNet:
    """A classifier with random weights and non-trivial BatchNorm statistics (as after training)."""
    torch.manual_seed(seed)
    model = CifarResNet(ClassifierConfig(**config))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- network


def test_resnet20_size_shapes_and_penultimate_features():
    model = _trained_like()
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 272_474 and n_params * 4 <= 2 * 1024 * 1024  # <= 2 MB of float32 weights
    assert model.kind == "classifier" and model.num_classes == 10 and model.feature_dim == 64
    x = _images(5, 0)
    feats, logits = model.features(x), model(x)
    assert feats.shape == (5, 64) and logits.shape == (5, 10)
    assert (feats >= 0).all()  # pooled after a ReLU
    torch.testing.assert_close(logits, model.fc(feats))
    with pytest.raises(ValueError, match=r"\(N, 3, 32, 32\)"):
        model(torch.rand(2, 3, 28, 28))


def test_config_through_the_registry():
    model = build_model("cifar_classifier", {"widths": [8, 16], "blocks": 1, "num_classes": 4, "input_size": 16})
    assert arch_of(model) == "cifar_classifier" and model.config.widths == (8, 16)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 4)
    with pytest.raises(GensrError, match="unknown key"):
        build_model("cifar_classifier", {"depth": 20})
    with pytest.raises(GensrError, match="widths"):
        build_model("cifar_classifier", {"widths": []})
    with pytest.raises(GensrError, match="divisible"):
        build_model("cifar_classifier", {"input_size": 30})


def test_gensr_checkpoint_roundtrip(tmp_path):
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.checkpoints.loader import load_model
    from gensr.config import to_dict

    model = _trained_like(blocks=1)
    path = save_checkpoint(tmp_path / "cls.safetensors", model.state_dict(), "cifar_classifier", to_dict(model.config))
    loaded = load_model(path)
    x = _images(3, 1)
    torch.testing.assert_close(loaded(x), model(x))


# ----------------------------------------------------------------------------------------------- accuracy


class _ColourClassifier(nn.Module):
    """Predicts class = round(9 * mean red value): known outputs for any image."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = (x[:, 0].mean(dim=(1, 2)) * 9).round().long()
        return nn.functional.one_hot(cls, 10).float()


def test_class_accuracy_known_predictions_across_batches():
    labels = np.arange(23) % 10
    x = torch.zeros(23, 3, 8, 8)
    x[:, 0] = torch.from_numpy(labels / 9).float().view(-1, 1, 1)
    wrong = [2, 7, 19]
    x[wrong, 0] = 0.0  # these now look like class 0; their labels are 2, 7 and 9
    expected = 1 - len(wrong) / 23
    clf = _ColourClassifier()
    assert class_accuracy(clf, x, labels, batch_size=5) == pytest.approx(expected)
    as_uint8 = (x * 255).round().to(torch.uint8)
    assert class_accuracy(clf, as_uint8, torch.from_numpy(labels), batch_size=4) == pytest.approx(expected)
    nhwc = as_uint8.permute(0, 2, 3, 1).numpy()
    assert class_accuracy(clf, [nhwc[:10], nhwc[10:]], list(labels)) == pytest.approx(expected)
    with pytest.raises(GensrError, match="23 images but 22 labels"):
        class_accuracy(clf, x, labels[:22])


def test_class_accuracy_of_the_resnet_matches_argmax_and_restores_mode():
    model = _trained_like()
    model.train()
    x = _images(12, 2)
    labels = torch.randint(0, 10, (12,), generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        direct = (model(x).argmax(1) == labels).float().mean().item()
    model.train()
    assert class_accuracy(model, x, labels, batch_size=5) == pytest.approx(direct)
    assert model.training  # put back as it was


# ----------------------------------------------------------------------------------------------- Frechet distance


def test_classifier_frechet_distance_uses_the_shared_exact_code(monkeypatch):
    model = _trained_like()
    a, b = _images(16, 3), _images(20, 4) * 0.5
    calls = []
    real = frechet.frechet_distance
    monkeypatch.setattr(frechet, "frechet_distance", lambda *args: calls.append(1) or real(*args))
    d_ab = classifier_frechet_distance(model, a, b, batch_size=7)
    assert calls  # the one implementation shared with FID
    fa, fb = classifier_features(model, a), classifier_features(model, b)
    assert fa.shape == (16, 64) and fa.dtype == np.float64
    sa, sb = feature_statistics(fa, "x", "w", "p"), feature_statistics(fb, "x", "w", "p")
    assert d_ab == pytest.approx(frechet_distance(sa.mu, sa.sigma, sb.mu, sb.sigma), rel=1e-12)
    assert d_ab == pytest.approx(classifier_frechet_distance(model, b, a), rel=1e-9)
    assert d_ab > 0
    assert classifier_frechet_distance(model, a, a) == pytest.approx(0.0, abs=1e-10)


def test_classifier_stats_cache_and_not_comparable_label(tmp_path):
    model = _trained_like()
    ref = _images(10, 5)
    path = tmp_path / "cls_ref.npz"
    stats = classifier_reference_stats(model, ref, cache_path=path)
    assert path.is_file() and stats.n == 10
    again = classifier_reference_stats(model, iter(()), cache_path=path)  # loaded, nothing computed
    assert np.array_equal(again.sigma, stats.sigma)
    assert "NOT comparable" in classifier_identity(model)["extractor"]
    gen = _images(8, 6)
    assert classifier_frechet_distance(model, gen, again) == pytest.approx(
        classifier_frechet_distance(model, gen, ref), rel=1e-12
    )
    other = _trained_like(seed=1)
    with pytest.raises(GensrError, match="refusing"):
        classifier_reference_stats(other, ref, cache_path=path)
    with pytest.raises(GensrError, match="another classifier"):
        classifier_frechet_distance(other, gen, stats)
    assert classifier_feature_stats(model, ref).identity() == stats.identity()
