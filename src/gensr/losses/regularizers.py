"""BigGAN's orthogonal regularisation (Brock et al. 2019, section 3.1), as a differentiable loss term.

For one weight W reshaped to a matrix of shape (out, -1) (one row per output channel / unit)::

    R_beta(W) = beta * || W W^T ⊙ (1 - I) ||_F^2        (beta = 1e-4 in the paper)

i.e. the squared off-diagonal entries of the row Gram matrix: the rows are pushed towards mutual
orthogonality while their norms are left free (unlike the classic ``||W W^T - I||_F^2``). The paper writes the
Gram as ``W^T W`` with W holding one filter per *column*; with one filter per row, as here, that is ``W W^T``.

Gradient. ``d/dW ||G ⊙ (1 - I)||_F^2 = 4 (G ⊙ (1 - I)) W`` with ``G = W W^T`` (G is symmetric, and W appears
twice in it). BigGAN-PyTorch (``utils.ortho``) does not build the loss: after ``backward`` it adds
``2 beta (G ⊙ (1 - I)) W`` to each weight's gradient, i.e. **half** of the analytic gradient of the paper's
term. Here the term is built and autograd differentiates it, so ``beta`` here = 2 x BigGAN-PyTorch's
``--G_ortho`` for the same update (``beta = 5e-5`` reproduces ``--G_ortho 1e-4`` exactly).

Which weights (:func:`ortho_parameters`): every generator parameter with >= 2 dimensions (conv kernels, the
first linear, the attention convs), except

* embeddings (``nn.Embedding`` weights: the shared class embedding, and in non-shared mode the per-class
  gain/bias tables of each conditional BN): their rows are classes, not filters, and decorrelating classes is
  not what the regulariser is for (BigGAN-PyTorch also exempts the shared embedding);
* the gain/bias linears of the conditional BNs (``ConditionalBatchNorm2d.gain``/``.bias``): they map the
  condition vector (148-d at 128 px) to one modulation per channel (up to 1536 rows), so their rows cannot be
  orthogonal (rank <= condition size) and the penalty would only shrink the class conditioning.
  (BigGAN-PyTorch regularises these; that is a deliberate difference.)

The penalty applies to the raw weights (spectral norm's ``W / sigma`` is not used), as in BigGAN-PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

DEFAULT_ORTHO_BETA = 1e-4


def offdiag_gram_penalty(weight: torch.Tensor) -> torch.Tensor:
    """``|| W W^T ⊙ (1 - I) ||_F^2`` of ``weight`` reshaped to (out, -1); a float32 (or float64) scalar."""
    w = weight.reshape(weight.shape[0], -1)
    if not w.is_floating_point() or w.dtype in (torch.float16, torch.bfloat16):
        w = w.float()
    gram = w @ w.t()
    off = gram - torch.diag_embed(torch.diagonal(gram))
    return (off * off).sum()


def orthogonal_regularization(weights: Iterable[torch.Tensor], beta: float = DEFAULT_ORTHO_BETA) -> torch.Tensor:
    """``beta * sum_W || W W^T ⊙ (1 - I) ||_F^2`` over ``weights`` (each reshaped to (out, -1)).

    Differentiable: add it to the generator loss (or ``backward`` it) so that autograd gives the gradient
    ``4 beta (W W^T ⊙ (1 - I)) W`` per weight. An empty ``weights`` gives 0.
    """
    total: torch.Tensor | None = None
    for w in weights:
        term = offdiag_gram_penalty(w)
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return beta * total


def ortho_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of every weight of ``model`` the orthogonal regulariser applies to (see the module
    docstring): >= 2 dimensions, not an embedding table, not a conditional BN's gain/bias linear."""
    from gensr.nn.norm import ConditionalBatchNorm2d

    excluded: set[int] = set()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            excluded.add(id(module.weight))
        elif isinstance(module, ConditionalBatchNorm2d):
            excluded.update(id(p) for p in (*module.gain.parameters(), *module.bias.parameters()))
    return [
        (name, p) for name, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad and id(p) not in excluded
    ]
