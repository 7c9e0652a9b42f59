"""Negative sampling: zero false negatives against the train CSR, uniform over the allowed
items, deterministic per (seed, epoch, rank, k), fast enough for every training step."""

from __future__ import annotations

import time

import numpy as np
import pytest

from adc_dist.data.sampling import NegativeSampler, rng_for
from adc_dist.data.task_data import Interactions, TaskData
from adc_dist.errors import AdcError


def tiny_task() -> TaskData:
    """2 users, one domain of 6 items: user 0 trains on 0, 1, 2 (valid 3); user 1 on 0..4."""
    train = Interactions(np.array([0, 0, 0, 1, 1, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2, 3, 4]))
    valid = Interactions(np.array([0]), np.array([3]))
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    return TaskData("tiny", ("a", "b"), 2, (6, 6), (train, train), (valid, empty), (empty, empty))


def test_no_negative_is_a_train_item_on_the_real_data(book_music):
    for k in range(book_music.num_domains):
        sampler = NegativeSampler(book_music, k)
        train = book_music.user_items("train", k)
        users = np.unique(book_music.train[k].users)
        neg = sampler.sample(users, 20, rng_for(0, 0, 0, k))
        assert neg.shape == (len(users), 20) and neg.dtype == np.int64
        assert ((neg >= 0) & (neg < book_music.n_items[k])).all()
        assert train[np.repeat(users, 20), neg.reshape(-1)].sum() == 0


def test_negatives_are_uniform_over_the_non_train_items():
    sampler = NegativeSampler(tiny_task(), 0)
    neg = sampler.sample(np.zeros(6000, np.int64), 5, np.random.default_rng(0))
    counts = np.bincount(neg.reshape(-1), minlength=6)
    assert counts[:3].sum() == 0  # train items never drawn; the valid item 3 is allowed
    assert np.all(np.abs(counts[3:] / counts.sum() - 1 / 3) < 0.01)
    assert set(sampler.sample(np.ones(50, np.int64), 4, np.random.default_rng(1)).reshape(-1)) == {5}


def test_same_stream_same_negatives_and_streams_differ(book_music):
    sampler = NegativeSampler(book_music, 0)
    users = book_music.train[0].users[:1024]
    a = sampler.sample(users, 5, rng_for(3, 1, 0, 0))
    assert np.array_equal(a, sampler.sample(users, 5, rng_for(3, 1, 0, 0)))
    for other in (rng_for(3, 2, 0, 0), rng_for(3, 1, 1, 0), rng_for(3, 1, 0, 1), rng_for(4, 1, 0, 0)):
        assert not np.array_equal(a, sampler.sample(users, 5, other))


def test_a_user_with_every_item_has_no_negative():
    train = Interactions(np.zeros(3, np.int64), np.arange(3))
    empty = Interactions(np.zeros(0, np.int64), np.zeros(0, np.int64))
    task = TaskData("full", ("a", "b"), 1, (3, 3), (train, train), (empty, empty), (empty, empty))
    with pytest.raises(AdcError, match="every item"):
        NegativeSampler(task, 0).sample(np.zeros(2, np.int64), 1, np.random.default_rng(0))


def test_sampling_a_batch_takes_milliseconds(book_music):
    sampler = NegativeSampler(book_music, 0)
    rng = rng_for(0, 0, 0, 0)
    users = rng.integers(0, book_music.n_users, 1024)
    sampler.sample(users, 5, rng)
    t0 = time.perf_counter()
    for _ in range(50):
        sampler.sample(users, 5, rng)
    # ~0.5 ms on the 2-core CI box; the bound leaves room for a loaded machine
    assert (time.perf_counter() - t0) / 50 < 0.01
