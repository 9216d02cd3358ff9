r"""``ODESolver``: sampling and log-likelihoods of a velocity field $\dot x_t = u_t(x_t)$."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from fm_core.solver._front import FlowSolver, divergence_name
from fm_core.solver.divergence import Divergence

__all__ = ["ODESolver"]


class ODESolver(FlowSolver):
    r"""Integrate the flow ODE $\frac{d}{dt} x_t = u_t(x_t)$ of a velocity model.

    The model is called as ``velocity_model(x=x, t=t, **model_extras)`` with ``x`` of shape
    ``[B, ...]`` and ``t`` a **0-dim tensor** (one time for the whole batch; broadcast it inside
    the model, or wrap the model in a ``ModelWrapper`` that does), and must return a tensor of
    ``x``'s shape. Methods (``method=``): ``"euler"`` (order 1), ``"midpoint"`` (2), ``"heun2"``
    (2), ``"rk4"`` (4), adaptive ``"dopri5"`` (5, controlled by ``atol``/``rtol``), and any other
    torchdiffeq method name when torchdiffeq is installed.

    After each call, ``solver.last_nfe`` holds the number of model evaluations it made (forward
    pass only; recomputation in a checkpointed backward pass is not counted).

    Args:
        velocity_model: a callable / ``nn.Module`` taking ``x`` and ``t`` by keyword.

    Example:
        >>> solver = ODESolver(velocity_model=lambda x, t: -x)
        >>> x_1 = solver.sample(torch.randn(8, 2), step_size=0.05, method="midpoint")
        >>> solver.last_nfe
        40
    """

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        x_init: Tensor,
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        enable_grad: bool = False,
        *,
        checkpoint_steps: bool = False,
        gradient: str | None = None,
        verbose: bool = False,
        return_log_prob: bool = False,
        log_p0: Callable[[Tensor], Tensor] | None = None,
        divergence: str | Divergence = "exact",
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        **model_extras,
    ) -> Tensor | tuple[Tensor, Tensor]:
        r"""Integrate from ``x_init`` at ``time_grid[0]`` to ``time_grid[-1]``.

        Args:
            x_init: initial states, e.g. source samples $X_0 \sim p$, shape ``[B, ...]``.
            step_size: largest step of a fixed-step method: each interval of ``time_grid`` is cut
                into equal steps no larger than it, so every grid time is hit exactly. ``None``:
                the steps are the grid's own (required for adaptive methods).
            method: ``"euler"``, ``"midpoint"``, ``"heun2"``, ``"rk4"``, ``"dopri5"`` or a
                torchdiffeq method.
            atol: absolute tolerance of adaptive methods.
            rtol: relative tolerance of adaptive methods.
            time_grid: 1-D strictly monotone times in $[0, 1]$, shape ``[T]``; descending
                integrates backwards. ``None``: ``[0, 1]``. See ``karras_time_grid``.
            return_intermediates: return the states at every time of ``time_grid``.
            enable_grad: record the autograd graph (gradients to ``x_init`` and the model's
                parameters).
            checkpoint_steps: with ``enable_grad``, checkpoint every step so that activation
                memory does not grow with the number of steps; each step's model evaluations run
                again in backward (about 1.3x the time of a plain backward). Off by default.
                The same as ``gradient="checkpoint"``.
            gradient: how gradients flow with ``enable_grad``: ``"backprop"`` (default: autograd
                records every step), ``"checkpoint"`` (see ``checkpoint_steps``) or
                ``"adjoint"`` (the discrete adjoint of a fixed-step method: no activation is
                kept; the gradients equal backprop's to rounding; memory holds about
                $2\sqrt N$ states for $N$ steps, at the cost of recomputing them once;
                gradients reach ``x_init``, the parameters of a ``nn.Module`` model and tensor
                ``model_extras`` that require grad — not other tensors a plain function closes
                over).
            verbose: show a progress bar over the steps (tqdm, if installed).
            return_log_prob: also return $\log p_1$ of the samples, integrating the divergence
                along the same solve (as ``sample_with_likelihood``); needs ``log_p0``.
            log_p0: log-density of the source, ``[B, ...] -> [B]`` (with ``return_log_prob``).
            divergence: ``"exact"`` (default here), ``"hutchinson"``, or a ``Divergence`` holding
                all the divergence settings (with ``return_log_prob``).
            num_probes: Hutchinson probes (with ``return_log_prob``).
            probe: ``"rademacher"`` or ``"gaussian"`` (with ``return_log_prob``).
            generator: ``torch.Generator`` for the probes.
            divergence_chunk_size: as in ``compute_likelihood``.
            **model_extras: forwarded to the model (labels, conditioning, guidance scale).

        Returns:
            The end state, shape ``[B, ...]``, or with ``return_intermediates`` the states at the
            grid times, shape ``[T, B, ...]``; with ``return_log_prob``, the pair
            ``(samples, log_p1)`` with ``log_p1`` of shape ``[B]``.

        Raises:
            ValueError: an unknown method, a bad grid, a missing step size, an empty batch, a
                model output whose shape is not ``x_init``'s (checked at the first evaluation),
                or (a value check, eager mode on CPU by default: see
                docs/fm-core/validation.md) a non-finite end state, i.e. the model returned NaN
                or inf. On a GPU or under ``torch.compile`` such samples come back unchecked
                unless ``fm_core.utils.value_checks("always")`` (one sync, at the end).
        """
        grad = self._gradient(gradient, checkpoint_steps)
        if return_log_prob:
            if log_p0 is None:
                raise ValueError("return_log_prob=True needs log_p0, the source log-density")
            return self._sample_with_likelihood(
                x_init, log_p0, return_intermediates, enable_grad, step_size=step_size,
                method=method, atol=atol, rtol=rtol, time_grid=time_grid, gradient=grad,
                verbose=verbose, divergence=divergence, num_probes=num_probes, probe=probe,
                generator=generator, divergence_chunk_size=divergence_chunk_size, proju=False,
                move_options={}, model_extras=model_extras,
            )  # fmt: skip
        return self._sample(
            x_init, step_size=step_size, method=method, atol=atol, rtol=rtol,
            time_grid=time_grid, return_intermediates=return_intermediates,
            enable_grad=enable_grad, gradient=grad, verbose=verbose, proju=False,
            move_options={}, model_extras=model_extras,
        )  # fmt: skip

    # ------------------------------------------------------------------ likelihoods
    def compute_likelihood(
        self,
        x_1: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        exact_divergence: bool = False,
        enable_grad: bool = False,
        *,
        divergence: str | Divergence | None = None,
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        checkpoint_steps: bool = False,
        gradient: str | None = None,
        verbose: bool = False,
        **model_extras,
    ) -> tuple[Tensor, Tensor]:
        r"""Log-likelihood of ``x_1`` by integrating backwards from $t=1$ to $t=0$.

        Uses the instantaneous change of variables
        $\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot u_t(x_t)\,dt$, integrating the
        state and $\int \nabla\cdot u$ together.

        Args:
            x_1: target samples, shape ``[B, ...]``.
            log_p0: log-density of the source, ``[B, ...] -> [B]`` (exactly ``[B]``: a ``[B, 1]`` or
                0-dim result raises ``ValueError`` rather than broadcasting).
            step_size: as in ``sample``.
            method: as in ``sample``.
            atol: as in ``sample``.
            rtol: as in ``sample``.
            time_grid: must start at 1 and end at 0; ``None``: ``[1, 0]``.
            return_intermediates: return the states at the grid times (``[T, B, ...]``).
            exact_divergence: the reference's switch: ``True`` for ``divergence="exact"``,
                ``False`` (default) for ``"hutchinson"``.
            enable_grad: gradients of ``log_p1`` to the model's parameters and ``x_1``
                (maximum-likelihood training).
            divergence: ``"exact"`` or ``"hutchinson"``, or a ``Divergence`` holding all the
                divergence settings; overrides ``exact_divergence``.
            num_probes: Hutchinson probes $K$ (drawn once, reused at every step).
            probe: ``"rademacher"`` or ``"gaussian"``.
            generator: ``torch.Generator`` for the probes.
            divergence_chunk_size: basis vectors per batched backward pass of the exact
                divergence (bounds memory; default keeps about $2^{24}$ elements per chunk).
            checkpoint_steps: checkpoint every step (bounded activation memory). Off by default:
                here each step computes the divergence with ``autograd.grad``, which makes the
                checkpoint recompute the step already in the forward pass (midpoint, 20 steps:
                100 model calls instead of 40 forward, 140 in all), so training through the
                likelihood runs several times slower. Turn it on only when memory is the limit.
            gradient: ``"backprop"``, ``"checkpoint"`` or ``"adjoint"`` (as in ``sample``; the
                adjoint suits maximum-likelihood training of a CNF with many steps).
            verbose: show a progress bar over the steps.
            **model_extras: forwarded to the model.

        Returns:
            ``(x_0, log_p1)``: the source point, shape ``[B, ...]`` (or ``[T, B, ...]`` with
            ``return_intermediates``), and $\log p_1(x_1)$, shape ``[B]``, in float64 for
            float64 input, else float32.

        Example:
            >>> solver = ODESolver(lambda x, t: torch.zeros_like(x))  # the identity flow
            >>> log_p0 = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)  # N(0, I) in 2-D
            >>> x_1 = torch.zeros(1, 2)
            >>> x_0, log_p1 = solver.compute_likelihood(x_1, log_p0, step_size=0.05,
            ...                                         exact_divergence=True)
            >>> log_p1  # log N(0; 0, I) = -log(2 pi)
            tensor([-1.8379])
        """
        return self._likelihood(
            x_1, log_p0, return_intermediates, enable_grad, step_size=step_size, method=method,
            atol=atol, rtol=rtol, time_grid=time_grid,
            gradient=self._gradient(gradient, checkpoint_steps), verbose=verbose,
            divergence=divergence_name(divergence, exact_divergence), num_probes=num_probes,
            probe=probe, generator=generator, divergence_chunk_size=divergence_chunk_size,
            proju=False, move_options={}, model_extras=model_extras,
        )  # fmt: skip

    def sample_with_likelihood(
        self,
        x_init: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        atol: float = 1e-5,
        rtol: float = 1e-5,
        time_grid: Tensor | Sequence[float] | None = None,
        return_intermediates: bool = False,
        exact_divergence: bool = True,
        enable_grad: bool = False,
        *,
        divergence: str | Divergence | None = None,
        num_probes: int = 1,
        probe: str = "rademacher",
        generator: torch.Generator | None = None,
        divergence_chunk_size: int | None = None,
        checkpoint_steps: bool = False,
        gradient: str | None = None,
        verbose: bool = False,
        **model_extras,
    ) -> tuple[Tensor, Tensor]:
        r"""Samples and their model log-likelihood in one forward integration from $t=0$ to 1.

        $\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot u_t(x_t)\,dt$ along the same
        trajectory that produces the sample; no second (backward) solve is needed. Arguments as
        in ``compute_likelihood`` (the exact divergence is the default here); ``time_grid``
        must start at 0 and end at 1 (``None``: ``[0, 1]``).

        Returns:
            ``(x_1, log_p1)``: samples ``[B, ...]`` (or ``[T, B, ...]``) and $\log p_1$, ``[B]``.

        Example:
            >>> solver = ODESolver(lambda x, t: -x)  # contracts by e^{-t}: log p rises by D
            >>> log_p0 = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
            >>> x_0 = torch.zeros(1, 2)
            >>> x_1, log_p1 = solver.sample_with_likelihood(x_0, log_p0, step_size=0.05)
            >>> log_p1  # -log(2 pi) + 2
            tensor([0.1621])
        """
        return self._sample_with_likelihood(
            x_init, log_p0, return_intermediates, enable_grad, step_size=step_size,
            method=method, atol=atol, rtol=rtol, time_grid=time_grid,
            gradient=self._gradient(gradient, checkpoint_steps), verbose=verbose,
            divergence=divergence_name(divergence, exact_divergence), num_probes=num_probes,
            probe=probe, generator=generator, divergence_chunk_size=divergence_chunk_size,
            proju=False, move_options={}, model_extras=model_extras,
        )  # fmt: skip

    def log_prob(
        self,
        x_1: Tensor,
        log_p0: Callable[[Tensor], Tensor],
        step_size: float | None,
        method: str = "euler",
        **kwargs,
    ) -> Tensor:
        r"""$\log p_1(x_1)$, shape ``[B]``: ``compute_likelihood(...)[1]`` (same arguments).

        Example:
            >>> solver = ODESolver(lambda x, t: torch.zeros_like(x))
            >>> log_p0 = lambda x: -0.5 * (x**2).sum(-1) - math.log(2 * math.pi)
            >>> solver.log_prob(torch.zeros(1, 2), log_p0, step_size=0.5, exact_divergence=True)
            tensor([-1.8379])
        """
        return self.compute_likelihood(x_1, log_p0, step_size, method, **kwargs)[1]
