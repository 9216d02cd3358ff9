"""Minibatch OT couplings: fm_core (torch) vs torchcfm's OTPlanSampler (POT on the CPU).

Same inputs for both: x_0 ~ N(0, I), x_1 ~ N(2, I) (flattened D = 2 or 3*32*32), batch 256 and
1024. Times are the median of --repeats calls of the full pairing (cost matrix, plan, pairs).
"Cost" is the plan's expected squared distance per pair, <pi, C> with pi summing to 1, in
float64 (for an exact plan: the mean over its B pairs; torchcfm's plan from get_map, ours from the
permutation or SinkhornOTCoupling.plan), so sampling noise does not enter it.
Sinkhorn on both sides uses reg = 0.05 on the cost divided by its maximum
(torchcfm's normalize_cost=True), since with raw costs POT's sinkhorn underflows at D = 3072.

Run:  python benchmarks/couplings.py [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torchcfm.optimal_transport import OTPlanSampler

from fm_core.coupling import ExactOTCoupling, SinkhornOTCoupling


def _median_time(repeats, fn, *args, **kwargs):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _plan_cost(plan, x_0, x_1):
    cost = torch.cdist(x_0.flatten(1).double(), x_1.flatten(1).double()) ** 2
    return (torch.as_tensor(plan, dtype=torch.float64) * cost).sum().item()


def _our_plan(coupling, x_0, x_1):
    if isinstance(coupling, SinkhornOTCoupling):
        return coupling.plan(x_0, x_1)
    index_1 = coupling(x_0, x_1).index_1
    plan = torch.zeros(len(x_0), len(x_1), dtype=torch.float64)
    plan[torch.arange(len(x_0)), index_1] = 1.0 / len(x_0)
    return plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    rows = []
    for batch in (256, 1024):
        for shape in ((2,), (3, 32, 32)):
            g = torch.Generator().manual_seed(0)
            x_0 = torch.randn(batch, *shape, generator=g)
            x_1 = torch.randn(batch, *shape, generator=g) + 2.0
            dim = x_0[0].numel()
            cases = {
                "exact (auto: scipy on CPU)": (ExactOTCoupling(), OTPlanSampler("exact")),
                "exact (auction)": (ExactOTCoupling(solver="auction"), OTPlanSampler("exact")),
                "sinkhorn": (
                    SinkhornOTCoupling(reg=0.05),
                    OTPlanSampler("sinkhorn", reg=0.05, normalize_cost=True),
                ),
            }
            for method, (ours, theirs) in cases.items():
                gen = torch.Generator().manual_seed(1)
                t_ours, _ = _median_time(args.repeats, ours, x_0, x_1, generator=gen)
                t_ref, _ = _median_time(args.repeats, theirs.sample_plan, x_0, x_1)
                c_ours = _plan_cost(_our_plan(ours, x_0, x_1), x_0, x_1)
                c_ref = _plan_cost(theirs.get_map(x_0, x_1), x_0, x_1)
                rows.append((method, batch, dim, t_ours, t_ref, c_ours, c_ref))
                print(rows[-1], flush=True)

    print()
    print(
        "| method | B | D | fm_core (s) | torchcfm (s) | time ratio ours/torchcfm | fm_core cost | torchcfm cost | cost ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for method, batch, dim, t_o, t_r, c_o, c_r in rows:
        print(
            f"| {method} | {batch} | {dim} | {t_o:.4f} | {t_r:.4f} | {t_o / t_r:.2f} | "
            f"{c_o:.6g} | {c_r:.6g} | {c_o / c_r:.6f} |"
        )
    print("\n(independent pairing: expected cost 6 * D per pair)")


if __name__ == "__main__":
    main()
