"""Recall@N / NDCG@N against a slow pure-Python reference."""

from __future__ import annotations

import math

import pytest
import torch

from adc_dist.train.metrics import ranking_metrics


def _reference(scores: list[float], targets: set[int], N: int) -> tuple[float, float]:
    """Recall@N and NDCG@N of one user, the textbook way."""
    ranked = sorted((i for i, s in enumerate(scores) if s != float("-inf")), key=lambda i: -scores[i])[:N]
    hits = [1.0 if i in targets else 0.0 for i in ranked]
    recall = sum(hits) / len(targets)
    dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
    idcg = sum(1 / math.log2(j + 2) for j in range(min(N, len(targets))))
    return recall, dcg / idcg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_the_reference_on_random_scores(seed):
    g = torch.Generator().manual_seed(seed)
    U, I, ks = 40, 30, [1, 5, 10, 20, 50]
    scores = torch.rand(U, I, generator=g)  # continuous: no ties
    excluded = torch.rand(U, I, generator=g) < 0.2
    targets = (torch.rand(U, I, generator=g) < 0.15) & ~excluded
    targets[torch.arange(U), torch.randint(0, I, (U,), generator=g)] = True  # >= 1 target each
    excluded &= ~targets
    scores[excluded] = float("-inf")
    got = ranking_metrics(scores, targets, ks)
    for u in range(U):
        t = set(torch.nonzero(targets[u]).flatten().tolist())
        for N in ks:
            recall, ndcg = _reference(scores[u].tolist(), t, N)
            assert got[f"recall@{N}"][u].item() == pytest.approx(recall, abs=1e-6)
            assert got[f"ndcg@{N}"][u].item() == pytest.approx(ndcg, abs=1e-6)


def test_a_perfect_ranking_scores_one_and_a_user_without_targets_is_nan():
    scores = torch.tensor([[0.9, 0.8, 0.1, 0.0], [0.9, 0.8, 0.1, 0.0]])
    targets = torch.tensor([[True, True, False, False], [False, False, False, False]])
    m = ranking_metrics(scores, targets, [1, 2, 3])
    assert m["recall@2"][0] == 1 and m["ndcg@2"][0] == pytest.approx(1) and m["ndcg@3"][0] == pytest.approx(1)
    assert m["recall@1"][0] == 0.5
    assert torch.isnan(m["recall@2"][1]) and torch.isnan(m["ndcg@2"][1])


def test_an_excluded_target_never_counts_as_a_hit():
    scores = torch.tensor([[float("-inf"), 0.5, 0.2]])
    targets = torch.tensor([[True, False, False]])
    assert ranking_metrics(scores, targets, [3])["recall@3"][0] == 0


def test_bad_inputs_are_rejected():
    with pytest.raises(TypeError, match="bool"):
        ranking_metrics(torch.rand(2, 3), torch.ones(2, 3), [1])
    with pytest.raises(ValueError, match=r"\[U, I\]"):
        ranking_metrics(torch.rand(2, 3), torch.ones(2, 4, dtype=torch.bool), [1])
    with pytest.raises(ValueError, match="N >= 1"):
        ranking_metrics(torch.rand(2, 3), torch.ones(2, 3, dtype=torch.bool), [0])
