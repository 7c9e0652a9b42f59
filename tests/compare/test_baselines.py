"""Baselines: a hand-computed answer on tiny data, and better than random on a real task."""

import math

import numpy as np
import pytest
import torch

from adc_dist.compare.baselines import BASELINES, DEFAULTS, SPACES, fit_baseline, sample_configs
from adc_dist.data.task_data import Interactions, TaskData



@pytest.fixture(autouse=True)
def one_thread():
    # Small embedding ops: one thread is as fast on an idle 2-core machine and far faster on
    # a busy one (OpenMP threads spin against the other processes).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inter(pairs):
    a = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return Interactions(a[:, 0].copy(), a[:, 1].copy())


def tiny_task() -> TaskData:
    # Domain a: train counts item0..item4 = 4, 3, 2, 1, 0 (no ties).
    train_a = [(u, 0) for u in range(4)] + [(u, 1) for u in range(3)] + [(0, 2), (1, 2), (0, 3)]
    # Domain b: train counts item0 = 2, item1 = 0.
    train_b = [(0, 0), (1, 0)]
    return TaskData(
        "tiny", ("a", "b"), 4, (5, 2),
        train=(_inter(train_a), _inter(train_b)),
        valid=(_inter([(3, 1)]), _inter([])),
        test=(_inter([(0, 4), (1, 4), (2, 3), (2, 4), (3, 2)]), _inter([(2, 1), (3, 0)])),
    )


def test_most_popular_matches_the_hand_computed_ranking_metrics():
    from adc_dist.train.evaluate import evaluate

    res = evaluate(fit_baseline("popularity", tiny_task()).score_fn, tiny_task(), "test", [1, 2])
    g = 1 / math.log2(3)  # gain of a hit at rank 2
    # Domain a, after removing each user's train (and valid) items, by train count:
    #   user 0: [4]            test {4}    -> hit at 1
    #   user 1: [3, 4]         test {4}    -> hit at 2
    #   user 2: [2, 3, 4]      test {3, 4} -> hit at 2 (of 2 targets)
    #   user 3: [2, 3, 4]      test {2}    -> hit at 1   (item 1 is its valid item)
    expect_a = {("recall", 1): (1 + 0 + 0 + 1) / 4, ("recall", 2): (1 + 1 + 0.5 + 1) / 4,
                ("ndcg", 1): (1 + 0 + 0 + 1) / 4, ("ndcg", 2): (1 + g + g / (1 + g) + 1) / 4}
    # Domain b: user 2 ranks [0, 1], test {1} -> hit at 2; user 3 ranks [0, 1], test {0} -> hit at 1.
    expect_b = {("recall", 1): 0.5, ("recall", 2): 1.0, ("ndcg", 1): 0.5, ("ndcg", 2): (g + 1) / 2}
    for (metric, n), v in expect_a.items():
        assert res.values[("a", metric, n)] == pytest.approx(v), (metric, n)
    for (metric, n), v in expect_b.items():
        assert res.values[("b", metric, n)] == pytest.approx(v), (metric, n)


def test_sample_configs_are_the_default_then_distinct_seeded_members_of_the_grid():
    configs = sample_configs("cmf", 5, seed=3)
    assert len(configs) == 5 and len({tuple(sorted(c.items())) for c in configs}) == 5
    for c in configs:
        assert sorted(c) == sorted(SPACES["cmf"]) and all(c[k] in SPACES["cmf"][k] for k in SPACES["cmf"])
    assert configs == sample_configs("cmf", 5, seed=3) and configs != sample_configs("cmf", 5, seed=4)
    assert sample_configs("popularity", 4) == [{}]  # nothing to tune: one configuration
    with pytest.raises(ValueError, match="n >= 1"):
        sample_configs("cmf", 0)
    # Every budget starts at the method's default; a budget of 1 is the default alone. BPR-MF's
    # is trained as ADC is, with 20 negatives and L2 3e-3 (benchmarks/baseline_recipe.py).
    for name, default in DEFAULTS.items():
        assert sample_configs(name, 4, seed=1)[0] == default and sample_configs(name, 1) == [default]
        assert all(default[k] in SPACES[name][k] for k in SPACES[name]), name
    assert DEFAULTS["bpr_mf"] == {"d": 128, "lr": 1e-2, "reg": 3e-3, "negatives": 20}
    assert {1, 20} <= set(SPACES["bpr_mf"]["negatives"]) and 3e-3 in SPACES["bpr_mf"]["reg"]


