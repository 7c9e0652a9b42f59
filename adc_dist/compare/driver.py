"""ADC against baselines on the six tasks, with one command: ``python -m adc_dist.compare``.

    python -m adc_dist.compare --tasks six --seeds 3 --budget 4 --out results/
    python -m adc_dist.compare --quick                     # one task end to end in minutes (CI)
    python -m adc_dist.compare --tasks amazon-dvd-video --methods cmf,adc_equal,adc_gradnorm
    python -m adc_dist.compare ... --set d=100 --set batch_size=1024   # other ADC settings
    python -m adc_dist.compare --merge results/a results/b --out results/ab   # runs made apart, one report
    python -m adc_dist.compare --merge results/a results/bpr --replace bpr_mf --out results/c  # a rerun baseline

Protocol (docs/compare.md):
1. Tune every method with the same validation budget N (``--budget``) on split seed 0:
   baselines in this process, the ADC variants through ``adc_dist.tune.driver.run_sweep`` (Ray
   Tune, one in-process worker per trial). Candidates: ``adc_dist.compare.methods``.
   Every method is selected on validation NDCG@10, mean over the task's domains.
2. Retrain each method's best configuration with seeds 0..S-1 (``--seeds``): seed s is
   both the split seed (``load_task(seed=s)``) and the model / sampling seed, identical
   for every method; test the best validated epoch, keep per-user metrics.
3. The sparse-domain study, on every task: its smaller domain cut to 10 % of its train
   positives (TrainConfig.subsample_domain / subsample_frac); the ADC balancers among
   --methods (equal, static, GradNorm; static and GradNorm re-tuned on the cut task) against
   MostPop, BPR-MF, CMF and the paper preset with their main-study configurations.
   With a budget of 1 every method runs its one (default) configuration without a
   validation run: there is nothing to choose (ADC and the paper preset at the grid's
   first learning rate, 1e-2, not TrainConfig's 5e-3; docs/compare.md).
4. Write under ``--out``: results.parquet (task x method x seed x domain, Recall/NDCG@10/20),
   per_user.parquet, tuning.parquet, histories.parquet, significance.parquet, results.md
   (tables, significance, tuned configurations) and the figures.

Everything finished is cached under ``<out>/tmp-work`` (ignored by git): a command that was
interrupted continues where it stopped when run again with the same arguments. A unit's key
holds the settings and a fingerprint of the code that computes it, so after an upgrade or a fix
the units are computed again (editing only the reporting modules keeps them).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Sequence

from adc_dist.cli.argparser import Parser
from adc_dist.compare import methods as cm
from adc_dist.compare.runner import ADC_FIXED, MF_FIXED, Comparison, Settings
from adc_dist.errors import AdcError, interrupted
from adc_dist.inputs.paths import absolute, absolutize_env

QUICK = {"tasks": "amazon-music-video", "budget": 2, "seeds": 2,
         "adc": {"d": 16, "epochs": 2, "eval_every": 1, "batch_size": 4096}, "mf": {"epochs": 4, "eval_every": 2}}
# TrainConfig keys the comparison itself sets per run: --set may not fix them.
NOT_SETTABLE = ("task", "seed", "lr", "balancer", "gamma", "balancer_lr", "static_weights", "domains",
                "subsample_domain", "subsample_frac", "name", "storage_path", "resume", "num_workers")


# ---------------------------------------------------------------------------- CLI
def build_parser() -> Parser:
    p = Parser(prog="python -m adc_dist.compare", description=__doc__.split("\n\n")[0],
               epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--tasks", help="'six' (default), 'all' or task names a,b")
    p.add_argument("--seeds", type=int, help="final runs per method: seeds 0..S-1 (default 3)")
    p.add_argument("--budget", type=int, help="configurations tried per method on validation (default 4)")
    p.add_argument("--out", help="output folder (default results/; required with --merge)")
    p.add_argument("--quick", action="store_true",
                   help=f"CI mode: one task ({QUICK['tasks']} unless --tasks), budget {QUICK['budget']}, "
                        f"{QUICK['seeds']} seeds, tiny models")
    p.add_argument("--methods", default="all", help=f"comma list of {', '.join(cm.METHODS)} (default all)")
    p.add_argument("--epochs", type=int, help=f"ADC's maximum epochs (default {ADC_FIXED['epochs']})")
    p.add_argument("--no-balancing-study", action="store_true", help="skip the sparse-domain study")
    p.add_argument("--sparse-only", action="store_true",
                   help="only the sparse-domain study: the main study is tuned (its configurations feed the "
                        "sparse runs) but not retrained on test")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", dest="set_values", default=[],
                   help="fix another ADC TrainConfig field in every run, e.g. --set d=100 (repeatable)")
    p.add_argument("--work", help="cache of finished units (default <out>/tmp-work)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--replace", metavar="METHODS",
                   help="with --merge: these methods' rows (comma list) come from the later input on the tasks "
                        "where it has them, not the earlier, e.g. a baseline rerun with a wider grid")
    p.add_argument("--merge", nargs="+", metavar="DIR",
                   help="run nothing: merge finished comparisons' output folders (same seeds, budget and fixed "
                        "settings) into --out, with the tables and paired tests across all their methods; one "
                        "folder: its report written again by this version")
    return p


# Flags that choose what a comparison runs: meaningless with --merge, which runs nothing.
RUN_FLAGS = ("tasks", "seeds", "budget", "quick", "epochs", "no_balancing_study", "sparse_only", "set_values", "work")


def merge_from_args(args: argparse.Namespace, argv: Sequence[str]) -> None:
    from adc_dist.compare.merge import run_merge

    given = [f for f in RUN_FLAGS if getattr(args, f) not in (None, False, [])] + (
        ["methods"] if args.methods != "all" else [])
    if given:
        raise AdcError(f"--merge runs nothing, so --{given[0].replace('_', '-').removesuffix('-values')} has no "
                       "effect: give only the folders, --out and --quiet")
    if not args.out:
        raise AdcError("--merge needs --out: the folder to write the merged comparison to")
    replace = [m.strip() for m in (args.replace or "").split(",") if m.strip()]
    unknown = [m for m in replace if m not in cm.METHODS]
    if unknown:
        raise AdcError(f"--replace: unknown method {unknown[0]!r}; choose from {', '.join(cm.METHODS)}")
    run_merge([Path(absolute(f)) for f in args.merge], Path(absolute(args.out)),
              " ".join(["python -m adc_dist.compare", *map(shlex.quote, argv)]), quiet=args.quiet, names=args.merge,
              replace=replace)


def settings_from_args(args: argparse.Namespace, argv: Sequence[str]) -> Settings:
    from adc_dist.config import FIELD_NAMES, coerce, from_mapping, unknown_key_error
    from adc_dist.data import resolve_tasks

    tasks = resolve_tasks(args.tasks or (QUICK["tasks"] if args.quick else "six"))
    if args.quick:
        tasks = tasks[:1]
    seeds = args.seeds if args.seeds is not None else (QUICK["seeds"] if args.quick else 3)
    budget = args.budget if args.budget is not None else (QUICK["budget"] if args.quick else 4)
    if seeds < 1:
        raise AdcError(f"--seeds must be >= 1 (got {seeds})")
    if not 1 <= budget <= len(cm.LR_GRID):
        raise AdcError(f"--budget must be between 1 and {len(cm.LR_GRID)} (got {budget})")
    methods = list(cm.METHODS) if args.methods == "all" else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in cm.METHODS]
    if unknown or not methods:
        raise AdcError(f"--methods: unknown method {unknown[0] if unknown else '(none)'!r}; "
                       f"choose from {', '.join(cm.METHODS)}")
    sparse = [m for m in cm.SPARSE_METHODS if m in methods]
    if args.sparse_only and (args.no_balancing_study or not sparse):
        raise AdcError("--sparse-only needs the sparse-domain study: drop --no-balancing-study and name at least "
                       f"one of {', '.join(cm.SPARSE_METHODS)} in --methods")
    adc = {**ADC_FIXED, **(QUICK["adc"] if args.quick else {})}
    sources: dict[str, str] = {}
    if args.epochs is not None:
        adc["epochs"] = args.epochs
        sources["epochs"] = "flag --epochs"
    for item in args.set_values:
        key, eq, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not eq:
            raise AdcError(f"--set expects KEY=VALUE (got {item!r})")
        if key not in FIELD_NAMES:
            raise unknown_key_error(key, "--set")
        if key in NOT_SETTABLE:
            raise AdcError(f"--set {key}: the comparison sets {key!r} itself")
        try:
            adc[key] = coerce(key, value)
        except AdcError as e:
            raise AdcError(f"{e} (from --set {item})") from None
        sources[key] = f"--set {item}"
    if adc.get("data_root"):
        adc["data_root"] = absolute(adc["data_root"])  # the runs happen in Ray's directories
    from_mapping(adc, where="compare settings", sources=sources)  # validate now, before any work
    out = Path(absolute(args.out or "results"))
    return Settings(tasks=tasks, methods=[m for m in cm.METHODS if m in methods], seeds=list(range(seeds)),
                    budget=budget, out=out, work=Path(absolute(args.work)) if args.work else out / "tmp-work", adc=adc,
                    mf={**MF_FIXED, **(QUICK["mf"] if args.quick else {})},
                    balancing=not args.no_balancing_study and bool(sparse), main_finals=not args.sparse_only,
                    quiet=args.quiet, command=" ".join(["python -m adc_dist.compare", *map(shlex.quote, argv)]))


def main(argv: Sequence[str] | None = None) -> int:
    absolutize_env()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.merge:
        merge_from_args(args, argv)
        return 0
    if args.replace:
        raise AdcError("--replace says which method a --merge takes from the later input: it needs --merge")
    s = settings_from_args(args, argv)
    c = Comparison(s)
    c.log(f"compare: {len(s.tasks)} task(s), methods {', '.join(s.methods)}, budget {s.budget}, seeds {s.seeds}; "
          f"{platform.node()} ({os.cpu_count()} CPUs); cache {s.work}")
    try:
        c.run()
    except BaseException as e:  # noqa: BLE001 - a Ctrl-C may arrive as another exception (errors.interrupted)
        if not interrupted(e):
            raise
        # run_cli prints "interrupted" and exits 130; what finished is in the cache.
        print(f"compare stopped: {c.computed} unit(s) finished in this run are cached under {s.work}; "
              "run the same command again to continue", file=sys.stderr, flush=True)
        raise
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    c.write()
    return 0
