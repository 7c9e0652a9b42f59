"""What a user sees of a Ray Train run: our own lines, not Ray's internals.

By default the driver does not forward the workers' and actors' output (``log_to_driver``
off): under load Ray's actors log harmless tracebacks (a ``GetTimeoutError`` of a poll,
"multiple active Ray instances") that drowned the run's own lines. Rank 0's progress lines
travel instead through a small ``ray.util.queue.Queue`` that the driver drains and prints.
Ray's logs stay in its session directory (``/tmp/ray/session_latest/logs``); ``--verbose``
forwards them as before.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any


def init_kwargs(verbose: bool) -> dict[str, Any]:
    """``ray.init`` arguments for this level of output."""
    if not verbose:
        # A new local Ray turns token auth on (RAY_AUTH_MODE unset) and warns that it did;
        # setting the mode instead would skip writing the token, and the GCS would not start.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        # On a loaded box Tune warns that handling a trial's result took over 0.5 s, "a performance
        # bottleneck": our trials report once an epoch (minutes apart), so it is noise between
        # the comparison's and the sweep's own lines.
        logging.getLogger("ray.tune.utils.util").setLevel(logging.ERROR)
    return {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.WARNING}


def start_ray(**kwargs: Any) -> None:
    """``ray.init(**kwargs)``; a Ray that cannot start or be reached is one AdcError line."""
    import ray

    from adc_dist.errors import AdcError, one_line

    try:
        ray.init(**kwargs)
    except (RuntimeError, ConnectionError, TimeoutError, ValueError) as e:
        where = kwargs.get("address") or "a local Ray"
        raise AdcError(f"Ray did not start ({where}): {one_line(e, 160)}; its logs: "
                       "/tmp/ray/session_latest/logs (README: Troubleshooting)") from None


def worker_reporter(*, quiet: bool, lines: Any):
    """The Ray Train reporter of a worker; with ``lines`` rank 0's log lines go to the driver."""
    from adc_dist.train.reporting import RayTrainReporter

    class QueueReporter(RayTrainReporter):
        def log(self, line: str) -> None:
            if self.rank != 0 or self.quiet:
                return
            try:
                lines.put(line, timeout=10)
            except Exception:  # noqa: BLE001 - the driver went away: the line is not lost, printed here
                print(line, flush=True)

    return QueueReporter(quiet=quiet) if lines is not None else RayTrainReporter(quiet=quiet)


class LinePrinter:
    """Context manager: a queue for rank 0's lines and a thread that prints them as they come."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled
        self.queue: Any = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "LinePrinter":
        if self.enabled:
            from ray.util.queue import Queue

            self.queue = Queue(actor_options={"num_cpus": 0})
            self._thread = threading.Thread(target=self._pump, name="adc-lines", daemon=True)
            self._thread.start()
        return self

    def _pump(self) -> None:
        from ray.util.queue import Empty

        while not self._done.is_set():
            try:
                print(self.queue.get(timeout=0.5), flush=True)
            except Empty:
                continue
            except Exception:  # noqa: BLE001 - Ray shut down under us: nothing more to print
                return

    def __exit__(self, *exc: Any) -> None:
        if self.queue is None:
            return
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            rest = self.queue.get_nowait_batch(self.queue.qsize())
            for line in rest:
                print(line, flush=True)
            self.queue.shutdown()
        except Exception:  # noqa: BLE001 - Ray already gone: the lines went with it
            pass
        sys.stdout.flush()
