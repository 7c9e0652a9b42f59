"""Console scripts (``adc-train``, ``adc-tune``, ...): the same as ``python -m adc_dist.X``.

Each wraps the module's ``main`` in :func:`adc_dist.errors.run_cli`, so a bad input prints
one ``error: ...`` line and exits 2 instead of a traceback, whichever way it was started.
Imports are inside the functions: ``adc-data`` must not pay for importing Ray.
"""

from __future__ import annotations

from adc_dist.errors import run_cli


def train() -> None:
    from adc_dist.train.launch import main

    run_cli(main)


def tune() -> None:
    from adc_dist.tune.driver import main

    run_cli(main)


def report() -> None:
    from adc_dist.tune.report import main

    run_cli(main)


def compare() -> None:
    from adc_dist.compare.driver import main

    run_cli(main)


def cluster() -> None:
    from adc_dist.cluster.__main__ import main

    run_cli(main)
