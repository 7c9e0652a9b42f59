"""Paired significance tests over users: is method A better than method B on the same users?

Per task and domain the per-user metric (NDCG@10 by default, averaged over the seeds so
each user counts once) of the target method is paired with that of the best *other*
method (highest mean over users), and two tests are run on the differences:

- Wilcoxon signed-rank (``scipy.stats.wilcoxon``, two-sided; users with a zero difference
  are dropped, its default ``zero_method="wilcox"``), which does not assume normality —
  per-user NDCG is far from normal (many zeros);
- the paired t-test (``scipy.stats.ttest_rel``, two-sided).

``p_holm`` is the Wilcoxon p-value Holm-adjusted over all the task x domain comparisons.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def paired_test(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Two-sided paired tests of ``a`` against ``b`` (same users, same order)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_test needs two 1-d arrays of equal length, got {a.shape} and {b.shape}")
    diff = a - b
    out = {"n_users": int(len(a)), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
           "mean_diff": float(diff.mean()), "n_nonzero": int(np.count_nonzero(diff))}
    if out["n_nonzero"] == 0:  # identical: no evidence of a difference (scipy would raise)
        return {**out, "wilcoxon_stat": np.nan, "wilcoxon_p": 1.0, "ttest_stat": np.nan, "ttest_p": 1.0}
    w = stats.wilcoxon(a, b, alternative="two-sided")
    t = stats.ttest_rel(a, b)
    return {**out, "wilcoxon_stat": float(w.statistic), "wilcoxon_p": float(w.pvalue),
            "ttest_stat": float(t.statistic), "ttest_p": float(t.pvalue)}


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as ``p``)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    out = np.empty_like(adj)
    out[order] = adj
    return out


def versus_best_other(per_user: pd.DataFrame, target: str, metric: str = "ndcg@10",
                      alpha: float = 0.05) -> pd.DataFrame:
    """One row per (task, domain): ``target`` against the best other method on ``metric``.

    ``per_user`` has columns task, method, seed, domain, user and the metric. The values
    are averaged over seeds per user; only users present for both methods are paired.
    ``verdict`` says which method is better at level ``alpha`` (Holm-adjusted Wilcoxon)
    or "no significant difference".
    """
    rows = []
    for (task, domain), g in per_user.groupby(["task", "domain"], sort=True):
        by_user = g.groupby(["method", "user"])[metric].mean().unstack("method")
        if target not in by_user:
            continue
        means = by_user.mean().drop(target)
        if means.empty:
            continue
        other = str(means.idxmax())
        pair = by_user[[target, other]].dropna()
        rows.append({"task": task, "domain": domain, "metric": metric, "method_a": target, "method_b": other,
                     **paired_test(pair[target].to_numpy(), pair[other].to_numpy())})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["p_holm"] = holm(out["wilcoxon_p"].to_numpy())
    out["verdict"] = [
        "no significant difference" if p >= alpha else (f"{a} better" if d > 0 else f"{b} better")
        for p, d, a, b in zip(out["p_holm"], out["mean_diff"], out["method_a"], out["method_b"])
    ]
    return out
