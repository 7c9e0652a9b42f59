"""Collective matrix factorisation (Singh & Gordon, KDD 2008) on implicit feedback.

One user table shared by all domains and one item table per domain — the linear
counterpart of ADC's shared user embedding — trained on the sum of the per-domain
losses (BPR, or binary cross-entropy with sampled negatives as ADC uses).
"""

from __future__ import annotations

from adc_dist.compare.baselines.mf import FactorModel, fit_factor_model
from adc_dist.data.task_data import TaskData


def fit_cmf(task: TaskData, *, seed: int = 0, loss: str = "bpr", negatives: int | None = None, log=None,
            **params) -> FactorModel:
    """Fit one FactorModel on all domains; BCE defaults to ADC's rho = 5 negatives, BPR to 1."""
    if negatives is None:
        negatives = 1 if loss == "bpr" else 5
    return fit_factor_model(task, loss=loss, negatives=negatives, seed=seed, log=log, **params).model
