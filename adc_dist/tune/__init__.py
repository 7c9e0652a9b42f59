"""Hyper-parameter sweeps: search spaces (``search_space``), the Ray Tune driver (``driver``,
run by ``python -m adc_dist.tune``) and its hooks (``hooks``), one trial (``trial``), the
Parquet results (``results``) and the report of a sweep (``report``).
"""
