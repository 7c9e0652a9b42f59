"""The MF guard's margin (tests/train/test_guard_mf.py) by epoch count and seed: ADC's loop with a
dot-product scorer against BPR-MF, best validation NDCG@10 of Music (amazon-book-music) after
each epoch count. One run of the longest count per seed and method, read at every count (an
epoch does not depend on the total: no schedule). The guard's epoch count is chosen from this.

    ADC_DATA_ROOT=../shared/data python benchmarks/guard_margin.py --seeds 0 1 2 3 --epochs 10 15 30
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "train"))
from test_guard_mf import L2, SETTINGS, ZERO_INIT  # noqa: E402  (the guard's own settings)

from adc_dist.compare.baselines.mf import fit_factor_model  # noqa: E402
from adc_dist.config import TrainConfig  # noqa: E402
from adc_dist.train.launch import run  # noqa: E402
from adc_dist.train.loop import prepare_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--epochs", type=int, nargs="+", default=[10, 15, 30])
    a = ap.parse_args()
    last = max(a.epochs)
    for seed in a.seeds:
        cfg = TrainConfig(task="amazon-book-music", domains=["music"], seed=seed, interaction="gmf",
                          user_repr="shared", item_bias=True, loss="bpr", l2=L2, balancer="equal", epochs=last,
                          patience=0, topk=[10], zero_init=ZERO_INIT, num_workers=1,
                          storage_path=tempfile.mkdtemp(), name="guard", **SETTINGS).validate()
        hist = pd.read_parquet(Path(run(cfg, local=True, quiet=True).run_dir) / "history.parquet")
        adc = hist.set_index("epoch")["valid_ndcg10_mean"].cummax()
        mf = fit_factor_model(prepare_task(cfg), loss="bpr", reg=L2, epochs=last, eval_every=1, patience=0,
                              ks=(10,), seed=seed, **SETTINGS).history.set_index("epoch")["valid_ndcg10_mean"].cummax()
        for e in a.epochs:
            print(f"seed {seed} after {e:>3} epochs: ADC loop {adc[e]:.4f}  BPR-MF {mf[e]:.4f}  "
                  f"ratio {adc[e] / mf[e]:.1%}", flush=True)


if __name__ == "__main__":
    main()
