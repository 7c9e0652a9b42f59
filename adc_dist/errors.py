"""The one exception type that reaches users as a message instead of a traceback."""

from __future__ import annotations

import sys
from typing import Callable, NoReturn


class AdcError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it.

    Command-line entry points catch it, print ``error: <message>`` to stderr and exit
    with status 2; nothing else in the package should print tracebacks for bad input.
    """


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run ``main`` and turn an :class:`AdcError` into one line on stderr and exit 2."""
    try:
        code = main()
    except AdcError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)
