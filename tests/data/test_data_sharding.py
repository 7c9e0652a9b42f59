"""epoch_shard: equal shares, full coverage, overlap only in the padding, seeded per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from adc_dist.data.sharding import epoch_shard


@pytest.mark.parametrize("n, world", [(10, 3), (12, 4), (7, 1), (3, 5), (1, 2), (1000, 8)])
def test_shards_are_equal_cover_everything_and_overlap_only_in_padding(n, world):
    shards = [epoch_shard(n, r, world, seed=0, epoch=2) for r in range(world)]
    per = -(-n // world)
    assert all(s.dtype == np.int64 and len(s) == per for s in shards)
    everything = np.concatenate(shards)
    assert set(everything.tolist()) == set(range(n))
    # rank r holds positions r, r + world, ... of the padded permutation: rebuild it
    order = np.empty(per * world, np.int64)
    for r, s in enumerate(shards):
        order[r::world] = s
    assert np.array_equal(np.sort(order[:n]), np.arange(n))  # a permutation of 0..n-1 ...
    assert np.array_equal(order[n:], np.resize(order[:n], per * world - n))  # ... padded with its head


def test_shards_are_deterministic_and_change_with_epoch_and_seed():
    a = epoch_shard(100, 1, 4, seed=5, epoch=0)
    assert np.array_equal(a, epoch_shard(100, 1, 4, seed=5, epoch=0))
    assert not np.array_equal(a, epoch_shard(100, 1, 4, seed=5, epoch=1))
    assert not np.array_equal(a, epoch_shard(100, 1, 4, seed=6, epoch=0))


def test_empty_domain_and_bad_rank():
    assert epoch_shard(0, 0, 2, 0, 0).size == 0
    for rank, world in [(2, 2), (-1, 2), (0, 0)]:
        with pytest.raises(ValueError):
            epoch_shard(10, rank, world, 0, 0)
