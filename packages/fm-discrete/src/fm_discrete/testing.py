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

__all__ = ["ExactFactorisedPosterior", "ExactJointPosterior", "mixture_conditional"]


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


class ExactJointPosterior(nn.Module):
    r"""The exact per-position posterior of any target over an enumerable set of sequences.

    For a target $q$ over the rows of ``states`` (``[S, L]``) and a path whose conditional
    $p_t(x^i \mid x_1^i)$ factorises over positions,

    $$p(x_1^i = a \mid x_t) \propto \sum_{s:\, s^i = a} q(s) \prod_j p_t(x_t^j \mid s^j),$$

    by brute force over the $S$ states (small $V$ and $L$ only). Its CTMC reproduces $q$ exactly
    in continuous time, correlations between positions included.

    Args:
        q: target probabilities ``[S]``.
        states: the sequences ``[S, L]``.
        conditional: ``(x_1 [S, L], t [S]) -> [S, L, V]``, the path's $p_t(\cdot \mid x_1)$
            (e.g. ``MetricDiscreteProbPath.probabilities``, or ``mixture_conditional``).
        vocabulary_size: $V$.
        output: ``"probs"`` or ``"logits"``.
    """

    def __init__(
        self, q: Tensor, states: Tensor, conditional, vocabulary_size: int, output="probs"
    ):
        super().__init__()
        self.q, self.states, self.conditional = q.double(), states, conditional
        self.vocabulary_size, self.output = vocabulary_size, output

    def forward(self, x: Tensor, t: Tensor, **extras) -> Tensor:
        n_states, length = self.states.shape
        vocab = self.vocabulary_size
        # Every sequence x_t could be is one of V^L: compute each posterior once, then index.
        every = torch.cartesian_prod(*[torch.arange(vocab)] * length).reshape(-1, length)
        code = (x * vocab ** torch.arange(length - 1, -1, -1)).sum(-1)
        onehot = torch.nn.functional.one_hot(self.states, vocab).double()
        out = torch.empty(x.shape[0], length, vocab, dtype=torch.float64)
        for b_t in t.double().unique():
            rows = (t.double() == b_t).nonzero().squeeze(-1)
            cond = self.conditional(self.states, b_t.expand(n_states))  # [S, L, V]
            lik = torch.ones(every.shape[0], n_states, dtype=torch.float64)
            for j in range(length):
                lik = lik * cond[:, j, :].T[every[:, j]]  # [V^L, S]: p_t(x^j | s^j)
            post = torch.einsum("ns,slv->nlv", lik * self.q, onehot)
            total = post.sum(-1, keepdim=True)
            post = torch.where(total > 0, post / total.clamp_min(1e-300), 1.0 / vocab)
            out[rows] = post[code[rows]]
        return out.log().float() if self.output == "logits" else out.float()


def mixture_conditional(path: MixtureDiscreteProbPath, p0: Tensor):
    r"""$p_t(\cdot \mid x_1) = \kappa_t \delta_{x_1} + (1 - \kappa_t) p_0$ as a ``conditional`` for ``ExactJointPosterior``."""

    def conditional(x_1: Tensor, t: Tensor) -> Tensor:
        k = path.scheduler(t.double()).alpha_t.reshape(-1, 1, 1)
        onehot = torch.nn.functional.one_hot(x_1, p0.numel()).double()
        return k * onehot + (1 - k) * p0.double()

    return conditional
