"""``python -m adc_dist.compare``: compare ADC variants with baselines across tasks and seeds."""

from adc_dist.errors import run_cli
from adc_dist.compare.driver import main

run_cli(main)
