"""Time fm-kernels against torch eager and torch.compile; report bandwidth and peak memory.

    python benchmarks/kernels.py                      # CUDA: full sizes, markdown table on stdout
    TRITON_INTERPRET=1 python benchmarks/kernels.py --device cpu --interpret   # smoke run, tiny

Times are medians of ``--reps`` runs measured with CUDA events (wall clock in smoke mode).
"bw" is the kernel's analytic byte count divided by its time, as a fraction of a measured
device-to-device copy; "peak" is ``torch.cuda.max_memory_allocated`` above the inputs.
Exits 2 without CUDA unless ``--device cpu --interpret`` is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

GOALS = "fm_loss fwd+bwd: >= 0.8 of copy bandwidth and >= 2x eager; generalized_kl (V=50257, N=8192): peak <= 0.25x eager, time <= 0.7x eager"


def _timer(device, reps, warmup=3):
    def run(fn):
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            if device == "cuda":
                start, end = (
                    torch.cuda.Event(enable_timing=True),
                    torch.cuda.Event(enable_timing=True),
                )
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1e3)
            else:
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return run


def _peak(device, fn):
    if device != "cuda":
        fn()
        return float("nan")
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _copy_bandwidth(device, timer, numel=1 << 28):
    src = torch.empty(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    return 2 * src.nbytes / timer(lambda: dst.copy_(src))


def _cases(device, small):
    """(name, {impl: fn}, analytic bytes of the fused kernel)."""
    import fm_kernels
    from fm_discrete.solver.step import mixture_euler_step_torch
    from fm_kernels import reference

    dt = torch.bfloat16 if device == "cuda" else torch.float32
    esz = torch.finfo(dt).bits // 8
    b, d = (4, 300) if small else (256, 3 * 64 * 64)
    x_0, x_1, out = torch.randn(3, b, d, device=device, dtype=dt)
    coeffs = list(torch.rand(4, b, device=device))
    eager_loss = lambda o: reference.fm_loss(o, x_0, x_1, *coeffs, upcast=False).float()

    def fm_fwd_bwd(loss_fn):
        def run():
            o = out.detach().requires_grad_(True)
            loss_fn(o).backward()

        return run

    compiled_loss = torch.compile(eager_loss) if device == "cuda" else eager_loss
    yield (
        "fm_loss fwd+bwd",
        {
            "eager": fm_fwd_bwd(eager_loss),
            "compile": fm_fwd_bwd(compiled_loss),
            "kernel": fm_fwd_bwd(lambda o: fm_kernels.fm_loss(o, x_0, x_1, *coeffs)),
        },
        4 * b * d * esz,  # read output, x_0, x_1; write grad
    )
    n, v, h = (16, 300, 32) if small else (8192, 50257, 768)
    logits = torch.randn(n, v, device=device, dtype=dt)
    x1, xt = torch.randint(0, v, (2, n), device=device)
    jump = torch.rand(n, device=device)

    def kl_fwd_bwd(loss_fn):
        def run():
            lg = logits.detach().requires_grad_(True)
            loss_fn(lg).backward()

        return run

    eager_kl = lambda lg: reference.generalized_kl(lg, x1, xt, jump)
    yield (
        f"generalized_kl fwd+bwd N={n} V={v}",
        {
            "eager": kl_fwd_bwd(eager_kl),
            "compile": kl_fwd_bwd(torch.compile(eager_kl) if device == "cuda" else eager_kl),
            "kernel": kl_fwd_bwd(lambda lg: fm_kernels.generalized_kl(lg, x1, xt, jump)),
        },
        3 * n * v * esz,  # read logits twice, write grad once
    )
    hidden = torch.randn(n, h, device=device, dtype=dt)
    weight = torch.randn(v, h, device=device, dtype=dt) / h**0.5

    def lin_fwd_bwd(loss_fn):
        def run():
            hh = hidden.detach().requires_grad_(True)
            ww = weight.detach().requires_grad_(True)
            loss_fn(hh, ww).backward()

        return run

    yield (
        f"generalized_kl_linear fwd+bwd N={n} V={v} H={h}",
        {
            "eager": lin_fwd_bwd(lambda hh, ww: reference.generalized_kl(hh @ ww.T, x1, xt, jump)),
            "kernel": lin_fwd_bwd(
                lambda hh, ww: fm_kernels.generalized_kl_linear(hh, ww, x1, xt, jump)
            ),
        },
        3 * n * v * esz,  # the loss kernel's share; the three matmuls are compute-bound
    )
    jp = torch.ones(n, device=device)
    yield (
        f"mixture_euler_step N={n} V={v} (all rows jump)",
        {
            # The torch step the discrete solver runs otherwise (fm-discrete's), with the kernel's
            # float32 draws, dense; fm_kernels.reference draws by inverse CDF (an oracle).
            "eager": lambda: mixture_euler_step_torch(
                logits, xt, jp, dtype=torch.float32, sparse=False
            ),
            "kernel": lambda: fm_kernels.mixture_euler_step(logits, xt, jp, seed=0),
        },
        n * v * esz,  # read the scores once
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--interpret", action="store_true", help="CPU smoke run on tiny shapes")
    parser.add_argument("--reps", type=int, default=50)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "benchmarks/kernels.py needs a CUDA device; for a smoke run use "
            "TRITON_INTERPRET=1 python benchmarks/kernels.py --device cpu --interpret",
            file=sys.stderr,
        )
        return 2
    if args.device == "cpu":
        if not args.interpret or os.environ.get("TRITON_INTERPRET") != "1":
            print(
                "--device cpu needs --interpret and TRITON_INTERPRET=1 in the environment",
                file=sys.stderr,
            )
            return 2
        args.reps = min(args.reps, 3)
    small = args.device == "cpu"
    timer = _timer(args.device, args.reps, warmup=1 if small else 5)
    copy_bw = _copy_bandwidth(args.device, timer, numel=1 << (16 if small else 28))
    name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU (interpreter smoke run)"
    print(f"device: {name}; device-to-device copy: {copy_bw / 1e9:.1f} GB/s; goals: {GOALS}\n")
    print("| case | impl | time (ms) | vs eager | bw / copy | peak extra (MiB) | peak vs eager |")
    print("|---|---|---|---|---|---|---|")
    for case, impls, nbytes in _cases(args.device, small):
        eager_t = eager_mem = None
        for impl, fn in impls.items():
            t = timer(fn)
            mem = _peak(args.device, fn)
            eager_t = eager_t or t
            eager_mem = eager_mem if eager_mem is not None else mem
            bw = nbytes / t / copy_bw if impl == "kernel" else float("nan")
            print(
                f"| {case} | {impl} | {t * 1e3:.3f} | {t / eager_t:.2f}x | {bw:.2f} | "
                f"{mem:.1f} | {mem / eager_mem if eager_mem else float('nan'):.2f}x |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
