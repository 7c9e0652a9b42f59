"""``python -m adc_dist.report RESULTS_DIR``: best configuration per task and the paper's figures.

Reads only the Parquet files of a results directory (local path or pyarrow URI) and
writes PNGs into ``RESULTS_DIR/figures/`` (or ``--out``):

``recall_at_n.png``          Recall@N and NDCG@N against N, best trial of each task (test)
``ndcg_vs_<param>.png``      test NDCG@N against each searched numeric hyper-parameter
                             (num_hidden_layers, gamma, d, negatives, ...), the other keys
                             held at the sweep's reference point (see slice_points)
``domain_weights.png``       the domain weights per epoch of each task's best trial

"Best" is always chosen on validation (``valid_score``) and reported on test, so the
figures never select on the test set.
"""

from __future__ import annotations

import io
from typing import Any

import pandas as pd

from adc_dist.errors import AdcError
from adc_dist.tune.records import OK, STOPPED
from adc_dist.tune.results import Results, load_results, open_storage

# Searched parameters the paper plots, in its order; others get figures too if varied.
PAPER_PARAMS = ("num_hidden_layers", "gamma", "d", "negatives")
PARAM_LABEL = {
    "num_hidden_layers": "number of shared hidden layers",
    "gamma": "GradNorm asymmetry gamma",
    "d": "embedding size d",
    "negatives": "negatives per positive (rho)",
}
# Columns that vary between trials but are not hyper-parameters.
NOT_HYPER = {"task", "name", "storage_path", "resume", "data_root"}


# ------------------------------------------------------------------------- tables
def varied_params(trials: pd.DataFrame) -> list[str]:
    """Config columns with more than one value in the sweep (the searched keys)."""
    from adc_dist.tune.records import CONFIG_FIELDS

    out = []
    for f in CONFIG_FIELDS:
        if f.name in NOT_HYPER or f.name not in trials:
            continue
        vals = trials[f.name].map(lambda v: tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v)
        if vals.nunique(dropna=False) > 1:
            out.append(f.name)
    return out


def best_per_task(trials: pd.DataFrame) -> pd.DataFrame:
    """The trial with the highest validation score of each task (finished trials first)."""
    scored = trials[trials["status"].isin([OK, STOPPED]) & trials["valid_score"].notna()]
    if scored.empty:
        return scored
    # A trial that finished beats one ASHA stopped: only it has test metrics.
    scored = scored.assign(_ok=(scored["status"] == OK).astype(int))
    idx = scored.sort_values(["_ok", "valid_score"], ascending=False).groupby("task", sort=True).head(1).index
    return trials.loc[idx].sort_values("task")


def best_table(res: Results) -> pd.DataFrame:
    trials = res.trials
    best = best_per_task(trials)
    params = varied_params(trials)
    counts = trials.groupby("task")["status"].value_counts().unstack(fill_value=0)
    rows = []
    for _, t in best.iterrows():
        row = {"task": t["task"], "trial": t["trial_id"]}
        for p in params:
            row[p] = t[p]
        row[f"valid {t['score_metric']}"] = t["valid_score"]
        row[f"test {t['score_metric']}"] = t["test_score"]
        m = t["metrics"]
        for n in t["topk"]:
            if f"test_recall{n}_mean" in m:
                row[f"test R@{n}"] = m[f"test_recall{n}_mean"]
        row["trials ok/stopped/error"] = "/".join(
            str(int(counts.loc[t["task"]].get(s, 0))) for s in (OK, STOPPED, "error"))
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------ figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _mean_metric(res: Results, trial_ids: pd.Series, split: str, metric: str) -> pd.DataFrame:
    m = res.metrics
    sel = m[(m["trial_id"].isin(trial_ids)) & (m["split"] == split) & (m["metric"] == metric) & (m["domain"] == "mean")]
    return sel


