r"""The Euler sampler of the CTMC defined by a mixture path and a posterior model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from fm_core.solver._progress import step_progress
from fm_core.solver.solver import Solver
from fm_core.solver.time_grid import fixed_step_grid, resolve_time_grid
from fm_core.utils.backend import check_backend, resolve_backend
from fm_core.utils.checks import check_batch_size, check_same_device, check_tensor
from fm_discrete._checks import (
    check_logits,
    check_probabilities,
    check_tokens,
    check_vocabulary_size,
)
from fm_discrete.path.metric import MetricDiscreteProbPath
from fm_discrete.path.mixture import MixtureDiscreteProbPath
from fm_discrete.solver.guidance import guided_scores
from fm_discrete.solver.step import gumbel_argmax, mixture_euler_step_torch

__all__ = ["MixtureDiscreteEulerSolver"]

_MODEL_OUTPUTS = ("probs", "logits")


@dataclass
class _Plan:
    """What ``sample`` checked and laid out before its first step."""

    times: list[float]
    kappa: list[float] | None
    index: list[int]
    div_free: float | Callable[[float], float]
    p0: Tensor | None
    cdf: Tensor | None
    frozen: Tensor | None
    kernels: object
    dtype: torch.dtype
    generator: torch.Generator | None
    batch: int
    device: torch.device


class MixtureDiscreteEulerSolver(Solver):
    r"""Simulate the CTMC of ``path`` with a posterior model $p_{1|t}(\cdot \mid x_t)$, position by position.

    One step from $t$ to $t' = t+h$ at position $i$ draws $X_1^i \sim p_{1|t}(\cdot \mid X_t)$ and jumps
    to it with probability $a = (\kappa_{t'} - \kappa_t)/(1 - \kappa_t)$, the exact probability that the
    conditional process leaves its source during $[t, t']$ (to first order it is the reference's
    $1 - e^{-h\dot\kappa_t/(1-\kappa_t)}$; it equals 1 on a step that ends at $t=1$, so the last
    step lands on $X_1$ as in the reference).

    Beyond the reference:

    - Gumbel-max categorical draws in float64 by default, chunked: one ``[B, L, V]`` score tensor
      (the model's output) plus O(B·L) and a 32 MiB chunk; no dense one-hot tensors.
    - ``model_output="logits"`` for models returning logits (default ``"probs"``, as the reference).
    - ``fixed_mask``: positions that stay as given in ``x_init`` (prompt, suffix, any pattern);
      ``infill`` builds ``x_init`` and calls ``sample``.
    - ``mask_token``: masked-source fast path; positions no longer masked are decided and skipped.
    - ``div_free`` > 0: the divergence-free corrector (with a mask source: re-masking).
    - ``guidance_scale``: classifier-free guidance in rate space (see ``guided_scores``).
    - Metric paths (``MetricDiscreteProbPath``): each step draws $y \sim p_{1|t}$ and jumps with
      probability $1 - e^{-h\lambda}$ along the kinetic-optimal rates toward $y$ (``_metric_step``);
      guidance builds the marginal rates in full ($O(V^2)$ per position).
    - ``backend``: ``fm_kernels.mixture_euler_step`` on CUDA when available and it keeps the
      solver's guarantees: with ``"auto"`` only for ``dtype_categorical=torch.float32`` and no
      ``generator`` (the kernel draws in float32 from its own seed); float64, the default, uses
      torch.

    After each ``sample``, ``solver.last_nfe`` holds the number of model calls it made (one per
    step, two with guidance).

    Args:
        model: posterior model called as ``model(x=x_t, t=t, **extras)`` -> ``[*x_t.shape, V]``.
        path: the ``MixtureDiscreteProbPath`` or ``MetricDiscreteProbPath`` the model was trained on.
        vocabulary_size: $V$, mask included.
        source_distribution_p: $p_0$, shape ``[V]``, summing to one, on the device of the tokens
            ``sample`` gets; needed for ``div_free`` and ``infill`` (a metric path's is uniform).
        mask_token: the mask id of a mask source; turns on the fast path.
        model_output: ``"probs"`` (default) or ``"logits"``.
        backend: ``"auto"``, ``"torch"`` or ``"triton"``.

    Example:
        >>> path = MixtureDiscreteProbPath(CondOTScheduler())
        >>> model = lambda x, t: torch.zeros(*x.shape, 11)  # uniform logits over 11 tokens
        >>> solver = MixtureDiscreteEulerSolver(model, path, vocabulary_size=11, mask_token=10,
        ...                                     model_output="logits")
        >>> x = solver.sample(torch.full((4, 32), 10), step_size=1 / 64)
        >>> x.shape, solver.last_nfe
        (torch.Size([4, 32]), 64)
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        path: MixtureDiscreteProbPath,
        vocabulary_size: int,
        source_distribution_p: Tensor | None = None,
        *,
        mask_token: int | None = None,
        model_output: str = "probs",
        backend: str = "auto",
    ):
        super().__init__()
        if not callable(model):
            raise TypeError(
                f"model must be callable as model(x=..., t=...), got {type(model).__name__}"
            )
        if not isinstance(path, (MixtureDiscreteProbPath, MetricDiscreteProbPath)):
            raise TypeError(
                "path must be a MixtureDiscreteProbPath or a MetricDiscreteProbPath, "
                f"got {type(path).__name__}"
            )
        self.model = model
        self.path = path
        self.vocabulary_size = check_vocabulary_size(vocabulary_size)
        if isinstance(path, MetricDiscreteProbPath):
            if vocabulary_size != path.vocabulary_size:
                raise ValueError(
                    f"vocabulary_size must equal the metric path's V = {path.vocabulary_size}, "
                    f"got {vocabulary_size}"
                )
            if mask_token is not None:
                raise ValueError("mask_token: a metric path has a uniform source, not a mask")
        if source_distribution_p is not None:
            check_probabilities(source_distribution_p, "source_distribution_p")
            if source_distribution_p.shape != (vocabulary_size,):
                raise ValueError(
                    f"source_distribution_p must have shape [vocabulary_size] = [{vocabulary_size}], "
                    f"got {tuple(source_distribution_p.shape)}"
                )
        self.source_distribution_p = source_distribution_p
        if mask_token is not None:
            if isinstance(mask_token, bool) or not isinstance(mask_token, int):
                raise TypeError(f"mask_token must be an int, got {type(mask_token).__name__}")
            if not 0 <= mask_token < vocabulary_size:
                raise ValueError(
                    f"mask_token must be an id in [0, vocabulary_size={vocabulary_size}), got {mask_token}"
                )
            if (
                source_distribution_p is not None
                and float(source_distribution_p[mask_token]) != 1.0
            ):
                raise ValueError(
                    f"source_distribution_p must be one-hot at mask_token={mask_token} for a mask source"
                )
        self.mask_token = mask_token
        if model_output not in _MODEL_OUTPUTS:
            raise ValueError(f"model_output must be one of {_MODEL_OUTPUTS}, got {model_output!r}")
        self.model_output = model_output
        self.backend = check_backend(backend)
        self.last_nfe = 0

    def _source_p(self, device: torch.device) -> Tensor | None:
        if self.source_distribution_p is not None:
            if self.source_distribution_p.device != device:
                raise ValueError(
                    f"source_distribution_p is on {self.source_distribution_p.device} but the tokens "
                    f"are on {device}: build the solver with source_distribution_p on the tokens' "
                    "device"
                )
            return self.source_distribution_p.to(dtype=torch.float64)
        if isinstance(self.path, MetricDiscreteProbPath):
            return torch.full(
                (self.vocabulary_size,),
                1.0 / self.vocabulary_size,
                dtype=torch.float64,
                device=device,
            )
        if self.mask_token is not None:
            p = torch.zeros(self.vocabulary_size, dtype=torch.float64, device=device)
            p[self.mask_token] = 1.0
            return p
        return None

    def _posterior(self, x: Tensor, t: Tensor, extras: dict, first: bool, name: str) -> Tensor:
        out = self.model(x=x, t=t, **extras)
        self.last_nfe += 1
        if first:
            check_tensor(out, name)
            if out.device != x.device:
                raise ValueError(
                    f"{name} is on {out.device} but x_init is on {x.device}: the model must "
                    "return its output on the tokens' device"
                )
            if out.shape != (*x.shape, self.vocabulary_size):
                raise ValueError(
                    f"{name} must have shape [*x_init.shape, vocabulary_size] = "
                    f"{(*x.shape, self.vocabulary_size)}, got {tuple(out.shape)}"
                )
        # Every step, not only the first (a model can go bad later in the solve): value checks,
        # eager CPU by default, reductions only (no [B, L, V] temporaries), never a GPU sync.
        if self.model_output == "probs":
            check_probabilities(out, f"{name} (model_output='probs')", atol=1e-3)
        else:
            check_logits(out, f"{name} (model_output='logits')")
        return out.reshape(-1, self.vocabulary_size)

    def _kernels(self, x: Tensor, generator, dtype_categorical: torch.dtype):
        """fm_kernels when its fused step runs, else ``None``; checked before any work.

        The kernel draws with Triton's Philox generator in float32, so it can honour neither
        ``generator`` nor ``dtype_categorical=torch.float64`` (the default). ``"auto"`` uses it
        only where it keeps both (no generator, ``dtype_categorical=torch.float32``, CUDA);
        an explicit ``"triton"`` that cannot keep them raises instead of changing the draws.
        """
        if (
            not isinstance(dtype_categorical, torch.dtype)
            or not dtype_categorical.is_floating_point
        ):
            raise TypeError(
                f"dtype_categorical must be a floating torch.dtype, got {dtype_categorical!r}"
            )
        if isinstance(self.path, MetricDiscreteProbPath):
            if self.backend == "triton":
                raise ValueError("backend='triton' has no metric-path step; use 'auto' or 'torch'")
            return None
        keeps = generator is None and dtype_categorical == torch.float32
        if self.backend == "auto" and not keeps:
            return None
        kernels = resolve_backend(self.backend, x)  # "triton": ImportError etc. first
        if kernels is not None and not keeps:
            raise ValueError(
                "backend='triton' draws in float32 with its own seed (fm_kernels."
                "mixture_euler_step): pass dtype_categorical=torch.float32 and no generator, "
                "or use backend='auto' / 'torch' for float64 or seeded draws"
            )
        return kernels

    def _as_probs(self, scores: Tensor) -> Tensor:
        return torch.softmax(scores, dim=-1) if self.model_output == "logits" else scores

    @torch.no_grad()
    def sample(
        self,
        x_init: Tensor,
        step_size: float | None,
        div_free: float | Callable[[float], float] = 0.0,
        dtype_categorical: torch.dtype = torch.float64,
        time_grid: Tensor | None = None,
        return_intermediates: bool = False,
        verbose: bool = False,
        *,
        fixed_mask: Tensor | None = None,
        guidance_scale: float = 0.0,
        unconditional_model_extras: dict | None = None,
        generator: torch.Generator | None = None,
        **model_extras,
    ) -> Tensor:
        r"""Sample from $t$ = ``time_grid[0]`` to ``time_grid[-1]`` (default 0 to 1).

        Args:
            x_init: starting tokens $X_{t_0}$, long, shape ``[B, ...]``, ids in ``[0, V)``.
            step_size: the largest step; ``None`` steps exactly on ``time_grid``.
            div_free: corrector coefficient $c \ge 0$ (or a function of $t$): adds
                $c\,\frac{\dot\kappa_t}{\kappa_t(1-\kappa_t)}\big((1-\kappa_t)p_0 + \kappa_t\delta_{X_1}\big)$
                to the rates (the reference's divergence-free term). Needs a source distribution
                (mixture paths only).
            dtype_categorical: precision of the Gumbel-max draws (float64 by default). The fused
                kernel (``backend``) runs only with ``torch.float32`` and no ``generator``.
            time_grid: increasing times in $[0, 1]$; intermediates are returned at these times.
            return_intermediates: return ``[len(time_grid), B, ...]`` instead of the end state.
            verbose: show a progress bar (tqdm, if installed).
            fixed_mask: bool ``[B, ...]``; ``True`` positions keep their ``x_init`` value.
            guidance_scale: classifier-free guidance scale $w$ (0 = conditional model only).
            unconditional_model_extras: model extras of the unconditional call (e.g. a null label);
                required when ``guidance_scale != 0``.
            generator: optional ``torch.Generator`` on ``x_init``'s device (the torch path only).
            **model_extras: passed to the model (the conditional call).

        Returns:
            Long tensor of the shape of ``x_init`` (or stacked intermediates).
        """
        plan = self._plan(
            x_init,
            step_size,
            div_free,
            dtype_categorical,
            time_grid,
            fixed_mask,
            guidance_scale,
            unconditional_model_extras,
            generator,
        )
        x = x_init.clone()
        flat = x.view(-1)
        self.last_nfe = 0
        saved = [x.clone()] if return_intermediates else []
        progress = step_progress(len(plan.times) - 1, enabled=verbose, desc="discrete Euler")
        for i in range(len(plan.times) - 1):
            scores, are_logits, rate_factor = self._scores(
                x, plan, i, model_extras, unconditional_model_extras, guidance_scale
            )
            if isinstance(self.path, MetricDiscreteProbPath):
                new = self._metric_step(plan, i, flat, scores, are_logits, guidance_scale)
            else:
                new = self._mixture_step(plan, i, flat, scores, are_logits, rate_factor)
            flat.copy_(new)
            if return_intermediates and (i + 1) in plan.index:
                saved.append(x.clone())
            if progress is not None:
                progress.update(1)
        if progress is not None:
            progress.close()
        return torch.stack(saved) if return_intermediates else x

    def _plan(
        self,
        x_init,
        step_size,
        div_free,
        dtype_categorical,
        time_grid,
        fixed_mask,
        guidance_scale,
        unconditional_model_extras,
        generator,
    ) -> _Plan:
        """Check the arguments of ``sample`` (before any work) and lay out the time steps."""
        check_tokens(x_init, "x_init", self.vocabulary_size)
        check_batch_size(x_init, "x_init")
        device = x_init.device
        if fixed_mask is not None:
            check_tensor(fixed_mask, "fixed_mask")
            check_same_device([("x_init", x_init), ("fixed_mask", fixed_mask)])
            if fixed_mask.dtype != torch.bool:
                raise TypeError(f"fixed_mask must be a bool tensor, got {fixed_mask.dtype}")
            if fixed_mask.shape != x_init.shape:
                raise ValueError(
                    f"fixed_mask must have the shape of x_init {tuple(x_init.shape)}, "
                    f"got {tuple(fixed_mask.shape)}"
                )
        if not callable(div_free) and (not isinstance(div_free, (int, float)) or div_free < 0):
            raise ValueError(
                f"div_free must be a non-negative number or a function of t, got {div_free!r}"
            )
        corrected = callable(div_free) or div_free != 0
        if corrected and isinstance(self.path, MetricDiscreteProbPath):
            raise ValueError("div_free: the corrector is defined for mixture paths only; pass 0")
        p0 = self._source_p(device)
        if corrected and p0 is None:
            raise ValueError(
                "div_free != 0 needs source_distribution_p (or mask_token) on the solver"
            )
        if guidance_scale != 0 and unconditional_model_extras is None:
            raise ValueError(
                "unconditional_model_extras is required when guidance_scale != 0 "
                "(the extras of the unconditional call, e.g. {'label': null_label})"
            )
        kernels = self._kernels(x_init, generator, dtype_categorical)
        grid = resolve_time_grid(
            time_grid, (0.0, 1.0), device=torch.device("cpu"), dtype=torch.float64
        )
        if grid[-1] < grid[0]:
            raise ValueError(
                "time_grid must be increasing: the discrete sampler runs forward in time"
            )
        steps, index = fixed_step_grid(grid, step_size)
        kappa = (
            self.path.scheduler(steps).alpha_t.tolist()
            if isinstance(self.path, MixtureDiscreteProbPath)
            else None
        )
        return _Plan(
            times=steps.tolist(),
            kappa=kappa,
            index=index,
            div_free=div_free,
            p0=p0,
            cdf=p0.cumsum(0) if p0 is not None else None,
            frozen=fixed_mask.reshape(-1) if fixed_mask is not None else None,
            kernels=kernels,
            dtype=dtype_categorical,
            generator=generator,
            batch=x_init.shape[0],
            device=device,
        )

    def _scores(self, x, plan, i, extras, uncond_extras, guidance_scale):
        """Posterior scores ``[N, V]`` at step ``i``, whether they are logits, and the guided rate factor."""
        t_vec = torch.full((plan.batch,), plan.times[i], device=plan.device)
        scores = self._posterior(x, t_vec, extras, i == 0, "model output")
        if guidance_scale == 0:
            return scores, self.model_output == "logits", None
        uncond = self._posterior(x, t_vec, uncond_extras, i == 0, "unconditional model output")
        if isinstance(self.path, MetricDiscreteProbPath):
            # The metric rates are linear in the posterior: guide the posterior, clip the rates.
            p_c, p_u = self._as_probs(scores), self._as_probs(uncond)
            return torch.mul(p_c, 1.0 + guidance_scale).sub_(p_u, alpha=guidance_scale), False, None
        q, rate_factor = guided_scores(
            self._as_probs(scores), self._as_probs(uncond), x.view(-1), guidance_scale
        )
        return q, False, rate_factor

    def _mixture_step(self, plan, i, flat, scores, are_logits, rate_factor) -> Tensor:
        """One step of the mixture path: corrector jump, then the jump to a posterior draw."""
        t, k, k_next = plan.times[i], plan.kappa[i], plan.kappa[i + 1]
        c = float(plan.div_free(t) if callable(plan.div_free) else plan.div_free)
        a = 1.0 if k >= 1.0 else min(max((k_next - k) / (1.0 - k), 0.0), 1.0)
        # Corrector first (a Lie splitting), so that the x_1-jump, which has probability 1
        # on a step ending at t = 1, comes last and nothing is left re-noised at the end.
        state = flat
        if c != 0 and k > 0:
            state = _corrector_jump(
                flat, plan.frozen, plan.p0, plan.cdf, c, k, k_next, plan.generator
            )
        # Exact survival of the (1 + c)-scaled x_1-rate over the step; = a when c = 0.
        p_jump = a if c == 0 else 1.0 - (1.0 - a) ** (1.0 + c)
        jump = torch.full(flat.shape, p_jump, dtype=torch.float64, device=flat.device)
        if rate_factor is not None:
            jump = 1.0 - (1.0 - jump).pow(rate_factor.double())
        if self.mask_token is not None:
            jump = jump.masked_fill_(state != self.mask_token, 0.0)
        if plan.frozen is not None:
            jump = jump.masked_fill_(plan.frozen, 0.0)
        if plan.kernels is not None:
            seed = int(torch.randint(0, 2**62, (1,)).item())  # CPU RNG: no device sync
            return plan.kernels.mixture_euler_step(
                scores,
                state,
                jump.float(),
                seed=seed,
                scores_are_logits=are_logits,
                backend="triton",
            )
        return mixture_euler_step_torch(
            scores,
            state,
            jump,
            generator=plan.generator,
            scores_are_logits=are_logits,
            dtype=plan.dtype,
        )

    def _metric_step(self, plan, i, flat, scores, are_logits, guidance_scale) -> Tensor:
        r"""One step of a metric path: rates toward a posterior draw $y$ (or the guided marginal rates).

        Unguided, $y \sim p_{1|t}$ is drawn first and the state jumps with probability
        $1 - e^{-h\lambda}$ to $x \propto u_t(x, z \mid y)$ ($\lambda$ the total rate): the
        expected rate is the marginal one. Guided, the marginal rates of the guided posterior are
        built in full ($O(V^2)$ per position) and clipped at zero. A step that ends at $t = 1$
        lands on the posterior draw ($\beta_1 = \infty$).
        """
        t, t_next = plan.times[i], plan.times[i + 1]
        kw = dict(dtype=plan.dtype, generator=plan.generator)
        guided = guidance_scale != 0
        if guided or t_next >= 1.0:
            weights = scores.clamp_min(0.0) if guided else scores
            y = gumbel_argmax(weights, scores_are_logits=are_logits and not guided, **kw)
        if t_next >= 1.0:
            new = y
        else:
            t_cpu = torch.tensor(t, dtype=torch.float64)
            if guided:
                rates = self.path.posterior_probs_to_velocity(
                    scores.unsqueeze(0), flat.unsqueeze(0), t_cpu.to(flat.device)
                )[0].double()
            else:
                y = gumbel_argmax(scores, scores_are_logits=are_logits, **kw)
                rates = self.path.conditional_velocity(flat, y, t_cpu.to(flat.device))
            rates = rates.scatter(-1, flat.unsqueeze(-1), 0.0).clamp_min_(0.0)
            total = rates.sum(-1)
            jump = -torch.expm1(-(t_next - t) * total)
            new = mixture_euler_step_torch(rates, flat, jump, scores_are_logits=False, **kw)
        if plan.frozen is not None:
            new = torch.where(plan.frozen, flat, new)
        return new

    @torch.no_grad()
    def infill(
        self,
        tokens: Tensor,
        fixed_mask: Tensor,
        step_size: float | None,
        *,
        generator: torch.Generator | None = None,
        **sample_kwargs,
    ) -> Tensor:
        """Fill the positions where ``fixed_mask`` is ``False``; the others keep ``tokens``.

        The free positions start from the source (the mask token, or draws from
        ``source_distribution_p``), then ``sample(x_init, step_size, fixed_mask=fixed_mask, ...)``.

        Args:
            tokens: long ``[B, ...]``; values at free positions are ignored.
            fixed_mask: bool ``[B, ...]``, ``True`` where the token is given (prompt, suffix, ...).
            step_size: as in ``sample``.
            **sample_kwargs: other ``sample`` arguments (``div_free``, ``guidance_scale``, extras).
        """
        check_tokens(tokens, "tokens", self.vocabulary_size)
        check_tensor(fixed_mask, "fixed_mask")
        if fixed_mask.shape != tokens.shape or fixed_mask.dtype != torch.bool:
            raise ValueError(
                f"fixed_mask must be a bool tensor of the shape of tokens {tuple(tokens.shape)}, "
                f"got {fixed_mask.dtype} {tuple(fixed_mask.shape)}"
            )
        p0 = self._source_p(tokens.device)
        if p0 is None:
            raise ValueError("infill needs source_distribution_p or mask_token on the solver")
        noise = torch.multinomial(p0, tokens.numel(), replacement=True, generator=generator)
        x_init = torch.where(fixed_mask, tokens, noise.view_as(tokens))
        return self.sample(
            x_init, step_size, fixed_mask=fixed_mask, generator=generator, **sample_kwargs
        )


def _corrector_jump(
    x: Tensor,
    frozen: Tensor | None,
    p0: Tensor,
    cdf: Tensor,
    c: float,
    k: float,
    k_next: float,
    generator: torch.Generator | None,
) -> Tensor:
    r"""The $p_0$ part of the corrector: rate $c\,\dot\kappa_t/\kappa_t\,p_0(y)$ to $y \ne x$.

    Over the step its survival is $(\kappa_t/\kappa_{t'})^{c(1-p_0(x))}$; it runs before the $X_1$-jump
    of the step. The target $y \sim p_0(\cdot \mid y \ne x)$ is drawn
    by inverse CDF with $x$'s mass cut out: O(B·L) memory, no ``[B, L, V]`` tensor.
    """
    p_x = p0[x]
    prob = 1.0 - torch.pow(
        torch.tensor(k / k_next, dtype=torch.float64, device=x.device), c * (1.0 - p_x)
    )
    u = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator)
    go = u < prob
    if frozen is not None:
        go &= ~frozen
    v = torch.rand(x.shape, dtype=torch.float64, device=x.device, generator=generator) * (1.0 - p_x)
    before = cdf[x] - p_x
    v = torch.where(v < before, v, v + p_x)
    y = torch.searchsorted(cdf, v, right=True).clamp_max_(p0.numel() - 1)
    return torch.where(go, y, x)
