"""``python -m adc_dist.data`` (also ``adc-data``): list, describe and prepare tasks.

    python -m adc_dist.data list
    python -m adc_dist.data describe amazon-book-music [--seed 0] [--min-rating 4]
    python -m adc_dist.data prepare six|all|TASK[,TASK...] [--data-root DIR] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import time

from adc_dist.cli.argparser import Parser

from adc_dist.data import stats
from adc_dist.data.load import prepare
from adc_dist.data.registry import SIX, TASKS, resolve_tasks
from adc_dist.data.split import PROTOCOL
from adc_dist.errors import run_cli


def _parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--data-root", help="folder laid out like shared/data (default: $ADC_DATA_ROOT, "
                                            "else the download cache)")
    common.add_argument("--cache-dir", help="split and download cache (default: $ADC_CACHE_DIR, "
                                            "else ~/.cache/adc_dist)")
    common.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    common.add_argument("--min-rating", type=float, default=None,
                        help="keep only ratings >= this as positives (default: every rating)")
    p = Parser(prog="python -m adc_dist.data", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the registered tasks")
    d = sub.add_parser("describe", parents=[common], help="users, items, overlap, density and split sizes")
    d.add_argument("task")
    r = sub.add_parser("prepare", parents=[common], help="build the split caches")
    r.add_argument("tasks", help="six, all, or comma-separated task names")
    return p


def _list() -> None:
    width = max(map(len, TASKS))
    for name, spec in TASKS.items():
        tag = "six" if name in SIX else "   "
        print(f"{name:<{width}}  {tag}  K={len(spec.domains)}  {','.join(spec.domains):<21} {spec.about}")
    print("\nsix = the six ADC paper tasks; file:<path> reads your own data under the data root (docs/data.md)")


def _describe(args: argparse.Namespace) -> None:
    p = prepare(args.task, data_root=args.data_root, seed=args.seed, min_rating=args.min_rating,
                cache_dir=args.cache_dir)
    t, meta = p.task, p.task.meta
    minr = "every rating" if args.min_rating is None else f"ratings >= {args.min_rating:g}"
    print(f"task {t.name}: dataset {meta['dataset']}, K={t.num_domains}, {minr}, seed {meta['seed']}")
    print(f"split {PROTOCOL['name']} v{PROTOCOL['version']}: per user and domain "
          f"{1 - PROTOCOL['valid'] - PROTOCOL['test']:.0%}/{PROTOCOL['valid']:.0%}/{PROTOCOL['test']:.0%} "
          f"train/valid/test; users with < {PROTOCOL['min_items']} items in a domain are train-only")
    print(f"cache {p.path}")
    print(f"users {t.n_users:,} (with an interaction in any domain)\n")
    cols = ["domain", "users", "items", "interactions", "density", "train", "valid", "test"]
    print("  ".join(f"{c:>12}" for c in cols))
    for row in stats.domain_stats(t):
        cells = [row["domain"]] + [f"{row[c]:,}" for c in ("users", "items", "interactions")] + \
                [f"{row['density']:.5f}"] + [f"{row[c]:,}" for c in ("train", "valid", "test")]
        print("  ".join(f"{c:>12}" for c in cells))
    print("\noverlapping users")
    for (a, b), n in stats.overlaps(t).items():
        print(f"  {a}-{b}: {n:,}")
    print("\nmirrored items (the same set of >= 2 users, e.g. editions of one product)")
    for k, dom in enumerate(t.domains):
        m = stats.mirror_stats(t, k)
        print(f"  {dom}: {m['mirrored_items']:,} of {t.n_items[k]:,} items in {m['groups']:,} groups "
              f"(largest {m['largest']}); {m['test_with_train_mirror']:.0%} of the test pairs have a mirror "
              "among the user's train items")


def _prepare(args: argparse.Namespace) -> None:
    from adc_dist.cli.progress import bar

    names = resolve_tasks(args.tasks)
    t0 = time.perf_counter()
    with bar(len(names), "prepare", unit="task", enabled=len(names) > 1) as progress:
        for i, name in enumerate(names, 1):
            p = prepare(name, data_root=args.data_root, seed=args.seed, min_rating=args.min_rating,
                        cache_dir=args.cache_dir)
            what = "built" if p.built else "cached"
            progress.write(f"[{i}/{len(names)}] {name}: {what} in {p.seconds:.2f} s -> {p.path}")
            progress.update(1)
    print(f"{len(names)} task(s) ready in {time.perf_counter() - t0:.1f} s")


def run(argv: list[str] | None = None) -> int:
    """The command, raising AdcError on bad input (what tests call)."""
    from adc_dist.inputs.paths import absolute, absolutize_env

    absolutize_env()
    args = _parser().parse_args(argv)
    for key in ("data_root", "cache_dir"):
        if hasattr(args, key):
            setattr(args, key, absolute(getattr(args, key)))
    if args.command == "list":
        _list()
    elif args.command == "describe":
        _describe(args)
    else:
        _prepare(args)
    return 0


def main() -> None:
    """Entry point of ``python -m adc_dist.data`` and ``adc-data``: errors as one line, exit 2."""
    run_cli(run)


if __name__ == "__main__":
    main()
