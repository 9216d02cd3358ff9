"""The ``fm-text`` command line: ``train | sample | evaluate | demo``.

Every bad input ends with one line on stderr and exit code 2, before anything is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path

from fm_core.training import (
    CLIParser,
    add_hidden_alias,
    exit_process,
    explicit_options,
    run_cli,
    write_text_atomic,
)
from fm_text.config import (
    FUSED_LOSS,
    LOSSES,
    MODELS,
    SOURCES,
    TIME_SAMPLINGS,
    TrainConfig,
    run_directory,
)
from fm_text.model import PRESETS

__all__ = ["build_parser", "main"]


_FORMATTER = argparse.ArgumentDefaultsHelpFormatter

# option name -> (type, choices, help) for every TrainConfig field on the command line.
_TRAIN_OPTIONS: dict[str, tuple] = {
    "data": (str, None, "corpus: pydoc, pystdlib, or a local text file or folder"),
    "model": (str, MODELS, "flow (discrete flow matching) or ar (autoregressive baseline)"),
    "steps": (int, None, "optimiser steps in total; a larger value on an existing run resumes it"),
    "preset": (str, tuple(PRESETS), "model size (tiny: CPU, small: GPU)"),
    "dim": (int, None, "width (overrides the preset)"),
    "depth": (int, None, "blocks (overrides the preset)"),
    "heads": (int, None, "attention heads (overrides the preset)"),
    "conv_kernel": (int, None, "depthwise convolution width per block (0: attention only)"),
    "block_size": (
        int,
        None,
        "block diffusion (flow, mask source): blocks of this many tokens, each decoded after "
        "the clean blocks before it, with a KV cache (0: off)",
    ),
    "context": (int, None, "tokens per training sequence"),
    "vocab_size": (int, None, "BPE vocabulary size (special tokens included)"),
    "tokenizer": (str, None, "a local tokenizer.json instead of training a BPE"),
    "val_fraction": (float, None, "share of the corpus' characters held out, by document"),
    "batch_size": (int, None, "global batch: sequences per optimiser step, summed over processes"),
    "lr": (float, None, "peak AdamW learning rate"),
    "min_lr_ratio": (float, None, "final learning rate of the cosine decay, relative to --lr"),
    "warmup_steps": (int, None, "linear warmup steps"),
    "weight_decay": (float, None, "AdamW weight decay of matrices"),
    "grad_clip": (float, None, "gradient norm clip"),
    "ema_decay": (float, None, "EMA decay of the weights used for evaluation and sampling"),
    "source": (str, SOURCES, "source distribution of the flow"),
    "scheduler_n": (float, None, "n of PolynomialConvexScheduler (kappa_t = t^n)"),
    "loss": (str, LOSSES, "gkl: generalized KL (ELBO); ce: cross-entropy"),
    "time_sampling": (str, TIME_SAMPLINGS, "variable in which training times are stratified"),
    "dropout": (float, None, "dropout (default: 0.1 for ar, 0 for flow)"),
    "fused_loss": (
        str,
        FUSED_LOSS,
        "generalized KL fused with the output projection by fm-kernels (needs --loss gkl; on "
        "CUDA the full logits never exist); auto: on CUDA when fm-kernels is installed",
    ),
    "eval_every": (int, None, "steps between validation evaluations and checkpoints"),
    "eval_sequences": (int, None, "validation sequences scored during training"),
    "eval_time_samples": (int, None, "ELBO time samples per sequence during training"),
    "patience": (int, None, "stop after this many evaluations without improvement (0: never)"),
    "log_every": (int, None, "steps between metric lines"),
    "seed": (int, None, "seed"),
    "cache_dir": (str, None, "folder of the token caches (default RUN_DIR/cache)"),
}


def _add_train_options(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for name, (typ, choices, text) in _TRAIN_OPTIONS.items():
        default = getattr(defaults, name)
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=typ, choices=choices, default=default, help=text)
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="torch.compile the model",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar",
    )


def _add_sampler_option(parser: argparse.ArgumentParser) -> None:
    from fm_text.sample import (
        DEFAULT_CHOICE_TEMPERATURE,
        DEFAULT_SAMPLER,
        DEFAULT_THRESHOLD,
        SAMPLERS,
    )

    parser.add_argument(
        "--nfe",
        type=int,
        default=None,
        help="sampling steps of the flow (default: one per generated token for the masked "
        "decoders, 128 for euler; block diffusion runs: steps per block, default the block size)",
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=DEFAULT_SAMPLER,
        help="flow sampler: auto (left_threshold on block diffusion runs, confidence on other "
        "mask-source runs, else euler), euler (the CTMC "
        "Euler solver) or a masked-model decoder (random, confidence, threshold, left_threshold, "
        "remdm, first_hitting; mask-source runs)",
    )
    parser.add_argument(
        "--choice-temperature",
        type=float,
        default=DEFAULT_CHOICE_TEMPERATURE,
        help="Gumbel noise on the confidence order (MaskGIT's; 0: pure confidence, which "
        "repeats itself; large: random order)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="threshold and left_threshold samplers: decode a position early when its drawn "
        "token has at least this probability (1: left_threshold is exact left-to-right)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``fm-text`` parser."""
    parser = CLIParser(
        prog="fm-text",
        description="Discrete flow-matching text generation: train, sample, evaluate, demo.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train or resume a run", formatter_class=_FORMATTER)
    p.add_argument("--out", required=True, help="run folder (an existing run resumes)")
    _add_train_options(p)
    add_hidden_alias(p, "--warmup", "warmup_steps", type=int)  # the old spelling

    p = sub.add_parser("sample", help="draw samples from a run", formatter_class=_FORMATTER)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--num", type=int, default=4, help="number of samples")
    _add_sampler_option(p)
    add_hidden_alias(p, "--steps", "nfe", type=int)
    p.add_argument("--prompt", default="", help="text the samples start with (kept fixed)")
    p.add_argument("--suffix", default="", help="text the samples end with (flow runs only)")
    p.add_argument("--length", type=int, default=None, help="tokens per sample (default: context)")
    p.add_argument("--temperature", type=float, default=1.0, help="logit temperature")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--out", default=None, help="also write JSONL {'text': ...} to this new file")
    p.add_argument(
        "--checkpoint",
        choices=("best", "latest"),
        default="best",
        help="weights to load: the best-validation copy or the newest checkpoint",
    )

    p = sub.add_parser("evaluate", help="score a run", formatter_class=_FORMATTER)
    p.add_argument("--run", required=True, help="run folder")
    p.add_argument("--judge", default=None, help="an ar run on the same tokenizer (gen_ppl)")
    p.add_argument("--num", type=int, default=32, help="samples for the statistics")
    add_hidden_alias(p, "--num-samples", "num", type=int)
    _add_sampler_option(p)
    add_hidden_alias(p, "--sample-steps", "nfe", type=int)
    p.add_argument("--time-samples", type=int, default=16, help="ELBO time samples per sequence")
    p.add_argument("--max-sequences", type=int, default=None, help="cap on validation sequences")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument(
        "--checkpoint",
        choices=("best", "latest"),
        default="best",
        help="weights to load: the best-validation copy or the newest checkpoint",
    )

    p = sub.add_parser(
        "demo", help="train flow and ar on pydoc, compare them", formatter_class=_FORMATTER
    )
    p.add_argument("--out", default="fm-text-demo", help="folder of the two runs")
    p.add_argument(
        "--data",
        default="pydoc",
        help="corpus of both runs: pydoc, pystdlib, or a local text file or folder",
    )
    p.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps of each model (None: the demo's 6000)",
    )
    return parser


