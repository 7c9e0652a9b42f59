"""ADC against BPR-MF tuned with negatives: paired tests between two comparison outputs.

``results/bpr-mf-retuned/`` is BPR-MF alone, rerun at the full protocol's seeds and budget
with the grid that has the number of negatives and L2 3e-3 (docs/compare.md, "The BPR-MF
baseline trained as ADC is"); ``results/full-protocol/`` holds every other method, trained
on the same splits. A plain ``--merge`` of the two refuses (their BPR-MF units differ, which
is the point); ``--merge ... --replace bpr_mf`` writes the comparison's report with the rerun,
whose paired tests put ADC GradNorm against the best other method. This pairs the per-user
test NDCG@10 of every method of the second folder with the rerun's BPR-MF, seeds averaged,
per task and domain of the rerun: two-sided Wilcoxon, Holm over the rows of each table
printed. Where the rerun has the sparse-domain study
(``--methods bpr_mf``, its sparse rows), a second table does the same on each task's cut
domain with the methods of that study.

    python benchmarks/bpr_retuned_paired.py results/bpr-mf-retuned results/full-protocol
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from adc_dist.compare.significance import holm, paired_test
from adc_dist.compare.table import METHOD_LABELS

RIVALS = ("bpr_mf", "mlp_single", "adc_equal", "adc_static", "adc_uncertainty", "adc_gradnorm")
# The sparse study's methods (compare/methods.py, SPARSE_METHODS), the old BPR-MF first.
SPARSE_RIVALS = ("bpr_mf", "popularity", "cmf", "adc_equal", "adc_static", "adc_gradnorm", "adc_paper")


def per_user(folder: Path) -> pd.DataFrame:
    path = folder / "per_user.parquet"
    if not path.exists():
        raise SystemExit(f"error: {path} is missing (over 1 MB, not committed): rerun that comparison's command "
                         "with its --work cache, on the code that filled it, to write it again (docs/compare.md, "
                         "\"The BPR-MF baseline trained as ADC is\")")
    d = pd.read_parquet(path)
    # The sparse study evaluates every domain; only the cut one (named in the study) is asked about.
    cut = d["study"].astype(str).str.extract(r"^sparse-(.+)-10pct$")[0]
    d = d[(d["study"] == "main") | (cut == d["domain"].astype(str))]
    return d.groupby(["study", "task", "domain", "method", "user"], observed=True)["ndcg@10"].mean()


def paired(new: pd.Series, old: pd.Series, studies: list[str], rivals: tuple[str, ...]) -> pd.DataFrame:
    """Each rival of ``old`` against ``new``'s BPR-MF in every column of ``studies``; Holm over the rows."""
    rows = []
    for (study, task, dom), ref in new[new.index.get_level_values("study").isin(studies)].groupby(
            level=["study", "task", "domain"]):
        for rival in rivals:
            if (study, task, dom, rival) not in old.index.droplevel("user"):
                continue
            other = old.xs((study, task, dom, rival), level=["study", "task", "domain", "method"])
            ref_users = ref.droplevel(["study", "task", "domain"])
            both = pd.concat([other.rename("rival"), ref_users.rename("bpr")], axis=1, join="inner")
            r = paired_test(both["rival"].to_numpy(), both["bpr"].to_numpy())
            rows.append({"column": f"{task}: {dom}", "method": rival, "users": r["n_users"], "rival": r["mean_a"],
                         "retuned_bpr_mf": r["mean_b"], "diff": r["mean_diff"], "wilcoxon_p": r["wilcoxon_p"]})
    out = pd.DataFrame(rows)
    if len(out):
        out["holm_p"] = holm(out["wilcoxon_p"].to_numpy())
        out["method"] = out["method"].map(lambda m: METHOD_LABELS.get(m, m) + (" (the old grid)" if m == "bpr_mf" else ""))
    return out


def show(title: str, out: pd.DataFrame) -> None:
    print(f"{title}\n")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(out.to_string(index=False, float_format=lambda v: f"{v:.4f}" if abs(v) >= 1e-3 else f"{v:.2g}"))
    means = out.groupby("method", sort=False)[["rival", "retuned_bpr_mf"]].mean()
    print("\nmean over the columns:", "; ".join(f"{m} {v.rival:.4f}" for m, v in means.iterrows()),
          f"; re-tuned BPR-MF {float(np.mean(out.drop_duplicates('column')['retuned_bpr_mf'])):.4f}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rerun", type=Path, help="output folder of the BPR-MF rerun")
    ap.add_argument("others", type=Path, help="output folder with the other methods (same seeds)")
    a = ap.parse_args()
    new = per_user(a.rerun).xs("bpr_mf", level="method")
    old = per_user(a.others)
    studies = list(new.index.get_level_values("study").unique())
    tables = {"Main study: each method against the re-tuned BPR-MF (Holm over this table's rows)":
              paired(new, old, ["main"], RIVALS),
              "Sparse study: each task's cut domain, against the re-tuned BPR-MF on it (Holm over this table's rows)":
              paired(new, old, [st for st in studies if st != "main"], SPARSE_RIVALS)}
    if not any(len(t) for t in tables.values()):
        raise SystemExit(f"error: {a.others} has no column (study, task, domain) of {a.rerun}'s BPR-MF")
    for title, table in tables.items():
        if len(table):  # a --sparse-only rerun has no main table, a --no-balancing-study one no sparse table
            show(title, table)


if __name__ == "__main__":
    main()
