"""What ADC learns on a domain cut to a fraction of its train positives (the sparse study's setting).

    ADC_DATA_ROOT=../shared/data OMP_NUM_THREADS=1 python benchmarks/diagnose_cut_domain.py \
        [--task amazon-book-music] [--cut music] [--frac 0.1] [--set zero_init=false ...]

Trains the default model (plus any ``--set KEY=VALUE``) in this process, as
``python -m adc_dist.train --local`` does, and prints one JSON line with, on *validation*
only: each domain's NDCG@10 at the best epoch (the cut domain's per epoch too), and for the
cut domain the diagnostics of docs/model.md ("Zero-initialised tables"): the Spearman
correlation of the learnt item bias b_k with the items' cut train counts, NDCG@10 of a
ranking by b_k alone and by the train counts (most-popular), the mean norm of Q_k's rows
for items with and without a train positive and of S_k's rows for users with and without
one. The test NDCG@10 of the best epoch is printed too (the runs in docs/model.md chose on
validation only).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import spearmanr

from adc_dist.config import from_mapping
from adc_dist.model.network import ADC
from adc_dist.train.evaluate import evaluate
from adc_dist.train.loop import fit, prepare_task
from adc_dist.train.reporting import LocalReporter


class _KeepLast(LocalReporter):
    """Keeps the last checkpoint in memory (its ``best`` holds the best epoch's parameters)."""

    def __init__(self) -> None:
        super().__init__(None, quiet=True)
        self.last = None

    def report(self, metrics, checkpoint) -> None:
        self.last = checkpoint


def _valid_ndcg(scores: torch.Tensor, task, k: int) -> float:
    """Validation NDCG@10 of domain k when every user gets the same item scores."""
    def score_fn(users, kk):
        return scores.expand(len(users), -1).clone() if kk == k else torch.zeros(len(users), task.n_items[kk])
    return evaluate(score_fn, task, "valid", [10]).flat("valid")[f"valid_ndcg10_{task.domains[k]}"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="amazon-book-music")
    ap.add_argument("--cut", default="music", help="the domain cut to --frac of its train positives")
    ap.add_argument("--frac", type=float, default=0.1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="another TrainConfig field")
    a = ap.parse_args()
    sets = dict(s.split("=", 1) for s in a.set)
    cfg = from_mapping({"task": a.task, "subsample_domain": a.cut, "subsample_frac": a.frac, **sets}, where="--set")
    task = prepare_task(cfg)
    t0, rep = time.perf_counter(), _KeepLast()
    out = fit(cfg, rep, task=task)
    k, best = task.domains.index(a.cut), rep.last["best"]
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    model.load_state_dict(best["model"])
    hist = out["history"]
    res = {"set": sets, "seconds": round(time.perf_counter() - t0), "best_epoch": best["epoch"],
           **{f"valid_{d}": round(hist[best["epoch"] - 1][f"valid_ndcg10_{d}"], 4) for d in task.domains},
           **{f"test_{d}": round(out["final"][f"test_ndcg10_{d}"], 4) for d in task.domains}}
    counts = np.bincount(task.train[k].items, minlength=task.n_items[k])
    ties = 1e-3 * torch.rand(task.n_items[k], generator=torch.Generator().manual_seed(0))  # a seeded tie-break
    res["valid_mostpop"] = round(_valid_ndcg(torch.tensor(counts, dtype=torch.float32) + ties, task, k), 4)
    if model.item_bias is not None:
        b = model.item_bias[k].detach()
        res["bias_spearman_counts"] = round(float(spearmanr(b.numpy(), counts).correlation), 3)
        res["valid_bias_only"] = round(_valid_ndcg(b, task, k), 4)
    q = model.item_embs[k].weight.detach().norm(dim=1)
    res["q_norm_no_pos"] = round(float(q[counts == 0].mean()), 3)
    res["q_norm_pos"] = round(float(q[counts > 0].mean()), 3)
    if model.user_specific is not None:
        s = model.user_specific[k].weight.detach().norm(dim=1)
        seen = np.zeros(task.n_users, dtype=bool)
        seen[task.train[k].users] = True
        res["s_norm_no_pos"], res["s_norm_pos"] = round(float(s[~seen].mean()), 3), round(float(s[seen].mean()), 3)
    res[f"valid_{a.cut}_per_epoch"] = [round(h[f"valid_ndcg10_{a.cut}"], 4) for h in hist]
    print(json.dumps(res))


if __name__ == "__main__":
    main()
