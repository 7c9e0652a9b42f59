"""Data layer: readers -> canonical interaction table -> seeded split (Parquet cache) -> TaskData.

Public API (what the rest of adc_dist imports):
    load_task(name, *, data_root=None, seed=0, min_rating=None, cache_dir=None) -> TaskData
    resolve_tasks(spec) -> list[str]         "six", "all", "a,b", "file:<path>", "synthetic:<users>x<domains>"
    TASKS, SIX                               the registered task specs / the six paper tasks
    TaskData, Interactions                   (adc_dist.data.task_data)
    DomainSampler, EpochBatches, samplers_for  (adc_dist.data.torch_sampler: training batches on the device)
    NegativeSampler, rng_for                 (adc_dist.data.sampling: numpy, host; the MF baselines)
    epoch_shard                              (adc_dist.data.sharding: numpy, host)
See docs/data.md.
"""

from adc_dist.data.load import load_task, prepare
from adc_dist.data.registry import SIX, TASKS, resolve_tasks
from adc_dist.data.task_data import SPLITS, Interactions, TaskData

__all__ = ["SIX", "SPLITS", "TASKS", "Interactions", "TaskData", "load_task", "prepare", "resolve_tasks"]
