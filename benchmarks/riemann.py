"""S^2 benchmarks, side by side in one process: geodesic path sampling (reference flow_matching
vs fm_riemann) and exact likelihood (fm_riemann vs riemannian-fm's vmap-of-jacrev divergence).

Run: python benchmarks/riemann.py [--batch 65536] [--repeats 30] [--no-compile] [--no-likelihood]
Prints markdown tables of median times (ms) and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument("--no-likelihood", dest="likelihood", action="store_false")
    parser.add_argument("--lik-batch", type=int, default=2048)
    parser.add_argument("--lik-steps", type=int, default=10)
    args = parser.parse_args()

    from flow_matching.path import GeodesicProbPath as RefPath
    from flow_matching.path.scheduler import CondOTScheduler as RefScheduler
    from flow_matching.utils.manifolds import Sphere as RefSphere

    from fm_core.path.scheduler import CondOTScheduler
    from fm_riemann import GeodesicProbPath, Sphere

    torch.manual_seed(0)
    b = args.batch
    x_0 = torch.nn.functional.normalize(torch.randn(b, 3), dim=-1)
    x_1 = torch.nn.functional.normalize(torch.randn(b, 3), dim=-1)
    t = torch.rand(b)

    ref = RefPath(RefScheduler(), RefSphere())
    ours = GeodesicProbPath(CondOTScheduler(), Sphere())
    ours_ad = GeodesicProbPath(CondOTScheduler(), Sphere(), velocity="autodiff")

    with torch.no_grad():
        a, c = ref.sample(x_0, x_1, t), ours.sample(x_0, x_1, t)
        err_x = (a.x_t - c.x_t).abs().max().item()
        err_v = (a.dx_t - c.dx_t).abs().max().item()

    from fm_riemann._checks import check_on_manifold

    sphere = Sphere()

    def previous() -> None:  # the closed form before the slerp fast path (commit a5ddb18)
        ours.assert_sample_shape(x_0, x_1, t)
        check_on_manifold(sphere, x_0, "x_0")
        check_on_manifold(sphere, x_1, "x_1")
        sphere.geodesic_point_and_velocity(x_0, x_1, t[:, None])

    rows = [
        ("reference GeodesicProbPath (vmap + jvp)", lambda: ref.sample(x_0, x_1, t)),
        ("fm_riemann GeodesicProbPath (closed form, eager)", lambda: ours.sample(x_0, x_1, t)),
        ("fm_riemann previous closed form (geoopt check + fused)", previous),
        ("fm_riemann GeodesicProbPath (autodiff)", lambda: ours_ad.sample(x_0, x_1, t)),
    ]
    if args.compile:
        compiled = torch.compile(ours.sample, fullgraph=True)
        rows.insert(
            2, ("fm_riemann GeodesicProbPath, torch.compile", lambda: compiled(x_0, x_1, t))
        )
    results = []
    with torch.no_grad():
        for name, fn in rows:
            results.append((name, median_ms(fn, args.repeats)))
    base = results[0][1]
    print(
        f"S^2 in R^3, batch {b}, float32, CPU, {torch.get_num_threads()} threads, "
        f"median of {args.repeats}"
    )
    print(f"max |x_t diff| = {err_x:.2e}, max |dx_t diff| = {err_v:.2e} (ours vs reference)\n")
    print("| implementation | median ms | speed-up vs reference |")
    print("|---|---:|---:|")
    for name, ms in results:
        print(f"| {name} | {ms:.2f} | {base / ms:.1f}x |")
    if args.likelihood:
        likelihood_table(args.lik_batch, args.lik_steps, max(3, args.repeats // 10))


class _MLP(torch.nn.Module):
    def __init__(self, width: int = 256):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(4, width), torch.nn.SiLU(), torch.nn.Linear(width, width),
            torch.nn.SiLU(), torch.nn.Linear(width, width), torch.nn.SiLU(),
            torch.nn.Linear(width, 3),
        )  # fmt: skip

    def forward(self, x, t):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.net(torch.cat([x, t[:, None].to(x)], -1))


def likelihood_table(batch: int, steps: int, repeats: int) -> None:
    """Exact log-likelihood on S^2 (rk4, ``steps`` steps): ours vs vmap(jacrev) divergence.

    The baseline is riemannian-fm's method (Chen & Lipman's code computes the divergence as the
    trace of the tangent-projected Jacobian from ``torch.func.vmap(torch.func.jacrev(...))``),
    written here from its description on the same rk4 grid with ``projx`` after each step.
    """
    import math

    from torch.func import jacrev, vmap

    from fm_riemann import ProjectToTangent, RiemannianODESolver, Sphere

    torch.manual_seed(0)
    sphere = Sphere()
    model = ProjectToTangent(_MLP(), sphere)
    solver = RiemannianODESolver(sphere, model)
    x_1 = torch.nn.functional.normalize(torch.randn(batch, 3), dim=-1)
    log_unif = -math.log(4 * math.pi)

    def ours():
        return solver.compute_likelihood(
            x_1, lambda z: torch.full(z.shape[:1], log_unif), 1.0 / steps,
            method="rk4", exact_divergence=True,
        )[1]  # fmt: skip

    def one(x, t):  # one point [3], scalar t -> tangent velocity [3]
        return model(x=x[None], t=t.reshape(1))[0]

    def field(x, t):
        tt = t.expand(())
        jac = vmap(jacrev(one), in_dims=(0, None))(x, tt)  # [B, 3, 3]
        proj = torch.eye(3) - x[:, :, None] * x[:, None, :]  # P_x
        return vmap(one, in_dims=(0, None))(x, tt), torch.einsum("bij,bji->b", proj, jac)

    def vmap_jacrev():
        x, int_div, h = x_1, torch.zeros(batch), -1.0 / steps
        for i in range(steps):
            t = torch.tensor(1.0 + i * h)
            k1, d1 = field(x, t)
            k2, d2 = field(sphere.projx(x + 0.5 * h * k1), t + 0.5 * h)
            k3, d3 = field(sphere.projx(x + 0.5 * h * k2), t + 0.5 * h)
            k4, d4 = field(sphere.projx(x + h * k3), t + h)
            x = sphere.projx(x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))
            # d/dt log p_t(x_t) = -div u_t: integrating from t = 1 down to 0 adds h * div (h < 0)
            int_div = int_div + h / 6 * (d1 + 2 * d2 + 2 * d3 + d4)
        return log_unif + int_div

    with torch.no_grad():
        a, b = ours(), vmap_jacrev()
    rows = [("fm_riemann compute_likelihood(exact_divergence=True)", ours),
            ("vmap(jacrev) divergence (riemannian-fm's method)", vmap_jacrev)]  # fmt: skip
    results = [(name, median_ms(fn, repeats, warmup=1)) for name, fn in rows]
    print(
        f"\nExact log-likelihood on S^2: MLP 4-256-256-256-3 (ProjectToTangent), batch {batch}, "
        f"rk4 with {steps} steps, median of {repeats}; max |log p diff| = {(a - b).abs().max():.2e}\n"
    )
    print("| implementation | median ms | speed-up vs vmap(jacrev) |")
    print("|---|---:|---:|")
    base = results[1][1]
    for name, ms in results:
        print(f"| {name} | {ms:.1f} | {base / ms:.2f}x |")


if __name__ == "__main__":
    main()
