import pytest
import torch

from fm_discrete.solver import MASKED_METHODS
from fm_text.run import load_run
from fm_text.sample import infill_layout, sample_run


def test_infilling_keeps_every_prompt_and_suffix_token(flow_run):
    run = load_run(flow_run)
    prompt, suffix = "The ", " end."
    p_ids, s_ids = run.tokenizer.encode(prompt), run.tokenizer.encode(suffix)
    out = sample_run(run, 6, steps=8, length=16, prompt=prompt, suffix=suffix, seed=3)
    assert out.tokens.shape == (6, 16)
    assert out.fixed.sum() == len(p_ids) + len(s_ids)
    for row in out.tokens:
        assert row[: len(p_ids)].tolist() == p_ids
        assert row[16 - len(s_ids) :].tolist() == s_ids
    free = out.tokens[:, ~out.fixed]
    assert not (free == run.tokenizer.mask_id).any()  # every free position was filled
    assert all(t.startswith(prompt) and t.endswith(suffix) for t in out.texts)


def test_sampling_is_seeded(flow_run):
    run = load_run(flow_run)
    a = sample_run(run, 2, steps=4, seed=1).tokens
    assert torch.equal(a, sample_run(run, 2, steps=4, seed=1).tokens)
    assert not torch.equal(a, sample_run(run, 2, steps=4, seed=2).tokens)


def test_ar_continues_a_prompt_with_the_kv_cache(ar_run):
    run = load_run(ar_run)
    p_ids = run.tokenizer.encode("The assert")
    out = sample_run(run, 3, length=12, prompt="The assert", seed=0)
    assert out.tokens.shape == (3, 12)
    assert all(row[: len(p_ids)].tolist() == p_ids for row in out.tokens)
    with pytest.raises(ValueError, match="suffix"):
        sample_run(run, 1, suffix="x")


def test_prompt_longer_than_length_is_refused():
    with pytest.raises(ValueError, match="length 4"):
        infill_layout([1, 2, 3], [4], 4, 0)


@pytest.mark.parametrize("sampler", MASKED_METHODS)
def test_masked_samplers_keep_prompt_and_suffix(flow_run, sampler):
    run = load_run(flow_run)
    prompt, suffix = "The ", " end."
    p_ids, s_ids = run.tokenizer.encode(prompt), run.tokenizer.encode(suffix)
    out = sample_run(run, 3, steps=4, length=16, prompt=prompt, suffix=suffix, sampler=sampler)
    for row in out.tokens:
        assert row[: len(p_ids)].tolist() == p_ids
        assert row[16 - len(s_ids) :].tolist() == s_ids
    assert not (out.tokens == run.tokenizer.mask_id).any()


def test_unknown_sampler_is_refused(flow_run):
    with pytest.raises(ValueError, match="sampler must be one of"):
        sample_run(load_run(flow_run), 1, sampler="beam")


def test_cli_sampler_option_and_evaluate_fields(capsys, flow_run):
    import json

    from fm_text.cli import main

    assert (
        main(
            [
                "sample",
                "--run",
                str(flow_run),
                "--num",
                "1",
                "--nfe",
                "4",
                "--sampler",
                "confidence",
            ]
        )
        == 0
    )
    argv = ["evaluate", "--run", str(flow_run), "--num", "2", "--nfe", "4", "--time-samples", "2"]
    assert main([*argv, "--max-sequences", "4", "--sampler", "remdm"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["sampler"] == "remdm" and result["tokens_per_s"] > 0
    assert result["judge_bpc"] > 0 and result["val_judge_bpc"] > 0


def test_auto_sampler_resolves_by_the_runs_source(flow_run, ar_run):
    import dataclasses
    from types import SimpleNamespace

    from fm_text.sample import resolve_sampler

    run = load_run(flow_run)
    assert resolve_sampler(run, "auto", None, 16) == ("confidence", 16)  # one step per token
    uniform = SimpleNamespace(config=dataclasses.replace(run.config, source="uniform"))
    assert resolve_sampler(uniform, "auto", None, 16) == ("euler", 128)
    assert resolve_sampler(run, "euler", 7, 16) == ("euler", 7)
    out = sample_run(run, 2, length=16)
    assert (out.sampler, out.steps) == ("confidence", 16)
    assert not (out.tokens == run.tokenizer.mask_id).any()
    assert sample_run(load_run(ar_run), 1, length=8).sampler == "ar+kv"
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ValueError, match="choice_temperature must be a finite number >= 0"):
            sample_run(run, 1, choice_temperature=bad)
    with pytest.raises(ValueError, match="orders the confidence sampler only"):
        sample_run(run, 1, sampler="random", choice_temperature=2.0)
    for bad in (0.0, 1.5, True):
        with pytest.raises(ValueError, match=r"threshold must be a number in \(0, 1\]"):
            sample_run(run, 1, sampler="threshold", threshold=bad)
    with pytest.raises(ValueError, match="threshold: it applies to threshold and left_threshold"):
        sample_run(run, 1, sampler="random", threshold=0.5)
    # one step per generated position: the prompt's tokens are not counted
    prompt = run.tokenizer.encode("The ")
    assert sample_run(run, 1, length=16, prompt="The ").steps == 16 - len(prompt)
