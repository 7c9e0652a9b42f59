"""What Ray prints by default: its warnings that say nothing to an adc_dist user are hidden."""

from __future__ import annotations

import logging

from adc_dist.train.ray_output import init_kwargs


def test_tunes_slow_result_warning_is_hidden_by_default():
    # The logger of the module that warns (a comparison on a loaded box printed "The
    # `process_trial_result` operation took 0.693 s, which may be a performance bottleneck"
    # between its own lines); named by the module itself, so a renamed module fails here.
    import ray.tune.utils.util as tune_util

    before = tune_util.logger.level
    try:
        kwargs = init_kwargs(verbose=False)
        assert not tune_util.logger.isEnabledFor(logging.WARNING) and tune_util.logger.isEnabledFor(logging.ERROR)
        assert kwargs["log_to_driver"] is False
    finally:
        tune_util.logger.setLevel(before)
