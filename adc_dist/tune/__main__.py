"""``python -m adc_dist.tune``: sweep hyper-parameters over tasks (Ray Tune)."""

from adc_dist.errors import run_cli
from adc_dist.tune.driver import main

run_cli(main)
