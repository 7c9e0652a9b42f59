"""BPR-MF per domain (Rendle et al., UAI 2009): one independent factor model per domain.

The single-domain baseline without transfer: domain k's model sees only domain k's
train positives, has its own user table, and keeps its own best validation epoch.
"""

from __future__ import annotations

import torch

from adc_dist.compare.baselines.mf import FactorModel, fit_factor_model
from adc_dist.data.task_data import TaskData


class PerDomainMF:
    """``score_fn(users, k)``: the scores of domain k's own model."""

    def __init__(self, models: list[FactorModel]):
        self.models = models

    def score_fn(self, users: torch.Tensor, k: int) -> torch.Tensor:
        return self.models[k].score_fn(users, 0)


def fit_bpr_mf(task: TaskData, *, seed: int = 0, log=None, **params) -> PerDomainMF:
    """Fit one BPR-MF model per domain on ``task.select([domain])``; ``params`` go to fit_factor_model."""
    models = []
    for dom in task.domains:
        if log:
            log(f" bpr_mf: domain {dom}")
        models.append(fit_factor_model(task.select([dom]), loss="bpr", seed=seed, log=log, **params).model)
    return PerDomainMF(models)
