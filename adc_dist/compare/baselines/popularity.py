"""Most-popular: rank every item of a domain by its number of training positives.

The same list for every user (the user's own train / valid items are removed by
``adc_dist.evaluate`` as for every other method). No parameters, nothing to tune.
"""

from __future__ import annotations

import numpy as np
import torch

from adc_dist.data.task_data import TaskData


class MostPopular:
    """``score_fn(users: LongTensor[U], k) -> Tensor[U, n_items[k]]``: train counts of domain k."""

    def __init__(self, task: TaskData):
        self.counts = [
            torch.from_numpy(np.bincount(inter.items, minlength=n).astype(np.float32))
            for inter, n in zip(task.train, task.n_items)
        ]

    def score_fn(self, users: torch.Tensor, k: int) -> torch.Tensor:
        return self.counts[k].expand(len(users), -1).clone()