def fig_recall_at_n(res: Results):
    plt = _plt()
    best = best_per_task(res.trials)
    best = best[best["status"] == OK]
    if best.empty:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, label in ((axes[0], "recall", "Recall@N"), (axes[1], "ndcg", "NDCG@N")):
        for _, t in best.iterrows():
            sel = _mean_metric(res, pd.Series([t["trial_id"]]), "test", metric)
            sel = sel[sel["sweep"] == t["sweep"]].sort_values("n")
            if not sel.empty:
                ax.plot(sel["n"], sel["value"], marker="o", label=t["task"])
        ax.set_xlabel("N (length of the recommendation list)")
        ax.set_ylabel(f"test {label} (mean over domains)")
        ax.set_title(f"{label} against N, best trial per task")
        ax.grid(alpha=0.3)
        ns = sorted(res.metrics["n"].unique())
        ax.set_xticks(ns)
    axes[1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def _hashable(v: Any) -> Any:
    return tuple(v) if hasattr(v, "__len__") and not isinstance(v, str) else v


def slice_points(trials: pd.DataFrame, param: str) -> pd.DataFrame:
    """One trial per task and value of ``param``, the others held at a reference point.

    The reference of each other searched key is its most frequent value among the task's
    finished trials (a one_at_a_time sweep's base), ties going to the best trial's value (a
    grid: the slice through the best configuration). Where no trial of a value sits at
    the reference (ASHA stopped it, random search), the value's best trial by validation
    stands in, flagged ``exact = False``. Chosen on validation, plotted on test.
    """
    ok = trials[(trials["status"] == OK) & trials["valid_score"].notna() & trials["test_score"].notna()]
    others = [q for q in varied_params(trials) if q != param]
    picked = []
    for _, g in ok.groupby("task"):
        g = g.assign(**{q: g[q].map(_hashable) for q in others})
        best = g.loc[g["valid_score"].idxmax()]
        ref = {}
        for q in others:
            counts = g[q].value_counts()
            top = list(counts[counts == counts.max()].index)
            ref[q] = best[q] if best[q] in top else top[0]
        for _, gx in g.groupby(param):
            at_ref = gx
            for q in others:
                at_ref = at_ref[at_ref[q] == ref[q]]
            pool, exact = (at_ref, True) if not at_ref.empty else (gx, False)
            picked.append(trials.loc[[pool["valid_score"].idxmax()]].assign(exact=exact))
    if not picked:
        return ok.assign(exact=True)
    return pd.concat(picked).sort_values(["task", param])


def fig_metric_vs(res: Results, param: str, metric: str, n: int):
    plt = _plt()
    pts = slice_points(res.trials, param)
    if pts.empty or pts[param].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for task, g in pts.groupby("task"):
        y = [m.get(f"test_{metric}{n}_mean") for m in g["metrics"]]
        (line,) = ax.plot(g[param], y, marker="o", label=task)
        loose = ~g["exact"].to_numpy()
        if loose.any():  # hollow: best over the other keys, not at the reference point
            ax.plot(g[param].to_numpy()[loose], [v for v, l in zip(y, loose) if l], "o", mfc="white",
                    mec=line.get_color(), zorder=3)
    label = f"{'NDCG' if metric == 'ndcg' else 'Recall'}@{n}"
    ax.set_xlabel(PARAM_LABEL.get(param, param))
    ax.set_ylabel(f"test {label} (mean over domains)")
    ax.set_title(f"{label} against {PARAM_LABEL.get(param, param)}")
    if pd.api.types.is_integer_dtype(pts[param]):
        ax.set_xticks(sorted(pts[param].unique()))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never hides a line
    fig.tight_layout()
    return fig


def fig_domain_weights(res: Results):
    plt = _plt()
    from matplotlib.ticker import MaxNLocator

    best = best_per_task(res.trials)
    hist = res.history
    if best.empty or hist.empty:
        return None
    n = len(best)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (_, t) in zip(axes.flat, best.iterrows()):
        h = hist[(hist["sweep"] == t["sweep"]) & (hist["trial_id"] == t["trial_id"])].sort_values("epoch")
        w = pd.DataFrame(list(h["weight"]), index=h["epoch"])
        for dom in w.columns:
            ax.plot(w.index, w[dom], marker=".", label=dom)
        ax.set_title(f"{t['task']}\n{t['balancer']}, gamma={t['gamma']:g} ({t['trial_id']})", fontsize=9)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("domain weight w_k")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle("Domain weights of the best trial per task")
    fig.tight_layout()
    return fig


def render(res: Results, out, metric: str = "ndcg", n: int = 10) -> list[str]:
    """Write every figure the results support into storage ``out``; returns the names."""
    figs: dict[str, Any] = {"recall_at_n.png": fig_recall_at_n(res)}
    varied = varied_params(res.trials)
    params = [p for p in PAPER_PARAMS if p in varied]
    params += [p for p in varied if p not in params and pd.api.types.is_numeric_dtype(res.trials[p])
               and not pd.api.types.is_bool_dtype(res.trials[p])]
    for p in params:
        figs[f"{metric}_vs_{p}.png"] = fig_metric_vs(res, p, metric, n)
    figs["domain_weights.png"] = fig_domain_weights(res)
    written = []
    for name, fig in figs.items():
        if fig is not None:
            out.write_bytes(name, _png(fig))
            written.append(name)
    return written


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    from adc_dist.cli.argparser import Parser
    from adc_dist.inputs.paths import absolute

    ap = Parser(prog="python -m adc_dist.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="results directory of a sweep: a local path or a URI (s3://...)")
    ap.add_argument("--out", help="where to write the PNGs (default: RESULTS/figures)")
    ap.add_argument("--metric", default="ndcg@10", help="metric of the *_vs_* figures (default ndcg@10)")
    ap.add_argument("--sweep", help="only this sweep's trials (a directory may hold several)")
    args = ap.parse_args(argv)
    args.results, args.out = absolute(args.results), absolute(args.out)
    metric, _, n = args.metric.partition("@")
    if metric not in ("ndcg", "recall") or not n.isdigit():
        raise AdcError(f"--metric must be ndcg@N or recall@N (got {args.metric!r})")
    res = load_results(args.results)
    if args.sweep:
        keep = lambda df: df[df["sweep"] == args.sweep]  # noqa: E731
        res = Results(keep(res.trials), keep(res.metrics), keep(res.history))
        if res.trials.empty:
            raise AdcError(f"{args.results} has no trial of sweep {args.sweep!r}")
    if int(n) not in set(res.metrics["n"]):
        raise AdcError(f"--metric {args.metric}: the sweep evaluated N in {sorted(set(res.metrics['n']))}")

    table = best_table(res)
    pd.set_option("display.width", 200)
    print(f"{len(res.trials)} trials in {args.results}; best configuration per task (chosen on validation):")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.4f}") if not table.empty else "  (no finished trial)")
    errors = res.trials[res.trials["status"] == "error"]
    for _, t in errors.head(5).iterrows():
        print(f"failed: {t['task']} {t['trial_id']}: {str(t['error']).splitlines()[-1] if t['error'] else ''}")

    out = open_storage(args.out) if args.out else open_storage(args.results).child("figures")
    written = render(res, out, metric, int(n))
    print(f"figures in {out.uri}: {', '.join(written) if written else '(none: no finished trial)'}")
    return 0
