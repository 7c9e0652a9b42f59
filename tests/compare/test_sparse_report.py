"""The sparse-domain study's paired tests and report: only the cut domain is tested, one Holm family
per comparison, and a --sparse-only run (no main-study rows) still writes its report."""

import numpy as np
import pandas as pd

from adc_dist.compare.report import report_markdown, significance
from adc_dist.compare.runner import Settings

METRICS = {"recall@10": 0.5, "recall@20": 0.5, "ndcg@20": 0.0}


def _per_user(n_users: int = 200) -> pd.DataFrame:
    """Two tasks; in each the cut domain ('b') has GradNorm clearly above BPR-MF on task t1 only."""
    rng = np.random.default_rng(0)
    rows = []
    for task, shift in (("t1", 0.2), ("t2", 0.0)):
        base = rng.uniform(0, 0.5, n_users)
        for method, bonus in (("bpr_mf", 0.0), ("cmf", -0.1), ("adc_gradnorm", shift)):
            for domain in ("a", "b"):
                v = base + (bonus if domain == "b" else 0.3) + rng.normal(0, 0.01, n_users)
                rows.append(pd.DataFrame({"study": f"sparse-b-10pct", "task": task, "method": method, "seed": 0,
                                          "domain": domain, "user": np.arange(n_users), "train_items": 1,
                                          "ndcg@10": v, **METRICS}))
    return pd.concat(rows, ignore_index=True)


def test_sparse_tests_pair_gradnorm_with_bpr_mf_on_the_cut_domain_only():
    sig = significance(_per_user())
    vs_bpr = sig[sig["comparison"] == "sparse: BPR-MF"].set_index("task")
    assert set(sig["comparison"]) == {"sparse: best other", "sparse: BPR-MF"}  # no main-study rows
    assert set(sig["domain"]) == {"b"} and len(vs_bpr) == 2  # the uncut domain 'a' is not tested
    assert vs_bpr.at["t1", "verdict"] == "adc_gradnorm better" and vs_bpr.at["t1", "mean_diff"] > 0.15
    assert vs_bpr.at["t2", "p_holm"] >= vs_bpr.at["t2", "wilcoxon_p"]  # Holm over this comparison's 2 rows
    assert (vs_bpr["method_b"] == "bpr_mf").all()


def test_a_sparse_only_report_has_the_study_tables_and_its_tests(tmp_path):
    pu = _per_user()
    keys = ["study", "task", "method", "seed", "domain"]
    g = pu.groupby(keys)
    res = g[["recall@10", "recall@20", "ndcg@10", "ndcg@20"]].mean().join(g.size().rename("n_users")).reset_index()
    tuning = pd.DataFrame([{"study": "main", "task": "t1", "method": "bpr_mf", "config": "{}",
                            "valid_ndcg10": float("nan")}])
    s = Settings(tasks=["t1", "t2"], methods=["bpr_mf", "cmf", "adc_gradnorm"], seeds=[0], budget=1, out=tmp_path,
                 work=tmp_path, adc={}, mf={}, main_finals=False, command="python -m adc_dist.compare --sparse-only")
    md = report_markdown(res, significance(pu), tuning, s, wall_s=60.0, per_user=pu)
    assert "not retrained on test (`--sparse-only`)" in md and "## Test NDCG@10" not in md
    assert "## Sparse-domain study" in md and "t1 (sparse-b-10pct): b" in md
    assert "## Paired tests on the cut domain: ADC GradNorm against BPR-MF" in md
    assert "| (not run) | 1 |" in md  # one candidate: taken without a validation run
