"""Device-side batches: exact negatives, uniformity, one pass per epoch, seeded streams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from adc_dist.data.task_data import Interactions, TaskData
from adc_dist.data import torch_sampler
from adc_dist.data.torch_sampler import DomainSampler, EpochBatches, generator, samplers_for
from adc_dist.errors import AdcError


@pytest.fixture(params=["dense grid", "searchsorted"])
def lookup(request, monkeypatch):
    """Both exclusion lookups: the dense grid of small domains and the sorted keys of large ones."""
    if request.param == "searchsorted":
        monkeypatch.setattr(torch_sampler, "DENSE_LOOKUP_MAX", 0)
    return request.param


def _task(train0: Interactions, n_users: int, n_items: int) -> TaskData:
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    other = Interactions(np.arange(n_users, dtype=np.int64), np.zeros(n_users, np.int64))
    return TaskData("t", ("a", "b"), n_users, (n_items, n_items), (train0, other), (empty, empty), (empty, empty))


def _epoch(samplers, epoch=0, rank=0, world=1, batch=256, rho=5, **kw):
    return EpochBatches(samplers, seed=7, epoch=epoch, rank=rank, world=world, batch_size=batch, negatives=rho, **kw)


def test_no_negative_is_a_train_item_on_the_real_data(book_music, lookup):
    samplers = samplers_for(book_music)
    assert (samplers[0]._grid is None) == (lookup == "searchsorted")
    for users, items in _epoch(samplers, batch=1024, block_pairs=20_000):  # several blocks
        for k, (u, cand) in enumerate(zip(users, items)):
            train = book_music.user_items("train", k)
            u_np, cand = np.array(u.tolist()), np.array(cand.tolist())  # own arrays (scipy indexing)
            neg = cand[:, 1:]
            assert train[np.repeat(u_np, neg.shape[1]), neg.reshape(-1)].sum() == 0
            assert train[u_np, cand[:, 0]].sum() == len(u_np)  # column 0: a train positive
            assert ((neg >= 0) & (neg < book_music.n_items[k])).all()


def test_negatives_are_uniform_over_the_items_the_user_has_not_trained_on(lookup):
    # user 0 trains on items 0..3 of 10: the negatives must spread evenly over items 4..9.
    task = _task(Interactions(np.zeros(4, np.int64), np.arange(4)), n_users=2, n_items=10)
    s = DomainSampler(task, 0)
    neg = s.negatives(torch.zeros(6000, dtype=torch.int64), 5, generator("cpu", 1)).reshape(-1)
    counts = np.bincount(neg.numpy(), minlength=10)
    assert counts[:4].sum() == 0
    assert chisquare(counts[4:]).pvalue > 1e-3  # uniform: a fair chi-square does not reject
    skewed = counts[4:].copy()
    skewed[0] += 600  # a 2 % bias on one item is rejected: the test has power
    assert chisquare(skewed).pvalue < 1e-3


def test_same_seed_epoch_rank_same_batches_and_a_restarted_epoch_repeats_them(book_music):
    samplers = samplers_for(book_music)
    first = list(_epoch(samplers, epoch=2, rank=1, world=2))
    # A restart: fresh samplers (as a new process builds them), the same epoch again.
    again = list(_epoch(samplers_for(book_music), epoch=2, rank=1, world=2))
    assert len(first) == len(again)
    for (u1, i1), (u2, i2) in zip(first, again):
        assert all(torch.equal(a, b) for a, b in zip(u1 + i1, u2 + i2))
    for other in (dict(epoch=3, rank=1), dict(epoch=2, rank=0)):
        diff = list(_epoch(samplers, world=2, **other))
        assert not torch.equal(diff[0][1][0], first[0][1][0])


def test_a_user_who_rated_every_item_is_left_out_with_a_count(lookup):
    # user 0 has every item of domain a; user 1 has two of them.
    train = Interactions(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 1]))
    s = DomainSampler(_task(train, n_users=2, n_items=3), 0)
    assert (s.dropped_users, s.dropped_positives, len(s)) == (1, 3, 2)
    (users, items), = list(_epoch([s], batch=8, rho=4))
    assert users[0].tolist() == [1, 1] and set(items[0][:, 1:].reshape(-1).tolist()) == {2}
    with pytest.raises(AdcError, match="every item"):
        s.negatives(torch.tensor([0]), 1, generator("cpu", 0))


def test_a_domain_where_every_user_rated_every_item_is_an_error():
    train = Interactions(np.array([0, 0]), np.array([0, 1]))
    with pytest.raises(AdcError, match="no negative can be sampled"):
        DomainSampler(_task(train, n_users=1, n_items=2), 0)


def test_a_small_domain_cycles_so_that_no_step_is_empty():
    task = _task(Interactions(np.array([0, 1]), np.array([0, 0])), n_users=40, n_items=5)
    batches = list(_epoch(samplers_for(task), batch=4, rho=2))
    assert len(batches) == 10  # the 40 users of domain b set the steps
    assert all(len(u[0]) == 1 for u, _ in batches)
