"""The comparison's markdown tables: mean ± std over seeds, the best mean per column in bold.

Input is the long ``results.parquet`` frame (one row per study x task x method x seed x
domain with one column per metric). One table per metric: a row per method, a column per
task and domain, plus ``mean``: the average over all columns, taken per seed first so its
± is the spread over seeds too. std is the sample standard deviation (ddof=1) over seeds.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

METRICS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")

# Display order and names; methods not listed keep their own name, after these.
METHOD_LABELS = {
    "popularity": "MostPop",
    "bpr_mf": "BPR-MF (per domain)",
    "cmf": "CMF (shared users)",
    "neumf": "NeuMF (per domain)",
    "dtcdr": "DTCDR-style (pooled users)",
    "mlp_single": "ADC on one domain (no transfer)",
    "adc_equal": "ADC equal",
    "adc_static": "ADC static (tuned)",
    "adc_uncertainty": "ADC uncertainty",
    "adc_gradnorm": "ADC GradNorm",
    "adc_paper": "ADC paper preset (GradNorm)",
}


def ordered_methods(methods) -> list[str]:
    present = set(methods)
    return [m for m in METHOD_LABELS if m in present] + sorted(present - set(METHOD_LABELS))


def cut_domain(study: str) -> str:
    """The domain a sparse study cut: ``sparse-<domain>-10pct`` -> ``<domain>``."""
    return study.removeprefix("sparse-").removesuffix("-10pct")


def cut_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The sparse studies' rows of their cut domain only (results or per-user rows)."""
    return frame[[s != "main" and d == cut_domain(s) for s, d in zip(frame["study"], frame["domain"])]]


def column_label(task: str, domain: str) -> str:
    return f"{task.removeprefix('amazon-')}: {domain}"


def summarise(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean and std over seeds: index method, columns (stat, column label), incl. ``mean``."""
    df = results.assign(column=[column_label(t, d) for t, d in zip(results["task"], results["domain"])])
    per_seed = df.pivot_table(index=["method", "seed"], columns="column", values=metric, aggfunc="mean", sort=False)
    columns = list(dict.fromkeys(df["column"]))  # first-seen order: task by task
    per_seed = per_seed[columns]
    per_seed["mean"] = per_seed.mean(axis=1, skipna=False)
    g = per_seed.groupby(level="method", sort=False)
    return pd.concat({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}, axis=1)


def markdown_table(results: pd.DataFrame, metric: str, digits: int = 4) -> str:
    """One markdown table for ``metric``; the best mean of each column (at the shown precision) in bold."""
    s = summarise(results, metric)
    methods = ordered_methods(s.index)
    cols = list(s["mean"].columns)
    best = {c: np.round(s["mean"][c].max(), digits) for c in cols}
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for m in methods:
        cells = []
        for c in cols:
            mu, sd, n = s["mean"].at[m, c], s["std"].at[m, c], s["n"].at[m, c]
            if np.isnan(mu):
                cells.append("–")
                continue
            cell = f"{mu:.{digits}f} ± {sd:.{digits}f}" if n > 1 else f"{mu:.{digits}f}"
            cells.append(f"**{cell}**" if np.round(mu, digits) == best[c] else cell)
        lines.append(f"| {METHOD_LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _p(p: float) -> str:
    return "< 1e-300" if p == 0 else f"{p:.2g}"  # 0.0 is a float underflow, not a p-value


def significance_table(sig: pd.DataFrame) -> str:
    """The paired tests (adc_dist.significance.versus_best_other) as a markdown table."""
    lines = ["| task: domain | rival | users | ADC GradNorm | rival's | Δ | Wilcoxon p | t-test p | Holm p | verdict |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in sig.itertuples():
        verdict = r.verdict
        for m in (r.method_a, r.method_b):
            verdict = verdict.replace(f"{m} better", f"{METHOD_LABELS.get(m, m)} better")
        lines.append(
            f"| {column_label(r.task, r.domain)} | {METHOD_LABELS.get(r.method_b, r.method_b)} | {r.n_users} | "
            f"{r.mean_a:.4f} | {r.mean_b:.4f} | {r.mean_diff:+.4f} | {_p(r.wilcoxon_p)} | {_p(r.ttest_p)} | "
            f"{_p(r.p_holm)} | {verdict} |")
    return "\n".join(lines)


def choice_table(choice: pd.DataFrame) -> str:
    """Joint or one-domain training per task (adc_dist.compare.targets.joint_or_single) as a
    markdown table: what validation saw, what it chose, and what test says of both."""
    lines = ["| task | best ADC variant on validation | its valid NDCG@10 | one-domain ADC's | chosen | "
             "test: ADC variant | test: one-domain ADC | test: BPR-MF |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in choice.itertuples():
        lines.append(f"| {r.task} | {METHOD_LABELS.get(r.adc, r.adc)} | {r.adc_valid:.4f} | {r.single_valid:.4f} | "
                     f"{METHOD_LABELS.get(r.chosen, r.chosen)} | "
                     f"{r.adc_test:.4f} | {r.single_test:.4f} | {r.bpr_mf_test:.4f} |")
    return "\n".join(lines)
