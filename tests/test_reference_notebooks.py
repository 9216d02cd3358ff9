"""The reference's example notebooks run on our packages with only their imports changed.

Tiny versions of the re-runs in ``benchmarks/notebooks/`` (the full-size figures are in
``benchmarks/results/notebooks.md``): each runs the notebook's calls once with ``flow_matching``
1.0.10's names and once with ours, from the same seeds, and compares what the notebook shows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("flow_matching")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "notebooks"))

import cnf_2d
import discrete_2d
import flow_2d
import riemann_2d


def test_2d_flow_matching_same_losses_samples_and_likelihoods():
    r = flow_2d.compare(iterations=15, batch_size=256, hidden_dim=32, grid_size=6, num_acc=1,
                        n_samples=256)  # fmt: skip
    # the path draws no random numbers: the same seed gives the same training, draw by draw
    assert r["max_loss_diff"] < 1e-4
    assert r["sample_diff"] < 1e-4
    assert r["exact_log_p_diff"] < 1e-3


def test_cnf_notebook_trains_on_ours_and_fails_on_the_reference():
    r = cnf_2d.compare(iterations=3, batch_size=64)
    assert "does not require grad" in r["reference_training"]  # flow_matching 1.0.10 detaches
    assert r["max_diff"] < 1e-3  # both libraries agree on the trained flow's likelihood


@pytest.mark.parametrize("source", ["uniform", "mask"])
def test_discrete_notebook_runs_and_agrees_within_noise(source):
    r = discrete_2d.compare(source, iterations=20, batch_size=128, vocab_size=16, n_samples=512,
                            nfe=8)  # fmt: skip
    (m_ref, se_ref), (m_our, se_our) = r["loss_ref"], r["loss_ours"]
    assert abs(m_ref - m_our) < 5 * (se_ref**2 + se_our**2) ** 0.5 + 0.05
    assert r["n_times"] == (5, 5)


@pytest.mark.parametrize("kind", ["torus", "sphere"])
def test_riemannian_notebooks_same_losses_and_samples(kind):
    r = riemann_2d.compare(kind, iterations=5, batch_size=128, n_samples=256, step_size=0.1)
    assert r["max_loss_diff"] < 1e-4
    assert r["tv_ref_vs_ours"] < 0.02
