"""Full-ranking evaluation: exclusion of seen items, known answers, sharding over ranks."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from adc_dist.data.task_data import Interactions, TaskData
from adc_dist.train.evaluate import EvalResult, evaluate
from procs import file_rendezvous


def _inter(pairs: list[tuple[int, int]]) -> Interactions:
    a = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    return Interactions(a[:, 0].copy(), a[:, 1].copy())


def _tiny_task() -> TaskData:
    """4 users; "book" has 5 items, "music" 3."""
    train = (_inter([(0, 0), (0, 1), (1, 2), (2, 0)]), _inter([(0, 0), (3, 1)]))
    valid = (_inter([(0, 2), (1, 3)]), _inter([(3, 2)]))
    # music: user 3's test item is also its valid item, so for test it is excluded and
    # user 3 has no target left there.
    test = (_inter([(0, 3), (1, 0), (1, 4), (2, 1)]), _inter([(3, 2), (0, 1)]))
    return TaskData("tiny", ("book", "music"), 4, (5, 3), train, valid, test)


def _by_item_id(users: torch.Tensor, k: int, n_items=(5, 3)) -> torch.Tensor:
    """Score = item id: higher ids rank first, the same for every user."""
    return torch.arange(n_items[k], dtype=torch.float32).repeat(len(users), 1)


def test_valid_excludes_train_items_and_gives_the_known_answer():
    r = evaluate(_by_item_id, _tiny_task(), "valid", [1, 2, 3])
    # book: user 0 ranks 4,3,2 (0,1 excluded): target 2 at rank 3; user 1 ranks 4,3,1,0: target 3 at rank 2.
    assert r.counts == {"book": 2, "music": 1}
    assert r.values[("book", "recall", 1)] == 0
    assert r.values[("book", "recall", 2)] == 0.5
    assert r.values[("book", "recall", 3)] == 1
    assert r.values[("book", "ndcg", 3)] == pytest.approx((1 / math.log2(4) + 1 / math.log2(3)) / 2)
    # music: user 3 ranks 2,0 (1 excluded): target 2 at rank 1.
    assert r.values[("music", "recall", 1)] == 1 and r.values[("music", "ndcg", 1)] == 1


def test_test_excludes_train_and_valid_items_and_gives_the_known_answer():
    r = evaluate(_by_item_id, _tiny_task(), "test", [1, 2, 3], per_user=True)
    assert r.counts == {"book": 3, "music": 1}  # music user 3's only test item was a valid item
    pu = r.per_user.set_index(["domain", "user"])
    # user 0: ranks 4,3 -> target 3 at rank 2
    assert pu.loc[("book", 0), "recall@2"] == 1 and pu.loc[("book", 0), "ndcg@2"] == pytest.approx(1 / math.log2(3))
    # user 1: ranks 4,1,0 -> targets 4 (rank 1) and 0 (rank 3)
    assert pu.loc[("book", 1), "recall@1"] == 0.5 and pu.loc[("book", 1), "recall@3"] == 1
    assert pu.loc[("book", 1), "ndcg@3"] == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)))
    # user 2: ranks 4,3,2,1 -> target 1 at rank 4
    assert pu.loc[("book", 2), "recall@3"] == 0
    assert r.values[("book", "recall", 3)] == pytest.approx((1 + 1 + 0) / 3)
    # music user 0: ranks 2,1 -> target 1 at rank 2
    assert pu.loc[("music", 0), "recall@1"] == 0 and pu.loc[("music", 0), "recall@2"] == 1
    assert list(r.per_user.columns) == ["user", "domain", "recall@1", "recall@2", "recall@3",
                                        "ndcg@1", "ndcg@2", "ndcg@3"]


@pytest.mark.parametrize("split", ["valid", "test"])
def test_scoring_excluded_items_highest_changes_nothing(split):
    task = _tiny_task()

    def cheat(users: torch.Tensor, k: int) -> torch.Tensor:
        s = _by_item_id(users, k)
        seen = task.user_items("train", k) + (task.user_items("valid", k) if split == "test" else 0)
        return s + 1000 * torch.from_numpy(seen[users.numpy()].toarray()).float()

    a = evaluate(_by_item_id, task, split, [1, 2, 3]).values
    b = evaluate(cheat, task, split, [1, 2, 3]).values
    assert a == b


def test_flat_keys_and_means_over_domains():
    r = evaluate(_by_item_id, _tiny_task(), "valid", [2])
    flat = r.flat("valid")
    assert set(flat) == {f"valid_{m}2_{d}" for m in ("recall", "ndcg") for d in ("book", "music", "mean")}
    assert flat["valid_recall2_mean"] == pytest.approx((0.5 + 1) / 2)
    assert r.flat() == flat


def test_user_blocks_do_not_change_the_result_and_bad_scores_are_rejected():
    task = _random_task(seed=3)
    fn = _random_score_fn(task)
    a = evaluate(fn, task, "test", [5, 10], user_block=7, per_user=True)
    b = evaluate(fn, task, "test", [5, 10], user_block=1000, per_user=True)
    assert a.values == pytest.approx(b.values)
    assert a.per_user.equals(b.per_user)
    with pytest.raises(ValueError, match=r"must return a \[\d+, 11\] tensor"):
        evaluate(lambda u, k: torch.zeros(len(u), 3), task, "test", [5])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(lambda u, k: torch.full((len(u), task.n_items[k]), float("nan")), task, "test", [5])

    def one_nan(u, k):
        s = torch.zeros(len(u), task.n_items[k])
        s[-1, -1] = float("nan")
        return s

    with pytest.raises(ValueError, match="NaN"):
        evaluate(one_nan, task, "test", [5])
    with pytest.raises(ValueError, match="split"):
        evaluate(fn, task, "train", [5])
    with pytest.raises(ValueError, match="torch.distributed"):
        evaluate(fn, task, "test", [5], rank=0, world=2)


# ---------------------------------------------------------------- two ranks (gloo)
def _random_task(seed: int) -> TaskData:
    rng = np.random.default_rng(seed)
    n_users, n_items = 30, (11, 17)
    splits = {s: [] for s in ("train", "valid", "test")}
    for k, n in enumerate(n_items):
        per = {s: [] for s in splits}
        for u in range(n_users):
            items = rng.permutation(n)[: rng.integers(0, 8)]
            for j, i in enumerate(items):
                per[("train", "valid", "test")[j % 3]].append((u, int(i)))
        for s in splits:
            splits[s].append(_inter(per[s]))
    return TaskData("random", ("a", "b"), n_users, n_items, *(tuple(splits[s]) for s in ("train", "valid", "test")))


def _random_score_fn(task: TaskData):
    g = torch.Generator().manual_seed(0)
    tables = [torch.rand(task.n_users, n, generator=g) for n in task.n_items]
    return lambda users, k: tables[k][users]


def _rank_worker(rank: int, world: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)  # a forked child must not reuse the parent's OpenMP pool
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world)
    try:
        task = _random_task(seed=1)
        r = evaluate(_random_score_fn(task), task, "test", [1, 5, 10], rank=rank, world=world, per_user=True)
        with open(f"{out_dir}/rank{rank}.pkl", "wb") as f:
            pickle.dump((r.values, r.counts, r.per_user), f)
    finally:
        dist.destroy_process_group()


def test_two_ranks_give_the_single_process_result(tmp_path):
    task = _random_task(seed=1)
    single: EvalResult = evaluate(_random_score_fn(task), task, "test", [1, 5, 10], per_user=True)
    # fork, not spawn: a spawned child re-imports torch (seconds on a loaded 2-core machine)
    mp.start_processes(_rank_worker, args=(2, file_rendezvous(tmp_path), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.pkl", "rb") as f:
            values, counts, per_user = pickle.load(f)
        assert counts == single.counts
        assert values == pytest.approx(single.values, rel=1e-12)
        assert per_user.equals(single.per_user)


def test_a_user_sample_is_seeded_ranks_every_item_and_matches_the_sampled_users_full_metrics():
    task = _random_task(seed=5)
    fn = _random_score_fn(task)
    full = evaluate(fn, task, "valid", [5, 10], per_user=True).per_user
    a = evaluate(fn, task, "valid", [5, 10], per_user=True, user_sample=10, sample_seed=3)
    b = evaluate(fn, task, "valid", [5, 10], per_user=True, user_sample=10, sample_seed=3)
    c = evaluate(fn, task, "valid", [5, 10], per_user=True, user_sample=10, sample_seed=4)
    assert a.per_user.equals(b.per_user)  # a fixed sample: the same users every call
    assert not a.per_user["user"].equals(c.per_user["user"])
    for dom in task.domains:
        assert a.counts[dom] == min(10, (full["domain"] == dom).sum())
    # every item is still ranked: a sampled user's metrics are exactly its full-evaluation row
    merged = a.per_user.merge(full, on=["user", "domain"], suffixes=("", "_full"))
    assert len(merged) == len(a.per_user)
    assert np.allclose(merged["ndcg@10"], merged["ndcg@10_full"])
    everyone = evaluate(fn, task, "valid", [5], user_sample=10**6)
    assert everyone.counts == evaluate(fn, task, "valid", [5]).counts
