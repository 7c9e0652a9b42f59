"""The ADC network (``network``) and its full-ranking pair scorer (``pair_scorer``).

Plain PyTorch: no data loading, no distributed code. Imports only ``adc_dist.config`` and
``adc_dist.errors``.
"""