@pytest.fixture(scope="module")
def book_music(data_root):
    from adc_dist.data import load_task

    return load_task("amazon-book-music", data_root=data_root, seed=0)


@pytest.fixture(scope="module")
def random_recall(book_music):
    from adc_dist.train.evaluate import evaluate

    gen = torch.Generator().manual_seed(0)
    score = lambda users, k: torch.rand(len(users), book_music.n_items[k], generator=gen)  # noqa: E731
    return evaluate(score, book_music, "test", [10]).values


@pytest.mark.parametrize("name,params", [
    ("popularity", {}),
    ("bpr_mf", {"d": 32, "lr": 1e-2, "reg": 1e-4, "epochs": 6, "eval_every": 3}),
    ("bpr_mf", {"d": 32, "lr": 1e-2, "reg": 1e-3, "negatives": 5, "epochs": 6, "eval_every": 3}),
    ("cmf", {"d": 32, "lr": 1e-2, "reg": 1e-4, "epochs": 6, "eval_every": 3}),
    ("cmf", {"d": 32, "lr": 1e-2, "reg": 0.0, "loss": "bce", "epochs": 4, "eval_every": 2}),
    ("neumf", {"d": 32, "lr": 1e-2, "reg": 0.0, "epochs": 4, "eval_every": 2}),
    ("dtcdr", {"d": 32, "lr": 1e-2, "reg": 1e-4, "epochs": 4, "eval_every": 2}),
])
def test_each_baseline_beats_random_ranking_on_a_real_task(book_music, random_recall, name, params):
    from adc_dist.train.evaluate import evaluate

    assert name in BASELINES
    res = evaluate(fit_baseline(name, book_music, params, seed=0).score_fn, book_music, "test", [10]).values
    for dom in book_music.domains:
        rand = random_recall[(dom, "recall", 10)]
        assert res[(dom, "recall", 10)] > 3 * rand + 0.01, (dom, res[(dom, "recall", 10)], rand)


@pytest.mark.parametrize("pool_users", [False, True])
def test_neural_cf_full_ranking_equals_its_per_pair_training_score(pool_users):
    """score_fn (pair scorer + one GMF matmul) ranks with exactly the score domain_loss trains."""
    from adc_dist.compare.baselines.neural_cf import NeuralCF

    torch.manual_seed(0)
    m = NeuralCF(6, [7, 4], 8, init_std=1.0, pool_users=pool_users)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    users = torch.arange(6)
    for k, n in enumerate((7, 4)):
        full = m.score_fn(users, k)
        for i in range(n):
            # BCE of one positive and no negatives is softplus(-s): recover s per pair.
            pos, neg = torch.full((6,), i), torch.zeros(6, 0, dtype=torch.long)
            s = torch.stack([-torch.log(torch.expm1(m.domain_loss(k, users[u:u + 1], pos[u:u + 1], neg[u:u + 1],
                                                                  "bce", 0.0))) for u in range(6)])
            torch.testing.assert_close(full[:, i], s.detach(), rtol=1e-4, atol=1e-4)
    # DTCDR's MLP user is shared: changing domain 1's MLP user table moves domain 0's scores.
    before = m.score_fn(users, 0).clone()
    with torch.no_grad():
        m.user_m[1].weight.add_(1.0)
    assert torch.equal(before, m.score_fn(users, 0)) != pool_users
