"""``python -m adc_dist.cluster check FILE [FILE ...]``: check cluster files offline.

    python -m adc_dist.cluster check cluster/aws-gpu.yaml          # one file
    python -m adc_dist.cluster check cluster/                      # every file under cluster/
    python -m adc_dist.cluster check --strict my-cluster.yaml      # before `ray up`: warnings
                                                                   # (CHANGE_ME left) fail too

One line per problem: ``FILE:LINE: error|warning: PATH.IN.DOCUMENT: what is wrong``, then
``fix: ...``. Exit status 0 when no errors, 1 when there are errors (or warnings with
--strict), 2 when a file is missing or not YAML.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Sequence

from adc_dist.cli.argparser import Parser
from adc_dist.cluster.check import check_file
from adc_dist.errors import AdcError, run_cli


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m adc_dist.cluster",
               description="Check Ray cluster launcher YAMLs and KubeRay manifests offline.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="check files (or every file under a directory)")
    c.add_argument("paths", nargs="+", metavar="FILE", help="a file, or a directory to check recursively")
    c.add_argument("--strict", action="store_true",
                   help="warnings fail too (placeholders such as CHANGE_ME left in the file)")
    c.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    return p


def expand(paths: Sequence[str]) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not any(
                part.startswith(".") or part == "__pycache__" for part in f.relative_to(p).parts))
        elif p.is_file() or os.path.lexists(p):  # a pipe or a broken link: check_file names what it is
            out.append(p)
        else:
            raise AdcError(f"{p}: no such file or directory")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    files = expand(args.paths)
    errors = warnings = 0
    for f in files:
        for problem in check_file(f):
            if problem.severity == "error":
                errors += 1
            else:
                warnings += 1
                if args.quiet:
                    continue
            print(problem.format())
    failed = errors + (warnings if args.strict else 0)
    verdict = "FAILED" if failed else "ok"
    print(f"{verdict}: {len(files)} file(s), {errors} error(s), {warnings} warning(s)"
          + (" (--strict: warnings count)" if args.strict and warnings else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    run_cli(main)
