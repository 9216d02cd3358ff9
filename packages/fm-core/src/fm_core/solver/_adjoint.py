r"""The discrete adjoint of a fixed-step solve: gradients in memory that does not grow with the steps.

Backpropagation through $N$ steps keeps every model evaluation's activations: memory grows by
the model's activations per step. The discrete adjoint runs the forward solve with autograd off
and walks the steps backwards: for step $n$ it re-evaluates $y_{n+1} = \Phi(y_n)$ under autograd
and takes one vector-Jacobian product $a_n = a_{n+1}^\top \partial\Phi/\partial y_n$,
accumulating $a_{n+1}^\top \partial\Phi/\partial\theta$ into the parameters' gradients. The
gradients are those of backpropagation through the same steps, to floating-point rounding (the
same operations in another order).

The walk needs every $y_n$. Keeping them all would grow memory by one state per step, so the
forward solve keeps only every $K$-th state, $K = \lceil\sqrt N\,\rceil$ (and the last segment
whole), and the backward walk recomputes each segment's states from its first one, without a
graph, just before it needs them: at most about $2\sqrt N$ states are alive at once, never the
model's activations, for one extra model step per step (about a quarter more time than keeping
every state).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fm_core.solver._progress import step_progress

__all__ = ["adjoint_solve"]


def adjoint_solve(f, y0, method, coefficients, index, move, params, verbose=False):
    """Fixed-step solve whose backward pass is the discrete adjoint; the states at ``index``."""
    n_state = len(y0)
    params = tuple(params)
    run = (f, method, coefficients, index, move, n_state, verbose)
    flat = _AdjointSolve.apply(run, *y0, *params)
    kept = [tuple(flat[k * n_state : (k + 1) * n_state]) for k in range(len(index) - 1)]
    return [tuple(y0), *kept]


class _AdjointSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run, *inputs: Tensor):
        f, method, coefficients, index, move, n_state, verbose = run
        y = tuple(inputs[:n_state])
        n_steps = len(coefficients)
        stride = _segment_length(n_steps)
        last = (n_steps - 1) // stride * stride  # the first step of the last segment
        keep, wanted = set(index[1:]), {}
        checkpoints = {0: y}  # step -> state: every stride-th state, and the last segment whole
        bar = step_progress(n_steps, enabled=verbose)
        with torch.no_grad():
            for n, c in enumerate(coefficients):
                y = method.step(f, y, c, move)
                if n + 1 in keep:
                    wanted[n + 1] = y
                if (n + 1) % stride == 0 or n + 1 >= last:
                    checkpoints[n + 1] = y
                if bar is not None:
                    bar.update()
        if bar is not None:
            bar.close()
        ctx.run = run
        ctx.checkpoints, ctx.stride = checkpoints, stride
        ctx.param_inputs = inputs[n_state:]
        return tuple(s for k in index[1:] for s in wanted[k])

    @staticmethod
    def backward(ctx, *grads: Tensor):
        f, method, coefficients, index, move, n_state, _ = ctx.run
        params = ctx.param_inputs
        # The cotangent of each kept state enters when the walk reaches its step.
        incoming = {k: grads[i * n_state : (i + 1) * n_state] for i, k in enumerate(index[1:])}
        adj = tuple(torch.zeros_like(s) for s in ctx.checkpoints[len(coefficients)])
        param_grads = [torch.zeros_like(p) if p.requires_grad else None for p in params]
        wants = [p.requires_grad for p in params]
        for n in range(len(coefficients) - 1, -1, -1):
            y_n = _state_at(ctx, n, f, method, coefficients, move)
            if n + 1 in incoming:
                adj = tuple(a + g for a, g in zip(adj, incoming[n + 1], strict=True))
            with torch.enable_grad():
                y_n = tuple(s.detach().requires_grad_(True) for s in y_n)
                y_next = method.step(f, y_n, coefficients[n], move)
                targets = [*y_n, *(p for p, w in zip(params, wants, strict=True) if w)]
                got = torch.autograd.grad(list(y_next), targets, adj, allow_unused=True)
            adj = tuple(
                torch.zeros_like(y) if g is None else g
                for g, y in zip(got[:n_state], y_n, strict=True)
            )
            rest = iter(got[n_state:])
            for i, w in enumerate(wants):
                if w:
                    g = next(rest)
                    if g is not None:
                        param_grads[i] = param_grads[i] + g
        ctx.checkpoints = None
        return (None, *adj, *param_grads)


def _segment_length(n_steps: int) -> int:
    r"""$\lceil\sqrt N\,\rceil$: the steps between two kept states of the forward solve."""
    return max(1, math.isqrt(max(n_steps - 1, 0)) + 1)


def _state_at(ctx, n: int, f, method, coefficients, move):
    """$y_n$ for the backward walk: kept, or recomputed (with its segment) from the kept state.

    The walk goes down one step at a time, so when $y_n$ is missing the states of its whole
    segment are recomputed at once from the segment's first state and kept until the walk has
    passed them; the states the walk has passed are dropped.
    """
    kept = ctx.checkpoints
    kept.pop(n + 1, None)  # the walk is past y_{n+1}
    if n not in kept:
        start = n // ctx.stride * ctx.stride
        y = kept[start]
        with torch.no_grad():
            for m in range(start, n):
                y = method.step(f, y, coefficients[m], move)
                kept[m + 1] = y
    return kept[n]


def adjoint_params(model: object, extras: dict) -> tuple[Tensor, ...]:
    """The tensors a solve's gradient flows to: the model's parameters and tensor extras.

    The model's parameters are found on an ``nn.Module``, on the module of a bound method, and
    in the closure of a plain function (modules and tensors that require grad it closes over,
    one level deep); a tensor reached any other way gets no gradient from the adjoint.
    """
    found: dict[int, Tensor] = {}

    def add(obj: object) -> None:
        if isinstance(obj, torch.nn.Module):
            for p in obj.parameters():
                if p.requires_grad:
                    found.setdefault(id(p), p)
        elif isinstance(obj, Tensor) and obj.requires_grad:
            found.setdefault(id(obj), obj)

    add(model)
    add(getattr(model, "__self__", None))
    for cell in getattr(model, "__closure__", None) or ():
        try:
            add(cell.cell_contents)
        except ValueError:  # pragma: no cover - an empty cell
            pass
    for value in extras.values():
        add(value)
    return tuple(found.values())
