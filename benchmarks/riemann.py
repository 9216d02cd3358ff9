"""Geodesic path sampling on S^2: reference flow_matching vs fm_riemann, side by side.

Run: python benchmarks/riemann.py [--batch 65536] [--repeats 30]
Prints a markdown table of median times (ms) and ratios; both run in this one process.
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

    rows = [
        ("reference GeodesicProbPath (vmap + jvp)", lambda: ref.sample(x_0, x_1, t)),
        ("fm_riemann GeodesicProbPath (closed form)", lambda: ours.sample(x_0, x_1, t)),
        ("fm_riemann GeodesicProbPath (autodiff)", lambda: ours_ad.sample(x_0, x_1, t)),
    ]
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


if __name__ == "__main__":
    main()
