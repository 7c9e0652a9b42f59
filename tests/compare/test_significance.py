"""Paired tests on synthetic per-user data whose outcome is known."""

import numpy as np
import pandas as pd
import pytest

from adc_dist.compare.significance import holm, paired_test, versus_best_other


def test_a_clear_shift_is_significant_and_no_shift_is_not():
    rng = np.random.default_rng(0)
    b = rng.uniform(0, 1, 400)
    better = paired_test(b + 0.05 + rng.normal(0, 0.05, 400), b)
    assert better["mean_diff"] > 0 and better["wilcoxon_p"] < 1e-6 and better["ttest_p"] < 1e-6
    same = paired_test(b + rng.normal(0, 0.05, 400), b)
    assert same["wilcoxon_p"] > 0.05 and same["ttest_p"] > 0.05


def test_identical_methods_give_p_one_instead_of_an_error():
    x = np.array([0.0, 0.5, 1.0])
    out = paired_test(x, x.copy())
    assert out["wilcoxon_p"] == 1.0 and out["ttest_p"] == 1.0 and out["n_nonzero"] == 0


def test_holm_matches_hand_computation():
    # sorted p: 0.01*3=0.03, 0.02*2=0.04, 0.04*1=0.04 (running max); then back in input order
    np.testing.assert_allclose(holm(np.array([0.04, 0.01, 0.02])), [0.04, 0.03, 0.04])
    np.testing.assert_allclose(holm(np.array([0.5, 0.9])), [1.0, 1.0])  # 2*0.5 = 1, then the running max


def _per_user(rng, shift):
    rows = []
    users = np.arange(300)
    base = rng.uniform(0, 1, len(users))
    means = {"gradnorm": base + shift, "cmf": base, "pop": base - 0.3}
    for method, m in means.items():
        for seed in range(2):
            for u, v in zip(users, m + rng.normal(0, 0.02, len(users))):
                rows.append({"task": "t", "method": method, "seed": seed, "domain": "a", "user": u, "ndcg@10": v})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("shift,verdict", [(0.05, "gradnorm better"), (-0.05, "cmf better"),
                                           (0.0, "no significant difference")])
def test_versus_best_other_picks_the_strongest_rival_and_gets_the_direction(shift, verdict):
    out = versus_best_other(_per_user(np.random.default_rng(1), shift), "gradnorm")
    assert len(out) == 1
    row = out.iloc[0]
    assert row["method_b"] == "cmf" and row["n_users"] == 300
    assert row["verdict"] == verdict
