"""The comparison of ADC variants with baselines: the driver (``driver``, run by
``python -m adc_dist.compare``), how each method is tuned and fitted (``methods``,
``baselines/``), paired tests (``significance``), tables (``table``), figures (``figures``)
and the written report (``report``).
"""
