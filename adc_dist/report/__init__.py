"""``python -m adc_dist.report``: the command's name only; the code is ``adc_dist.tune.report``."""
