"""``python -m adc_dist.report``: best configuration per task and figures of a sweep (an alias of ``adc_dist.tune.report``, kept so the documented command stays)."""

from adc_dist.errors import run_cli
from adc_dist.tune.report import main

run_cli(main)
