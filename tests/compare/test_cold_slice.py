"""The cold-user slice of the comparison: per-user rows of users with <= 3 train items in the domain."""

import pandas as pd

from adc_dist.compare.methods import COLD_MAX_TRAIN_ITEMS
from adc_dist.compare.report import cold_slice
from adc_dist.compare.table import markdown_table


def _per_user() -> pd.DataFrame:
    rows = []
    for method, bonus in (("bpr_mf", 0.0), ("adc_gradnorm", 0.1)):
        for seed in (0, 1):
            for user, train_items in enumerate([1, 3, 4, 10]):
                for domain in ("book", "music"):
                    rows.append({"study": "main", "task": "t", "method": method, "seed": seed, "domain": domain,
                                 "user": user, "train_items": train_items, "recall@10": 0.5, "recall@20": 0.5,
                                 "ndcg@10": user / 10 + bonus, "ndcg@20": 0.0})
    sparse = pd.DataFrame(rows).assign(study="sparse-music-10pct", train_items=1)
    return pd.concat([pd.DataFrame(rows), sparse], ignore_index=True)


def test_cold_slice_keeps_the_main_study_users_with_at_most_three_train_items():
    assert COLD_MAX_TRAIN_ITEMS == 3
    cold = cold_slice(_per_user())
    assert set(cold["study"]) == {"main"}  # the sparse study's users are not the slice
    assert len(cold) == 2 * 2 * 2  # method x seed x domain
    assert (cold["n_users"] == 2).all()  # users 0 and 1 (1 and 3 train items), not 4 or 10
    g = cold.set_index(["method", "seed", "domain"])["ndcg@10"]
    assert g[("bpr_mf", 0, "book")] == (0.0 + 0.1) / 2
    assert abs(g[("adc_gradnorm", 1, "music")] - (0.1 + 0.2) / 2) < 1e-12
    table = markdown_table(cold, "ndcg@10")
    assert "ADC GradNorm" in table and "BPR-MF" in table
