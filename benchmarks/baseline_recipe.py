"""Per-domain BPR-MF trained as ADC is trained: how much of one-domain ADC's lead is the recipe.

The comparison tuned BPR-MF over d, lr and L2 at one negative (evaluated every 5 epochs);
ADC's default trains the same kind of per-domain dot product (item bias, BPR) with 20
negatives, L2 3e-3, batch 1,024 and an evaluation every epoch. This trains BPR-MF on one
task and split, first at the configuration the comparison's old grid chose, then with ADC's
settings added one at a time, and prints validation and test NDCG@10 per domain (the same
split, seed and evaluator as ``python -m adc_dist.compare``; compare with its ``mlp_single``
row).

    ADC_DATA_ROOT=../shared/data python benchmarks/baseline_recipe.py --task amazon-music-video --seed 0
"""

from __future__ import annotations

import argparse
import time

from adc_dist.compare.baselines import fit_baseline
from adc_dist.compare.methods import load_study_task
from adc_dist.compare.runner import MF_FIXED
from adc_dist.train.evaluate import evaluate

# BPR-MF as every committed comparison up to results/full-protocol/ tuned it (one negative),
# with the comparison's MF settings ...
COMPARISON = {"d": 128, "lr": 1e-2, "reg": 1e-4, "negatives": 1, **MF_FIXED}
# ... and ADC's default training settings, added cumulatively (TrainConfig's defaults; the
# comparison's stage 1 chose lr 3e-3 for ADC on every task of the full protocol).
STEPS = [
    ("the full protocol's BPR-MF (1 negative, L2 1e-4)", {}),
    ("+ 20 negatives", {"negatives": 20}),
    ("+ L2 3e-3 (the comparison's BPR-MF default since)", {"reg": 3e-3}),
    ("+ batch 1,024, lr 3e-3, evaluated every epoch, patience 3",
     {"batch_size": 1024, "lr": 3e-3, "eval_every": 1, "patience": 3}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="amazon-music-video")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    task = load_study_task(a.task, a.seed)
    positives = sum(len(tr.users) for tr in task.train)
    params = dict(COMPARISON)
    for label, change in STEPS:
        params.update(change)
        t0 = time.perf_counter()
        scorer = fit_baseline("bpr_mf", task, params, seed=a.seed)
        seconds = time.perf_counter() - t0
        valid = evaluate(scorer.score_fn, task, "valid", [10]).flat("valid")
        test = evaluate(scorer.score_fn, task, "test", [10]).flat("test")
        per_domain = "  ".join(f"{d}: valid {valid[f'valid_ndcg10_{d}']:.4f} test {test[f'test_ndcg10_{d}']:.4f}"
                               for d in task.domains)
        print(f"{label}\n  {per_domain}  test mean {test['test_ndcg10_mean']:.4f}  "
              f"({seconds:.0f} s with evaluations; {positives:,} train positives, "
              f"{positives * (1 + params.get('negatives', 1)):,} scored pairs per epoch)", flush=True)


if __name__ == "__main__":
    main()
