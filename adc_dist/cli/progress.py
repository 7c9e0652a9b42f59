"""Progress bars with an ETA for the long commands (compare, sweeps, preparing many tasks).

tqdm does the rate and ETA arithmetic; the bar goes to stderr so that stdout keeps the
commands' own lines and tables (and stays clean when piped into a file).
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Iterator


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def write(self, line: str) -> None:
        print(line, flush=True)

    def set_postfix_str(self, s: str) -> None:
        pass


@contextmanager
def bar(total: int, desc: str, *, unit: str = "it", enabled: bool = True) -> Iterator[Any]:
    """A tqdm bar of ``total`` steps (or a stand-in that draws nothing when not ``enabled``)."""
    if not enabled:
        yield _NoBar()
        return
    from tqdm import tqdm

    # mininterval: in a log file (no terminal) each redraw is a line; one every 10 s is plenty.
    with tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
              mininterval=0.5 if sys.stderr.isatty() else 10.0, smoothing=0.1) as b:
        yield b
