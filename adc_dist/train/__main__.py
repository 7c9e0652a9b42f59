"""``python -m adc_dist.train``: train one run (Ray Train, or in-process with ``--local``)."""

from adc_dist.errors import run_cli
from adc_dist.train.launch import main

run_cli(main)
