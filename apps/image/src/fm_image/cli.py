"""``fm-image``: train | sample | evaluate | demo | finetune | inpaint.

Every bad input (an unknown option, a bad value, a missing or corrupt data folder, an unknown or
incompatible run directory) ends with ONE line on stderr and exit code 2, before anything in an
existing run is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fm_core.training import CLIParser, exit_process, explicit_options, run_cli
from fm_image.config import (
    DISCRETE_PATHS,
    INPAINT_GUIDANCE_SCALE,
    INPAINT_START_TIME,
    INPAINT_TEMPERATURE,
    OBJECTIVES,
    REFLOW_LOSSES,
    SCHEDULERS,
    TIME_SAMPLERS,
    TrainConfig,
)
from fm_image.data import DATASETS
from fm_image.demo import DEMO
from fm_image.models import PRESETS

__all__ = ["main"]

PROG = "fm-image"
DEFAULTS = TrainConfig()


def _train_args(p: argparse.ArgumentParser, *, with_out: bool = True) -> None:
    """Every ``TrainConfig`` option, by group (add a new option to the group it belongs to)."""
    if with_out:
        p.add_argument("--out", required=True, help="run directory (an existing run is resumed)")
    _data_model_args(p)
    _optimizer_args(p)
    _objective_args(p)
    _run_args(p)


def _data_model_args(p: argparse.ArgumentParser) -> None:
    d, a = DEFAULTS, p.add_argument
    a("--data", default=d.data, choices=DATASETS, help="data set (digits ships with scikit-learn)")
    a(
        "--data-dir",
        default=d.data_dir,
        help="local folder of mnist / fashion-mnist / cifar10 / folder",
    )
    a(
        "--image-size",
        type=int,
        default=d.image_size,
        help="resize folder images to this square size",
    )
    a(
        "--flow",
        default=d.flow,
        choices=("continuous", "discrete"),
        help="pixel values or pixel tokens",
    )
    a("--model", default=d.model, choices=list(PRESETS), help="network preset")
    a(
        "--conditional",
        default=d.conditional,
        action=argparse.BooleanOptionalAction,
        help="condition on the class (with a null class for guidance)",
    )


def _optimizer_args(p: argparse.ArgumentParser) -> None:
    d, a = DEFAULTS, p.add_argument
    a(
        "--steps",
        type=int,
        default=d.steps,
        help="optimizer steps in total (a larger value resumes)",
    )
    a(
        "--batch-size",
        type=int,
        default=d.batch_size,
        help="global batch per optimizer step, summed over processes and --grad-accum micro-steps",
    )
    a("--grad-accum", type=int, default=d.grad_accum, help="micro-batches per optimizer step")
    a("--lr", type=float, default=d.lr, help="AdamW peak learning rate")
    a("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    a("--beta1", type=float, default=d.beta1, help="AdamW beta1")
    a("--beta2", type=float, default=d.beta2, help="AdamW beta2")
    a("--warmup-steps", type=int, default=d.warmup_steps, help="linear warmup steps")
    a(
        "--decay-steps",
        type=int,
        default=d.decay_steps,
        help="cosine decay ends at this step (default: at --steps, stretched when a resume raises "
        "--steps); 0 keeps the rate constant after warmup",
    )
    a(
        "--min-lr-ratio",
        type=float,
        default=d.min_lr_ratio,
        help="final rate / peak rate of the decay",
    )
    a(
        "--ema-decay",
        type=float,
        default=d.ema_decay,
        help="EMA decay of the sampling weights (None: 0.999, or 0.995 for --objective reflow)",
    )
    a("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip (0: off)")


def _objective_args(p: argparse.ArgumentParser) -> None:
    d, a = DEFAULTS, p.add_argument
    a("--label-dropout", type=float, default=d.label_dropout, help="label drop rate for CFG")
    a("--scheduler", default=d.scheduler, choices=SCHEDULERS, help="path scheduler")
    a(
        "--time-sampler",
        default=d.time_sampler,
        choices=TIME_SAMPLERS,
        help="training-time distribution",
    )
    a("--source", default=d.source, choices=("mask", "uniform"), help="source of --flow discrete")
    a(
        "--path",
        default=d.path,
        choices=DISCRETE_PATHS,
        help="--flow discrete path: mixture, or metric (p_t(x|x_1) ~ exp(-beta_t d(x, x_1)) over "
        "intensity levels; uniform source, --source does not apply)",
    )
    a(
        "--metric-distance",
        default=d.metric_distance,
        choices=("abs", "square"),
        help="--path metric: d = |x - z| / (levels - 1), or its square",
    )
    a(
        "--metric-beta",
        type=float,
        default=d.metric_beta,
        help="--path metric: c of beta_t = c (t / (1 - t))^a",
    )
    a(
        "--metric-power",
        type=float,
        default=d.metric_power,
        help="--path metric: a of beta_t = c (t / (1 - t))^a",
    )
    a(
        "--discrete-loss",
        default=d.discrete_loss,
        choices=("gkl", "ce"),
        help="--flow discrete loss: gkl (generalized KL, the ELBO's integrand) or ce "
        "(cross-entropy of the posterior; same minimiser)",
    )
    a(
        "--ot-coupling",
        default=d.ot_coupling,
        action=argparse.BooleanOptionalAction,
        help="exact minibatch-OT pairing of noise and images (within classes)",
    )
    a(
        "--objective",
        default=d.objective,
        choices=OBJECTIVES,
        help="fm: a velocity model; meanflow / imf: a flow-map model sampled in 1-4 steps "
        "(MeanFlow identity target / improved MeanFlow; --time-sampler does not apply); "
        "reflow: a flow-map model trained on a --teacher's pairs",
    )
    a(
        "--mf-equal-fraction",
        type=float,
        default=d.mf_equal_fraction,
        help="flow-map objectives: fraction of time pairs with r = t (plain flow matching)",
    )
    a(
        "--mf-cfg-scale",
        type=float,
        default=d.mf_cfg_scale,
        help="flow-map objectives: guidance scale w folded into training (1-step guided samples)",
    )
    a(
        "--mf-time",
        default=d.mf_time,
        choices=("meanflow", "uniform"),
        help="--objective meanflow / imf: time pairs from MeanFlow's logit-normal(-0.4, 1) or "
        "uniform (more long jumps); reflow draws uniform pairs",
    )
    a(
        "--teacher",
        default=d.teacher,
        help="--objective reflow: the trained --objective fm run whose ODE makes the noise-image "
        "pairs (guided by --mf-cfg-scale) and whose weights start the student",
    )
    a(
        "--reflow-pairs",
        type=int,
        default=d.reflow_pairs,
        help="--objective reflow: number of teacher pairs (stored in OUT/reflow-pairs)",
    )
    a(
        "--reflow-loss",
        default=d.reflow_loss,
        choices=REFLOW_LOSSES,
        help="--objective reflow: fm (u(x_t, t, r) regresses x_1 - x_0, no JVP), huber (the "
        "same with a pseudo-Huber loss per sample) or meanflow (MeanFlow's identity target)",
    )
    a(
        "--reflow-one-step",
        type=float,
        default=d.reflow_one_step,
        help="--objective reflow: fraction of each batch at the 1-step jump t = 0, r = 1 (the "
        "rest: two sorted uniform times, --mf-equal-fraction of them with r = t)",
    )


def _run_args(p: argparse.ArgumentParser) -> None:
    """Seed, devices, logging, checkpoints and the end-of-run picture."""
    d, a = DEFAULTS, p.add_argument
    a("--seed", type=int, default=d.seed, help="seed of everything")
    a("--bf16", default=d.bf16, action=argparse.BooleanOptionalAction, help="bf16 autocast on CUDA")
    a(
        "--compile",
        default=d.compile,
        action=argparse.BooleanOptionalAction,
        help="torch.compile the model",
    )
    a("--device", default=d.device, help="auto, cpu or cuda[:N] (torchrun: one GPU per process)")
    a("--workers", type=int, default=d.workers, help="DataLoader worker processes")
    a("--log-every", type=int, default=d.log_every, help="steps between metrics lines")
    a("--ckpt-every", type=int, default=d.ckpt_every, help="steps between checkpoints")
    a("--keep", type=int, default=d.keep, help="checkpoints kept")
    a(
        "--tensorboard",
        default=d.tensorboard,
        action=argparse.BooleanOptionalAction,
        help="also log TensorBoard scalars",
    )
    a("--progress", default=d.progress, action=argparse.BooleanOptionalAction, help="progress bar")
    a("--sample-nfe", type=int, default=d.sample_nfe, help="NFE of samples.png")
    a("--sample-method", default=d.sample_method, help="ODE method of samples.png")
    a("--sample-cfg-scale", type=float, default=d.sample_cfg_scale, help="CFG scale of samples.png")


def _sampling_args(p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--method", default="midpoint", help="ODE method (euler, midpoint, heun2, rk4, dopri5, ...)")
    a(
        "--nfe",
        type=int,
        default=20,
        help="model evaluations (steps x stages; discrete: steps; flow-map runs: jumps, e.g. 1)",
    )
    a("--cfg-scale", type=float, default=0.0, help="classifier-free guidance scale w (0: off)")
    a("--seed", type=int, default=0, help="sampling seed")
    a("--device", default="auto", help="auto, cpu or cuda[:N]")
    a(
        "--checkpoint",
        choices=("best", "latest"),
        default="latest",
        help="weights to load (an fm-image run keeps no best-validation copy: best means latest)",
    )


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = CLIParser(prog=PROG, description="Flow-matching image generation.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_args(
        sub.add_parser(
            "train", help="train or resume a run (an existing run keeps its options; "
            "give a larger --steps)", formatter_class=fmt, allow_abbrev=False,
        )
    )  # fmt: skip
    p = sub.add_parser("sample", help="write a PNG grid and FILE.npz", formatter_class=fmt)
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--num", type=int, default=100, help="number of samples K")
    p.add_argument("--out", required=True, help="output PNG (FILE.npz is written beside it)")
    p.add_argument(
        "--labels",
        default=None,
        help="comma-separated labels repeated to K (-1: unconditional); default: spread evenly",
    )
    p.add_argument("--raw-weights", action="store_true", help="use the raw weights, not the EMA")
    _sampling_args(p)
    p = sub.add_parser(
        "evaluate", help="fd, fd_real, class accuracy (last line: JSON)", formatter_class=fmt
    )
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--num", type=int, default=200, help="samples K (needs 2K held-out images)")
    p.add_argument("--classifier-steps", type=int, default=800, help="training steps of the judge")
    p.add_argument(
        "--inception-weights",
        default=None,
        help="local FID Inception weights file (torch-fidelity's); adds 'fid'",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="evaluate at K seeds (--seed, --seed + 1, ...): fd, fd_real and class_accuracy "
        "become means, with fd_sd, fd_ratio (mean fd / fd_real) and per_seed; one seed's fd "
        "is noisy (0.82-1.66 over ten seeds for the digits demo)",
    )
    _sampling_args(p)
    p = sub.add_parser("demo", help="train + sample + evaluate on digits", formatter_class=fmt)
    p.add_argument("--out", default="demo-digits", help="run directory of the demo")
    p.add_argument(
        "--steps", type=int, default=DEMO["steps"], help="training steps (the LR decays over them)"
    )
    p.add_argument(
        "--progress", default=True, action=argparse.BooleanOptionalAction, help="progress bar"
    )
    p.add_argument("--classifier-steps", type=int, default=800, help="training steps of the judge")
    _adaptation_parsers(sub, fmt)
    return parser


def _adaptation_parsers(sub, fmt) -> None:
    """``finetune`` (Adjoint Matching towards a reward) and ``inpaint`` (PiGDM posterior)."""
    p = sub.add_parser(
        "finetune", help="reward fine-tuning (Adjoint Matching) into a new run", formatter_class=fmt
    )
    a = p.add_argument
    a("--run", required=True, help="base run (a continuous flow)")
    a("--reward", required=True, help="class:K = log p(K | x) by the run's classifier")
    a("--scale", type=float, required=True, help="lambda: target p_base(x) exp(lambda r(x))")
    a("--out", required=True, help="new run directory of the fine-tuned model")
    a("--iters", type=int, default=200, help="optimizer steps")
    a("--batch-size", type=int, default=64, help="memoryless trajectories per step")
    a("--sde-steps", type=int, default=20, help="steps of the memoryless SDE and lean adjoint")
    a("--num-times", type=int, default=10, help="grid times per trajectory in the loss")
    a("--lr", type=float, default=2e-4, help="Adam learning rate")
    a("--classifier-steps", type=int, default=800, help="training steps of the run's classifier")
    a("--seed", type=int, default=0, help="seed")
    a("--device", default="auto", help="auto, cpu or cuda[:N]")
    p = sub.add_parser(
        "inpaint", help="reconstruct masked held-out images (PNG + .npz)", formatter_class=fmt
    )
    a = p.add_argument
    a("--run", required=True, help="run directory (a continuous flow)")
    a("--mask", required=True, choices=("left", "right", "top", "bottom", "center", "random50"),
      help="the hidden part")  # fmt: skip
    a("--num", type=int, default=20, help="held-out images N")
    a("--out", required=True, help="output PNG (FILE.npz is written beside it)")
    a("--noise-std", type=float, default=0.05, help="measurement noise sigma_y (pixels in [-1, 1])")
    a("--guidance-scale", type=float, default=INPAINT_GUIDANCE_SCALE,
      help="PiGDM guidance weight gamma (chosen by measurement)")  # fmt: skip
    a("--temperature", type=float, default=INPAINT_TEMPERATURE,
      help="source noise scale tau (1: the posterior, 0: one deterministic answer)")  # fmt: skip
    a("--start-time", type=float, default=INPAINT_START_TIME,
      help="t0: start at t0 * y + (1 - t0) * noise (Pokle et al.)")  # fmt: skip
    a("--nfe", type=int, default=50, help="model evaluations (each also takes one backward)")
    a("--method", default="midpoint", help="ODE method")
    a("--seed", type=int, default=0, help="seed of the images, masks, noise")
    a("--device", default="auto", help="auto, cpu or cuda[:N]")


def _parse_labels(text: str | None, num: int, num_classes: int):
    import torch

    from fm_image.run import spread_labels

    if text is None:
        return spread_labels(num, num_classes)
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError("--labels is empty")
    for v in values:
        if v != -1 and not 0 <= v < num_classes:
            raise ValueError(
                f"--labels value {v} is not a class of this run (0..{num_classes - 1}, or -1)"
            )
    return torch.tensor(values, dtype=torch.long).repeat(-(-num // len(values)))[:num]


def cmd_train(args: argparse.Namespace, argv: list[str]) -> int:
    from fm_image.config import run_directory
    from fm_image.train import train

    values = {k: v for k, v in vars(args).items() if k != "command"}
    # Resuming: options not given now keep the run's values, so `--steps N` alone resumes.
    values = run_directory(args.out).merge(values, given=explicit_options(build_parser(), argv))
    cfg = TrainConfig(**values)
    summary = train(cfg)
    summary.pop("config", None)
    if summary.pop("rank", 0) == 0:
        print(json.dumps(summary))
    return 0


def cmd_sample(args: argparse.Namespace, argv: list[str]) -> int:
    import torch

    from fm_image.grid import save_samples
    from fm_image.run import load_run

    out = Path(args.out)
    if args.num < 1:
        raise ValueError(f"--num must be >= 1, got {args.num}")
    if args.nfe < 1:
        raise ValueError(f"--nfe must be >= 1, got {args.nfe}")
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {out}")
    if not out.parent.is_dir():
        raise ValueError(f"--out folder {out.parent} does not exist")
    run = load_run(
        args.run, ema=not args.raw_weights, device=args.device, checkpoint=args.checkpoint
    )
    labels = _parse_labels(args.labels, args.num, run.flow.num_classes)
    g = torch.Generator(run.device).manual_seed(args.seed)
    images, nfe = run.flow.sample(
        run.model, labels.to(run.device), nfe=args.nfe, method=args.method,
        cfg_scale=args.cfg_scale, generator=g,
    )  # fmt: skip
    classes = max(run.flow.num_classes, 1)
    nrow = args.num // classes if args.labels is None and args.num % classes == 0 else 10
    png, npz = save_samples(images.cpu(), labels, out, nrow=min(nrow, 20))
    print(
        json.dumps(
            {"png": str(png), "npz": str(npz), "num": args.num, "nfe": nfe, "step": run.step}
        )
    )
    return 0


def cmd_evaluate(args: argparse.Namespace, argv: list[str]) -> int:
    from fm_image.evaluate import evaluate_seeds

    if args.nfe < 1:
        raise ValueError(f"--nfe must be >= 1, got {args.nfe}")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    result = evaluate_seeds(
        args.run, seeds=args.seeds, num=args.num, nfe=args.nfe, method=args.method,
        cfg_scale=args.cfg_scale, seed=args.seed, classifier_steps=args.classifier_steps,
        inception_weights=args.inception_weights, device=args.device,
    )  # fmt: skip
    print(json.dumps(result))
    return 0


def cmd_demo(args: argparse.Namespace, argv: list[str]) -> int:
    from fm_image.demo import run_demo

    result = run_demo(
        args.out, steps=args.steps, progress=args.progress, classifier_steps=args.classifier_steps
    )
    print(json.dumps(result))
    return 0


def cmd_finetune(args: argparse.Namespace, argv: list[str]) -> int:
    from fm_image.finetune import finetune

    result = finetune(
        args.run, args.out, reward=args.reward, scale=args.scale, iters=args.iters,
        batch_size=args.batch_size, sde_steps=args.sde_steps, num_times=args.num_times,
        lr=args.lr, seed=args.seed, classifier_steps=args.classifier_steps, device=args.device,
        log=lambda line: print(line, file=sys.stderr),
    )  # fmt: skip
    print(json.dumps(result))
    return 0


def cmd_inpaint(args: argparse.Namespace, argv: list[str]) -> int:
    from fm_image.inpaint import inpaint

    result = inpaint(
        args.run, mask=args.mask, num=args.num, out=args.out, noise_std=args.noise_std,
        nfe=args.nfe, method=args.method, seed=args.seed, device=args.device,
        guidance_scale=args.guidance_scale, temperature=args.temperature,
        start_time=args.start_time,
    )  # fmt: skip
    print(json.dumps(result))
    return 0


COMMANDS = {
    "train": cmd_train, "sample": cmd_sample, "evaluate": cmd_evaluate, "demo": cmd_demo,
    "finetune": cmd_finetune, "inpaint": cmd_inpaint,
}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0, or 2 for bad input)."""
    argv = sys.argv[1:] if argv is None else list(argv)

    def command() -> int:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args, argv)

    return run_cli(PROG, command)


def entry_point() -> None:
    exit_process(main())  # sys.exit, or os._exit under torchrun (see exit_process)


if __name__ == "__main__":
    entry_point()
