r"""Closed-form test fixtures: a factorised target and its exact posterior on the mixture path.

For a target $q(x) = \prod_i q_i(x^i)$ and a source $p_0$ applied per position, the posterior of the
mixture path factorises too, and by Bayes

$$p(x_1^i = a \mid x_t) \propto q_i(a)\,\big(\kappa_t\,\delta_{a}(x_t^i) + (1-\kappa_t)\,p_0(x_t^i)\big).$$

A model returning it makes the sampler reproduce $q$ and makes the mask-source ELBO tight.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fm_discrete.path.mixture import MixtureDiscreteProbPath

__all__ = ["ExactFactorisedPosterior"]


class ExactFactorisedPosterior(nn.Module):
    """The exact posterior of a factorised target, as a model ``(x [B, L], t [B]) -> [B, L, V]``.

    Args:
        q: per-position target probabilities, ``[L, V]`` (rows sum to one).
        p0: source probabilities, ``[V]``.
        path: the mixture path ($\\kappa_t$).
        output: ``"probs"`` or ``"logits"`` (log-probabilities; ``-inf`` where zero).

    Example:
        >>> path = MixtureDiscreteProbPath(CondOTScheduler())
        >>> q = torch.tensor([[0.3, 0.7, 0.0]])
        >>> model = ExactFactorisedPosterior(q, torch.tensor([0.0, 0.0, 1.0]), path)
        >>> model(torch.tensor([[2]]), torch.tensor([0.5]))
        tensor([[[0.3000, 0.7000, 0.0000]]])
    """

    def __init__(self, q: Tensor, p0: Tensor, path: MixtureDiscreteProbPath, output: str = "probs"):
        super().__init__()
        self.q, self.p0, self.path, self.output = q.double(), p0.double(), path, output

    def forward(self, x: Tensor, t: Tensor, **extras) -> Tensor:
        k = self.path.scheduler(t.double().reshape(-1)).alpha_t.reshape(-1, 1, 1)
        onehot = torch.nn.functional.one_hot(x, self.q.shape[-1]).double()
        w = self.q.unsqueeze(0) * (k * onehot + (1 - k) * self.p0[x].unsqueeze(-1))
        # States the path cannot reach (e.g. a data token at t = 0 under a mask source) stay put.
        total = w.sum(-1, keepdim=True)
        p = torch.where(total > 0, w / total.clamp_min(1e-12), onehot)
        return p.log().float() if self.output == "logits" else p.float()
