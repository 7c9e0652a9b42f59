"""The one exception type that reaches users as a message instead of a traceback."""

from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
from typing import Callable, Iterator, NoReturn

# The longest error line a user sees (``error: `` included): enough for a path and a hint, and bounded even when a
# message quotes a huge input (a YAML alias bomb once gave an 8 MB message).
MAX_LINE = 300


class AdcError(Exception):
    """Bad input or environment: the message says what is wrong and how to fix it.

    Command-line entry points catch it, print ``error: <message>`` to stderr and exit
    with status 2; nothing else in the package should print tracebacks for bad input.
    """


def one_line(message: object, limit: int = MAX_LINE) -> str:
    """``message`` on one line (newlines and runs of blanks become one space), at most ``limit`` chars."""
    text = re.sub(r"\s+", " ", str(message)[: limit * 4]).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def find_adc_error(exc: BaseException | None) -> AdcError | None:
    """The AdcError behind ``exc``, however Ray wrapped it (a worker's or a trial's failure).

    Ray re-raises a remote exception as ``RayTaskError`` (subclassing the original type, the
    original under ``.cause``), Train V2 collects worker failures in a ``WorkerGroupError``
    (``.worker_failures``) and Tune in a ``TuneError``; Python chains keep ``__cause__``.
    """
    seen: set[int] = set()
    todo: list[BaseException] = [exc] if exc is not None else []
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(e, AdcError) and not isinstance(cause, BaseException):
            return e
        nested = [cause, e.__cause__, e.__context__, *e.args]
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict):
            nested += list(failures.values())
        todo += [n for n in nested if isinstance(n, BaseException)]
    return None


def raise_user_error(exc: BaseException) -> NoReturn:
    """Re-raise a failure from Ray as the plain AdcError it started as, else as it is."""
    found = find_adc_error(exc)
    if found is not None:
        raise AdcError(str(found)) from None
    raise exc


_ctrl_c_seen = False


def _note_ctrl_c(signum: int, frame: object) -> None:
    """Python's own SIGINT handler (raise KeyboardInterrupt), remembering that it ran."""
    global _ctrl_c_seen
    _ctrl_c_seen = True
    signal.default_int_handler(signum, frame)


@contextlib.contextmanager
def _ctrl_c_watched() -> Iterator[None]:
    """Remember a Ctrl-C even when the KeyboardInterrupt it raises does not survive: one that
    lands inside an import can come out as another exception (CPython 3.11 turned one raised
    while ``from urllib3.util.ssl_ import DEFAULT_CIPHERS`` failed, in Tune's import of
    tensorboardX, into ``TypeError: expected a message argument``). Only where Python's default
    handler is installed: a handler someone else set is theirs (Tune's, during a sweep, puts
    this one back when the sweep ends)."""
    global _ctrl_c_seen
    ours = threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if ours:
        signal.signal(signal.SIGINT, _note_ctrl_c)
    try:
        yield
    finally:
        if ours:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _ctrl_c_seen = False


def interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is the user's Ctrl-C: a KeyboardInterrupt, or, inside :func:`run_cli`,
    whatever a Ctrl-C turned into on its way up."""
    return isinstance(exc, KeyboardInterrupt) or _ctrl_c_seen


def run_cli(main: Callable[[], int | None]) -> NoReturn:
    """Run ``main``: an :class:`AdcError` becomes one ``error: ...`` line on stderr and exit 2,
    a Ctrl-C ``interrupted`` and exit 130.

    The path variables (ADC_DATA_ROOT, ...) are made absolute first, against the directory
    the command was typed in (adc_dist.inputs.paths): Ray's workers run elsewhere.
    """
    from adc_dist.inputs.paths import absolutize_env

    absolutize_env()
    with _ctrl_c_watched():
        code = _main_or_exit(main)
    sys.exit(code or 0)


def _main_or_exit(main: Callable[[], int | None]) -> int | None:
    """``main()``'s exit code, or the exit of a Ctrl-C (130) or a user error (2); a bug goes on up."""
    try:
        return main()
    except BaseException as e:  # noqa: BLE001 - an AdcError wrapped by Ray is still the user's error
        if isinstance(e, SystemExit):
            raise
        if interrupted(e):
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        found = find_adc_error(e)
        if found is None:
            raise
        print(f"error: {one_line(found, MAX_LINE - len('error: '))}", file=sys.stderr)
        sys.exit(2)
