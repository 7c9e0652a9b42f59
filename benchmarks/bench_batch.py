"""Validation NDCG@10 at equal epochs for several batch sizes, the learning rate scaled.

    python benchmarks/bench_batch.py                          # amazon-book-music, 1024/4096/16384, 20 epochs
    python benchmarks/bench_batch.py --batches 1024,4096 --epochs 10 --scaling sqrt,linear
    python benchmarks/bench_batch.py --batches 4096 --scaling none --epochs 30 --sparse-tables false,true
    python benchmarks/bench_batch.py --gpu --batches 1024,4096,16384,65536   # on a GPU: quality against epoch time

The learning rate of batch B is ``lr * (B / base_batch) ** p`` with p = 0.5 (``sqrt``,
the usual rule for Adam), 1 (``linear``) or 0 (``none``); ``lr`` (or ``--lr``) and
``base_batch`` are the config defaults. Every run trains in-process from the same seed with no early stop;
the table prints the validation NDCG@10 (mean over domains) after a few epochs, the best
epoch, and the training time per epoch. ``--sparse-tables`` compares the table optimizers
(false: dense Adam on every row; true: row-sparse gradients and LazyAdam, train/optim.py).
"""

from __future__ import annotations

import os

# Set before torch starts its OpenMP pool: spinning threads make small ops 20-50x slower
# when the cores are shared (tests/conftest.py says the same for the tests).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import tempfile

from adc_dist.config import TrainConfig
from adc_dist.train.launch import run

POWER = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="amazon-book-music")
    ap.add_argument("--batches", default="1024,4096,16384")
    ap.add_argument("--scaling", default="sqrt", help=f"comma-separated, of {', '.join(POWER)}")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=None, help="the learning rate at the base batch (default: the config's)")
    ap.add_argument("--gpu", action="store_true", help="train on cuda:0 (in-process, as test_gpu.py does)")
    ap.add_argument("--sparse-tables", default=None, help="comma-separated true/false (default: the config's)")
    args = ap.parse_args()
    base = TrainConfig(task=args.task, epochs=args.epochs, patience=0, seed=args.seed, num_workers=1, use_gpu=args.gpu,
                       storage_path=tempfile.mkdtemp(prefix="adc_bench_batch_"))
    if args.lr is not None:
        base = base.replace(lr=args.lr)
    marks = sorted({e for e in (1, 3, 5, 10, 20, args.epochs) if e <= args.epochs})
    print(f"{args.task}, seed {args.seed}, default lr {base.lr:g} at batch {base.batch_size}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'batch':>6} {'scaling':>8} {'lr':>9} {'sparse':>6} " + " ".join(f"{'ep' + str(e):>7}" for e in marks)
          + f" {'best':>7} {'@ep':>4} {'s/epoch':>8}")
    sparse_opts = [v.strip().lower() in ("1", "true", "yes", "on") for v in args.sparse_tables.split(",")
                   ] if args.sparse_tables else [base.sparse_tables]
    for sparse in sparse_opts:
        for scaling in args.scaling.split(","):
            for batch in (int(b) for b in args.batches.split(",")):
                lr = base.lr * (batch / base.batch_size) ** POWER[scaling]
                cfg = base.replace(batch_size=batch, lr=lr, sparse_tables=sparse, name=f"b{batch}-{scaling}-{sparse}")
                h = run(cfg, local=True, quiet=True).history
                ndcg = h["valid_ndcg10_mean"]
                print(f"{batch:>6} {scaling:>8} {lr:>9.2e} {str(sparse):>6} "
                      + " ".join(f"{ndcg.iloc[e - 1]:>7.4f}" for e in marks)
                      + f" {ndcg.max():>7.4f} {int(ndcg.idxmax()) + 1:>4} {h['epoch_time_s'].mean():>8.2f}",
                      flush=True)
    print(f"load average after the run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