def _train_config(argv: list[str], args: argparse.Namespace) -> TrainConfig:
    """Options given on the command line over the stored config of an existing run, else defaults."""
    values = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    given = explicit_options(build_parser(), argv)
    return TrainConfig(**run_directory(args.out).merge(values, given))


def _cmd_train(argv: list[str], args: argparse.Namespace) -> None:
    from fm_text.train import train

    config = _train_config(argv, args)
    summary = train(config, args.out)
    print(json.dumps(summary))


def _cmd_sample(args: argparse.Namespace) -> None:
    from fm_text.run import load_run
    from fm_text.sample import sample_run

    out = Path(args.out) if args.out else None
    if out is not None and out.exists():
        raise ValueError(f"out: {out} exists; choose a new file")
    run = load_run(args.run, checkpoint=args.checkpoint)
    samples = sample_run(
        run,
        args.num,
        steps=args.nfe,
        length=args.length,
        temperature=args.temperature,
        prompt=args.prompt,
        suffix=args.suffix,
        seed=args.seed,
        sampler=args.sampler,
        choice_temperature=args.choice_temperature,
        threshold=args.threshold,
    )
    print("\n\n".join(samples.texts))
    if out is not None:
        write_text_atomic(out, "".join(json.dumps({"text": t}) + "\n" for t in samples.texts))


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from fm_text.evaluate import evaluate_run
    from fm_text.run import load_run

    for name in ("num", "nfe", "time_samples"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a positive int")
    if args.max_sequences is not None and args.max_sequences < 1:
        raise ValueError("--max-sequences must be a positive int")
    run = load_run(args.run, checkpoint=args.checkpoint)
    result = evaluate_run(
        run,
        judge=args.judge,
        num_samples=args.num,
        sample_steps=args.nfe,
        time_samples=args.time_samples,
        max_sequences=args.max_sequences,
        seed=args.seed,
        sampler=args.sampler,
        choice_temperature=args.choice_temperature,
        threshold=args.threshold,
    )
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fm-text``; returns the exit code (2 for bad input, one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def command() -> None:
        args = build_parser().parse_args(argv)
        if args.command == "train":
            _cmd_train(argv, args)
        elif args.command == "sample":
            _cmd_sample(args)
        elif args.command == "evaluate":
            _cmd_evaluate(args)
        else:
            from fm_text.demo import run_demo

            run_demo(args.out, steps=args.steps, data=args.data, progress=args.progress)

    return run_cli("fm-text", command)


def entry_point() -> None:
    """The ``fm-text`` console script: sys.exit, or os._exit under torchrun (see exit_process)."""
    exit_process(main())


if __name__ == "__main__":  # pragma: no cover
    entry_point()
