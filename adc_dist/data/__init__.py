"""Data layer: readers -> canonical interaction table -> seeded split (Parquet cache) -> TaskData.

Public API (what the rest of adc_dist imports):
    load_task(name, *, data_root=None, seed=0, min_rating=None, cache_dir=None) -> TaskData
    TaskData, Interactions                   (adc_dist.data.task_data)
    NegativeSampler                          (adc_dist.data.sampling)
    epoch_shard                              (adc_dist.data.sharding)
"""

from adc_dist.data.task_data import SPLITS, Interactions, TaskData

__all__ = ["SPLITS", "Interactions", "TaskData"]
