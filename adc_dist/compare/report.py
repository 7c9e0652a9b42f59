"""Write what ``adc_dist.compare`` collected: Parquet files, the markdown report, the figures.

Under the output folder:

    results.parquet       one row per study x task x method x seed x domain: recall@10/20,
                          ndcg@10/20 (means over the domain's test users), n_users, the tuned
                          config (JSON), best_epoch, seconds
    per_user.parquet      the same per test user (float32): the input of the paired tests;
                          train_items: the user's train positives in that domain (cold: <= 3)
    tuning.parquet        every configuration tried on validation, with its NDCG@10
    histories.parquet     the ADC runs' per-epoch loss, domain weight, valid NDCG@10 (long)
    significance.parquet  the paired tests (adc_dist.significance)
    settings.json         the protocol (seeds, budget, fixed settings), for --merge
    results.md            the targets, the tables, the tests, joint or one-domain training chosen
                          per task on validation, the tuned configurations, the settings
    main_ndcg10.png, trajectories.png, balancing.png
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from adc_dist.compare import figures as figs
from adc_dist.compare.methods import COLD_MAX_TRAIN_ITEMS
from adc_dist.compare.significance import versus_best_other
from adc_dist.compare.table import (METHOD_LABELS, METRICS, choice_table, cut_domain, cut_rows, markdown_table,
                                    significance_table)
from adc_dist.compare.targets import joint_or_single, target_lines
from adc_dist.train.run_dir import write_bytes, write_parquet

TARGET = "adc_gradnorm"


def _compact(df: pd.DataFrame) -> pd.DataFrame:
    """Small on disk: categorical strings, int32 users, float32 metrics."""
    out = df.copy()
    for c in ("study", "task", "method", "domain"):
        if c in out:
            out[c] = out[c].astype("category")
    if "user" in out:
        out["user"] = out["user"].astype("int32")
    for c in METRICS:
        if c in out:
            out[c] = out[c].astype("float32")
    return out


def significance(per_user: pd.DataFrame) -> pd.DataFrame:
    """The paired tests, one family (Holm) per ``comparison``:

    main study, every task x domain: GradNorm vs the best other method, vs tuned static;
    sparse studies, the cut domain of every task: GradNorm vs the best other method, vs BPR-MF,
    vs tuned static.
    """
    main = per_user[per_user["study"] == "main"]
    cut = cut_rows(per_user)
    parts = []
    for frame, rival, name in ((main, None, "best other"), (main, "adc_static", "tuned static"),
                               (cut, None, "sparse: best other"), (cut, "bpr_mf", "sparse: BPR-MF"),
                               (cut, "adc_static", "sparse: tuned static")):
        if rival is not None:
            frame = frame[frame["method"].isin([TARGET, rival])]
            if frame["method"].nunique() < 2:
                continue
        parts.append(versus_best_other(frame, TARGET).assign(comparison=name))
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _gradnorm_lines(res: pd.DataFrame, columns: str = "task-domain columns") -> list[str]:
    """Honest one-liners: in how many task x domain columns does GradNorm beat tuned static / equal?"""
    out = []
    for rival in ("adc_static", "adc_equal"):
        m = res[res["method"].isin([TARGET, rival])]
        if m["method"].nunique() < 2:
            continue
        means = m.groupby(["task", "domain", "method"])["ndcg@10"].mean().unstack("method")
        wins = int((means[TARGET] > means[rival]).sum())
        out.append(f"- ADC GradNorm has a higher mean test NDCG@10 than {METHOD_LABELS[rival]} in {wins} of "
                   f"{len(means)} {columns} (mean over the columns: GradNorm {means[TARGET].mean():.4f}, "
                   f"{METHOD_LABELS[rival]} {means[rival].mean():.4f}).")
    return out


def cold_slice(per_user: pd.DataFrame) -> pd.DataFrame:
    """Rows like results.parquet's, over the main study's cold users only (n_users: how many)."""
    pu = per_user[(per_user["study"] == "main") & (per_user["train_items"] <= COLD_MAX_TRAIN_ITEMS)]
    keys = ["study", "task", "method", "seed", "domain"]
    g = pu.groupby(keys, observed=True)
    return g[list(METRICS)].mean().join(g.size().rename("n_users")).reset_index()


def report_markdown(res: pd.DataFrame, sig: pd.DataFrame, tuning: pd.DataFrame, settings, wall_s: float,
                    reused: int = 0, computed: int = 0, per_user: pd.DataFrame | None = None,
                    produced: str | None = None, targets: list[str] | None = None) -> str:
    """The report; ``produced`` replaces the sentence saying which command made it, where and how fast
    (a merge of comparisons: adc_dist.compare.merge); ``targets``: ``target_lines`` of these rows when
    the caller has them already (they run paired tests)."""
    main = res[res["study"] == "main"]
    n_seeds = res["seed"].nunique()
    cache = (f" ({reused} of {reused + computed} work units were read from the cache "
             f"`{settings.work}` of earlier invocations)" if reused else "")
    produced = produced or (f"Produced by `{settings.command}` in {wall_s / 60:.1f} min{cache} on "
                            f"{platform.node()} ({os.cpu_count()} CPUs, CPU only)")
    lines = ["# ADC against baselines: results", "",
             f"{produced}. Seeds {settings.seeds} (each seed is the split seed and the "
             f"model seed); validation budget {settings.budget} configurations per method; "
             f"mean ± sample std over the {n_seeds} seeds; the best mean per column in **bold**.", ""]
    found = _gradnorm_lines(main)
    if found:
        lines += found + [""]
    targets = target_lines(res, per_user, tuning) if targets is None else targets
    if targets:
        lines += ["## Targets: ADC against per-domain BPR-MF", "", *targets, ""]
    if main.empty:
        lines += ["The main study was tuned but not retrained on test (`--sparse-only`).", ""]
    for metric in METRICS if len(main) else ():
        lines += [f"## Test {metric.replace('ndcg', 'NDCG').replace('recall', 'Recall')}", "",
                  markdown_table(main, metric), ""]
    if len(sig):
        for comp, title in (("best other", "ADC GradNorm against the best other method"),
                            ("tuned static", "ADC GradNorm against ADC with tuned static weights")):
            if comp not in set(sig["comparison"]):
                continue
            part = sig[sig["comparison"] == comp]
            if len(part):
                lines += [f"## Paired tests: {title}", "",
                          "Per-user test NDCG@10 averaged over the seeds; two-sided Wilcoxon signed-rank and "
                          "paired t-test over the users; Holm-adjusted over the rows of this table; verdict at "
                          "level 0.05.", "", significance_table(part), ""]
    choice = joint_or_single(res, tuning)
    if len(choice):
        lines += ["## Joint or one-domain training, chosen per task on validation", "",
                  "Per task, the ADC variant with the highest validation NDCG@10 against the same network "
                  "trained on one domain at a time (one-domain ADC), both at their best configuration on "
                  "seed 0's validation split (means over the task's domains); the higher one is chosen, test "
                  "never enters the choice. Test: mean over the task's domains of the means over the seeds.",
                  "", choice_table(choice), ""]
    cold = cold_slice(per_user) if per_user is not None else pd.DataFrame()
    if len(cold):
        lines += [f"## Cold users: test NDCG@10 of users with at most {COLD_MAX_TRAIN_ITEMS} train items in the "
                  "domain (main study)", "", markdown_table(cold, "ndcg@10"), ""]
    sparse = res[res["study"] != "main"]
    if len(sparse):
        lines += ["## Sparse-domain study: each task's smaller domain cut to 10 % of its train positives", "",
                  "The cut domain keeps a seeded 10 % of its train positives (valid and test unchanged); static "
                  "weights and GradNorm's gamma are tuned on the cut task's validation split, the learning rate "
                  "and the baselines' configurations are the main study's. Columns: task: domain (study).", ""]
        cut = cut_rows(sparse)
        found = _gradnorm_lines(cut, columns="cut domains")
        lines += found + [""] if found else []
        cols = sparse.assign(task=[f"{t} ({s})" for t, s in zip(sparse["task"], sparse["study"])])
        for metric in ("ndcg@10", "recall@10"):
            lines += [f"Test {metric}:", "", markdown_table(cols, metric), ""]
        for comp, title in (("sparse: best other", "ADC GradNorm against the best other method"),
                            ("sparse: BPR-MF", "ADC GradNorm against BPR-MF"),
                            ("sparse: tuned static", "ADC GradNorm against ADC with tuned static weights")):
            part = sig[sig["comparison"] == comp] if len(sig) else sig
            if len(part):
                lines += [f"## Paired tests on the cut domain: {title}", "",
                          "Per-user test NDCG@10 of the cut domain's test users, averaged over the seeds; "
                          "two-sided Wilcoxon signed-rank and paired t-test; Holm-adjusted over the rows of this "
                          "table; verdict at level 0.05.", "", significance_table(part), ""]
    lines += ["## Tuned configurations", "", "| study | task | method | chosen | valid NDCG@10 | tried |",
              "|---|---|---|---|---:|---:|"]
    for (study, task, method), g in tuning.groupby(["study", "task", "method"], sort=False):
        if g["valid_ndcg10"].isna().all():  # one candidate: taken without a validation run
            lines.append(f"| {study} | {task} | {METHOD_LABELS.get(method, method)} | `{g['config'].iloc[0]}` | "
                         f"(not run) | 1 |")
            continue
        b = g.loc[g["valid_ndcg10"].idxmax()]
        lines.append(f"| {study} | {task} | {METHOD_LABELS.get(method, method)} | `{b['config']}` | "
                     f"{b['valid_ndcg10']:.4f} | {len(g)} |")
    lines += ["", "## Settings", "", f"- ADC (every run): `{json.dumps(settings.adc)}`",
              f"- MF baselines (every run): `{json.dumps(settings.mf)}`", ""]
    return "\n".join(lines)


def write_outputs(collected, settings, *, wall_s: float, reused: int = 0, computed: int = 0,
                  produced: str | None = None, log: Callable[[str], Any] = print) -> None:
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    res = pd.DataFrame(collected.rows)
    per_user = pd.concat(collected.per_user, ignore_index=True)
    tuning = pd.DataFrame(collected.tuning)
    hist = pd.concat(collected.histories, ignore_index=True) if collected.histories else pd.DataFrame()
    sig = significance(per_user)

    write_parquet(str(out / "results.parquet"), _compact(res))
    cols = ["study", "task", "method", "seed", "domain", "user", "train_items", *METRICS]
    write_parquet(str(out / "per_user.parquet"), _compact(per_user[cols]))
    write_parquet(str(out / "tuning.parquet"), tuning)
    if len(hist):
        write_parquet(str(out / "histories.parquet"), _compact(hist))
    if len(sig):
        write_parquet(str(out / "significance.parquet"), sig)
    # The protocol, for a later --merge with another comparison (adc_dist.compare.merge).
    write_bytes(str(out / "settings.json"), json.dumps(settings.record(), indent=1, default=str).encode())
    targets = target_lines(res, per_user, tuning)  # in the report and on the terminal, computed once
    report = report_markdown(res, sig, tuning, settings, wall_s, reused, computed, per_user, produced, targets)
    write_bytes(str(out / "results.md"), report.encode())

    main = res[res["study"] == "main"]
    if len(main):
        figs.main_figure(main, out / "main_ndcg10.png")
    if len(hist):
        h = hist[hist["study"] == "main"]
        if h["method"].isin(["adc_gradnorm", "adc_uncertainty"]).any():
            figs.trajectories_figure(h, out / "trajectories.png")
        for study in sorted(set(res["study"]) - {"main"}):
            hs = hist[hist["study"] == study]
            if (hs["method"] == "adc_gradnorm").any() and hs["method"].isin(["adc_equal", "adc_static"]).any():
                figs.balancing_figure(res[res["study"] == study], hs, out / "balancing.png", cut_domain(study))
    for line in targets:  # the run's verdict at a glance
        log(line.removeprefix("- ").replace("**", ""))
    log(f"wrote {out}/results.md, results.parquet, per_user.parquet, figures ({wall_s / 60:.1f} min in all)")
