"""The comparison's figures (matplotlib, Agg backend: no display needed).

- ``main_figure``: a metric per task and domain, one bar per method, ± std over seeds.
- ``trajectories_figure``: the domain weights and the loss ratios L_k(epoch) / L_k(epoch 1)
  over training, one row of panels per task (from the runs' per-epoch history).
- ``balancing_figure``: the subsampled-domain study: the metric per domain for each
  balancer, and GradNorm's weights over training.

``histories`` is the long frame written as ``histories.parquet``: one row per study x
task x method x seed x epoch x domain with columns ``loss`` and ``weight``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from adc_dist.compare.table import METHOD_LABELS, column_label, ordered_methods, summarise  # noqa: E402

_COLORS = {
    "popularity": "#bbbbbb", "bpr_mf": "#8c8c8c", "cmf": "#555555", "mlp_single": "#9ecae1",
    "neumf": "#c7e9c0", "dtcdr": "#31a354", "adc_paper": "#9e9ac8",
    "adc_equal": "#fdae6b", "adc_static": "#e6550d", "adc_uncertainty": "#74c476", "adc_gradnorm": "#3182bd",
}
_STYLES = {"adc_gradnorm": "-", "adc_uncertainty": "--", "adc_equal": ":", "adc_static": "-."}


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _label(metric: str) -> str:
    return metric.replace("ndcg", "NDCG").replace("recall", "Recall")


def _bars(ax, results: pd.DataFrame, metric: str, with_mean: bool) -> None:
    s = summarise(results, metric)
    methods = ordered_methods(s.index)
    cols = [c for c in s["mean"].columns if with_mean or c != "mean"]
    width = 0.8 / len(methods)
    x = np.arange(len(cols))
    for j, m in enumerate(methods):
        mu = s["mean"].loc[m, cols].to_numpy(float)
        sd = np.nan_to_num(s["std"].loc[m, cols].to_numpy(float))
        ax.bar(x + (j - (len(methods) - 1) / 2) * width, mu, width, yerr=sd, capsize=1.5,
               color=_COLORS.get(m), label=METHOD_LABELS.get(m, m), error_kw={"lw": 0.7})
    ax.set_xticks(x, cols, rotation=30, ha="right")
    ax.set_ylabel(_label(metric))
    ax.grid(axis="y", alpha=0.3)


def main_figure(results: pd.DataFrame, path: Path, metric: str = "ndcg@10", title: str = "") -> Path:
    n_cols = results.groupby(["task", "domain"]).ngroups + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 1.15 * n_cols), 4.2))
    _bars(ax, results, metric, with_mean=True)
    ax.legend(ncol=4, fontsize=8, loc="upper left", bbox_to_anchor=(0, -0.28))
    ax.set_title(title or f"Test {_label(metric)} (mean ± std over seeds)")
    return _save(fig, path)


def trajectories_figure(histories: pd.DataFrame, path: Path, methods=("adc_gradnorm", "adc_uncertainty"),
                        title: str = "") -> Path:
    """Per task (row): each method's weights w_k (one panel each: their scales differ), and the
    loss ratios L_k(t)/L_k(1) of all of them (last panel); per epoch, mean over seeds."""
    h = histories[histories["method"].isin(methods)]
    tasks = list(dict.fromkeys(h["task"]))
    present = [m for m in methods if (h["method"] == m).any()]
    ncols = len(present) + 1
    fig, axes = plt.subplots(len(tasks), ncols, figsize=(3.6 * ncols, 2.3 * len(tasks) + 0.6), squeeze=False,
                             sharex=True)
    for row, task in zip(axes, tasks):
        ht = h[h["task"] == task]
        domains = list(dict.fromkeys(ht["domain"]))
        for j, m in enumerate(present):
            hm = ht[ht["method"] == m]
            first = hm[hm["epoch"] == hm.groupby(["seed", "domain"])["epoch"].transform("min")]
            hm = hm.merge(first[["seed", "domain", "loss"]].rename(columns={"loss": "loss0"}), on=["seed", "domain"])
            mean = hm.assign(ratio=hm["loss"] / hm["loss0"]).groupby(["domain", "epoch"])[["weight", "ratio"]].mean()
            for i, dom in enumerate(domains):
                if dom not in mean.index.get_level_values(0):
                    continue
                md = mean.loc[dom]
                row[j].plot(md.index, md["weight"], color=f"C{i}", label=dom)
                row[-1].plot(md.index, md["ratio"], color=f"C{i}", ls=_STYLES.get(m, "-"),
                             label=f"{METHOD_LABELS.get(m, m)}: {dom}")
            row[j].set_title(f"{task.removeprefix('amazon-')}: {METHOD_LABELS.get(m, m)} w_k", fontsize=9)
            row[j].legend(fontsize=7)
        row[-1].set_title(f"{task.removeprefix('amazon-')}: L_k(t) / L_k(1)", fontsize=9)
        row[-1].legend(fontsize=6)
        for ax in row:
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.suptitle(title or "Domain weights and training-loss ratios per epoch (mean over seeds)", y=1.0)
    fig.tight_layout()
    return _save(fig, path)


def balancing_figure(results: pd.DataFrame, histories: pd.DataFrame, path: Path, small_domain: str,
                     metric: str = "ndcg@10") -> Path:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1.2, 1]})
    _bars(a, results, metric, with_mean=True)
    a.legend(fontsize=8)
    a.set_title(f"Test {_label(metric)}, '{small_domain}' train positives cut to 10 %")
    h = histories[histories["method"] == "adc_gradnorm"]
    mean = h.groupby(["domain", "epoch"])["weight"].agg(["mean", "min", "max"])
    for i, dom in enumerate(dict.fromkeys(h["domain"])):
        md = mean.loc[dom]
        b.plot(md.index, md["mean"], color=f"C{i}", label=f"{dom}{' (10 %)' if dom == small_domain else ''}")
        b.fill_between(md.index, md["min"], md["max"], color=f"C{i}", alpha=0.2)
    b.set_xlabel("epoch")
    b.set_ylabel("GradNorm weight w_k")
    b.set_title("GradNorm's domain weights (mean, min-max over seeds)")
    b.legend(fontsize=8)
    b.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["main_figure", "trajectories_figure", "balancing_figure", "column_label"]
