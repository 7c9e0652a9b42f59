"""A sweep's progress bar: trials ended out of trials planned, with tqdm's ETA (driver side)."""

from __future__ import annotations

import sys
from typing import Any

from ray.tune import Callback


class TrialBar(Callback):
    """Advances one step per trial that ends (completed, stopped early or failed)."""

    def __init__(self, total: int, *, enabled: bool = True):
        self.total, self.enabled = total, enabled
        self._bar: Any = None

    def setup(self, **info: Any) -> None:
        if self.enabled and self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc="trials", unit="trial", file=sys.stderr, dynamic_ncols=True,
                             mininterval=0.5 if sys.stderr.isatty() else 10.0, smoothing=0.1)

    def _step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._step()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._step()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Draw the bar's last state now (also when ``fit`` raised: otherwise tqdm draws it
        when the object is collected, after the command's last lines)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
