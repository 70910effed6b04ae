"""Growing an SRFlow's K with identity steps: same function, trainable new steps, ``gensr convert --grow-k``."""

from __future__ import annotations

import pytest
import torch

from flow_helpers import perturbed
from gensr.checkpoints.gensr_format import read_checkpoint, save_checkpoint
from gensr.checkpoints.loader import load_model
from gensr.cli import main
from gensr.config import to_dict
from gensr.models.srflow import SRFlowConfig, SRFlowNet
from gensr.models.srflow_grow import grow_srflow, grown_positions, make_identity_step
from gensr.nn.flow import FlowStep


def tiny_model(K: int, **kw) -> SRFlowNet:
    return perturbed(SRFlowNet(SRFlowConfig(nb=2, nf=8, gc=4, K=K, hidden=8, rrdb_blocks=[0, 1], **kw)))


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 3, 16, 24, generator=g)
    lr = torch.nn.functional.avg_pool2d(hr, 4)
    return hr, lr


def test_grown_positions_spread_the_trained_steps():
    assert grown_positions(8, 16) == [0, 2, 4, 6, 8, 10, 12, 14]
    assert grown_positions(8, 12) == [0, 1, 3, 4, 6, 7, 9, 10]
    assert grown_positions(2, 2) == [0, 1]
    with pytest.raises(ValueError, match="can only grow"):
        grown_positions(4, 3)


def test_identity_step_maps_x_to_x_with_zero_logdet():
    torch.manual_seed(0)
    step, template = (perturbed(FlowStep(12, 8, 6, min_scale=0.05)) for _ in range(2))
    make_identity_step(step, template)
    x, cond = torch.randn(2, 12, 5, 7), torch.randn(2, 8, 5, 7)
    y, logdet = step(x, cond)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(logdet, torch.zeros(2), rtol=0, atol=1e-4)
    torch.testing.assert_close(step.inverse(x, cond), x, rtol=0, atol=1e-6)
    # the hidden layers are the template's (trained features), only the last convs were zeroed
    assert torch.equal(step.affine.fAffine[0].weight, template.affine.fAffine[0].weight)
    assert not step.affine.fFeatures[-1].weight.any()


@pytest.mark.parametrize("k_new", [3, 4])
def test_grown_model_computes_the_same_likelihood_and_images(k_new):
    torch.manual_seed(1)
    model = tiny_model(K=2)
    grown = grow_srflow(model, k_new).eval()
    assert grown.config.K == k_new and to_dict(grown.config) == {**to_dict(model.config), "K": k_new}
    hr, lr = _inputs()
    with torch.no_grad():
        z_a, logp_a = model.encode(hr, lr, add_noise=False)
        z_b, logp_b = grown.encode(hr, lr, add_noise=False)
        torch.testing.assert_close(logp_b, logp_a, rtol=1e-5, atol=1e-3)
        for a, b in zip(z_a, z_b, strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
        for heat in (0.0, 0.8):
            g_a, g_b = (torch.Generator().manual_seed(3) for _ in range(2))
            torch.testing.assert_close(
                grown.decode(lr, None, heat, generator=g_b),
                model.decode(lr, None, heat, generator=g_a),
                rtol=1e-4,
                atol=1e-5,
            )
    # the source is untouched; the grown flow has k_new conditional steps on each of its L levels
    assert model.config.K == 2

    def conditional_steps(m: SRFlowNet) -> int:
        return sum(isinstance(x, FlowStep) and x.has_affine for x in m.flowUpsamplerNet.layers)

    assert conditional_steps(grown) == k_new * grown.config.L and conditional_steps(model) == 2 * model.config.L


def test_new_steps_learn():
    """One gradient step on the NLL moves the new steps' zeroed last convs (the identity is not a dead end)."""
    torch.manual_seed(2)
    grown = grow_srflow(tiny_model(K=1), 2).train()
    new_last = grown.flowUpsamplerNet.layers[4].affine.fAffine[-1].weight  # squeeze, 2 transitions, old, new
    assert not new_last.any()
    hr, lr = _inputs()
    _, logp = grown.encode(hr, lr, add_noise=False)
    (-logp.mean()).backward()
    assert new_last.grad is not None and new_last.grad.abs().sum() > 0


def test_grow_refuses_lu_and_shrinking():
    with pytest.raises(ValueError, match="can only grow"):
        grow_srflow(tiny_model(K=3), 2)
    with pytest.raises(ValueError, match="LU"):
        grow_srflow(tiny_model(K=1, lu_decomposed=True), 2)


def test_convert_grow_k(tmp_path, capsys):
    """``gensr convert --grow-k`` writes a deeper model that upscales exactly as its source; bad K is one line."""
    torch.manual_seed(4)
    net = tiny_model(K=2)
    src = save_checkpoint(tmp_path / "flow.safetensors", net.state_dict(), "srflow", to_dict(net.config))
    out = tmp_path / "flow_k4.safetensors"
    assert main(["convert", str(src), "--grow-k", "4", "-o", str(out)]) == 0
    assert "srflow" in capsys.readouterr().out
    grown = load_model(out).eval()
    assert grown.config.K == 4 and read_checkpoint(out).meta["grown_from_K"] == 2
    _, lr = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(grown.decode(lr, None, 0.0), net.decode(lr, None, 0.0), rtol=1e-4, atol=1e-5)
    for k, word in (("2", "more than the model's K"), ("200", "at most 128")):
        assert main(["convert", str(src), "--grow-k", k, "-o", str(tmp_path / "bad.safetensors")]) == 2
        err = capsys.readouterr().err
        assert word in err and err.count("\n") == 1
    assert not (tmp_path / "bad.safetensors").exists()
