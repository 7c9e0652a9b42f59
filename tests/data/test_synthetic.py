"""synthetic:<users>x<domains>: seeded, power-law, domains of different sizes, planted transfer."""

from __future__ import annotations

import numpy as np
import pytest

from adc_dist.data import load_task, resolve_tasks
from adc_dist.data.synthetic import generate, parse
from adc_dist.errors import AdcError


def test_the_spec_parses_and_bad_specs_are_one_line_errors():
    assert parse("synthetic:100000x2") == (100_000, 2, 0)
    assert parse("synthetic:5000x3:7") == (5000, 3, 7)
    assert resolve_tasks("synthetic:2000x2,amazon-book-music") == ["synthetic:2000x2", "amazon-book-music"]
    for bad, why in [("synthetic:1e5x2", "write synthetic:"), ("synthetic:100000", "write synthetic:"),
                     ("synthetic:50x2", "users must be"), ("synthetic:1000x1", "domains must be")]:
        with pytest.raises(AdcError, match=why):
            resolve_tasks(bad)


def test_a_synthetic_task_loads_through_the_cache_and_is_seeded(tmp_path):
    a = load_task("synthetic:3000x3", cache_dir=tmp_path, seed=1)
    b = load_task("synthetic:3000x3", cache_dir=tmp_path, seed=1)  # read back from the cache
    assert a.domains == ("s0", "s1", "s2") and a.n_users <= 3000
    n = [len(a.train[k]) + len(a.valid[k]) + len(a.test[k]) for k in range(3)]
    assert n[0] > n[1] > n[2] > 0 and a.n_items[0] > a.n_items[1] > a.n_items[2]  # different sizes
    for k in range(3):
        assert np.array_equal(a.train[k].users, b.train[k].users) and np.array_equal(a.test[k].items, b.test[k].items)
    other = generate(3000, 3, seed=1)
    assert not other[["user", "item"]].equals(generate(3000, 3, seed=0)[["user", "item"]])


def test_activity_and_popularity_are_heavy_tailed():
    t = generate(20_000, 2)
    d0 = t[t["domain"] == "s0"]
    per_user = np.bincount(d0["user"])
    per_user = per_user[per_user > 0]
    per_item = np.sort(np.bincount(d0["item"]))[::-1]
    assert np.median(per_user) >= 3 and np.percentile(per_user, 99) > 5 * np.median(per_user)
    top = per_item[: len(per_item) // 100].sum() / per_item.sum()
    assert top > 0.05  # the top 1 % of the items hold far more than 1 % of the positives


def test_the_planted_shared_group_transfers_across_domains():
    """Users who share many domain-0 items also share more domain-1 items than random pairs."""
    t = generate(4000, 2)
    sets = [t[t["domain"] == d].groupby("user")["item"].apply(set) for d in ("s0", "s1")]
    both = sets[0].index.intersection(sets[1].index)[:600]
    rng = np.random.default_rng(0)
    pairs = rng.choice(both, size=(4000, 2))

    def jaccard(d, a, b):
        x, y = sets[d][a], sets[d][b]
        return len(x & y) / len(x | y)

    j0 = np.array([jaccard(0, a, b) for a, b in pairs])
    j1 = np.array([jaccard(1, a, b) for a, b in pairs])
    similar = j0 > np.percentile(j0, 90)
    assert j1[similar].mean() > 1.5 * j1[~similar].mean()
