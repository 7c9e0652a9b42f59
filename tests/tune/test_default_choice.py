"""TrainConfig's negatives and L2 are what the committed six-task search chose on validation.

results/model-family-six/ holds the rows of tune_spaces/model_family_six.yaml on the six
tasks (docs/model.md, "The default on the six tasks"). A default changed without a new
search, or a search whose rows no longer support the default, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adc_dist.config import TrainConfig
from adc_dist.data.registry import SIX
from adc_dist.tune.search_space import load_space

ROOT = Path(__file__).resolve().parents[2]


def test_default_negatives_and_l2_are_the_best_validated_point_on_every_task():
    trials = pd.read_parquet(ROOT / "results" / "model-family-six" / "trials.parquet")
    ok = trials[trials.status == "ok"]
    assert sorted(ok.task.unique()) == sorted(SIX)
    default = TrainConfig()
    space = load_space(ROOT / "tune_spaces" / "model_family_six.yaml")
    # Every row is a point of the committed space, with the default's other settings.
    for key in ("l2", "negatives"):
        assert set(ok[key]) <= set(space.search[key].values), key
    for key in ("interaction", "user_repr", "loss", "d", "lr", "batch_size", "zero_init", "item_bias"):
        assert set(ok[key]) == {getattr(default, key)}, key

    point = ok.groupby(["l2", "negatives"])
    mean_valid = point.valid_score.mean()
    assert point.task.nunique().eq(len(SIX)).all()  # every point was run on all six tasks
    assert mean_valid.idxmax() == (default.l2, default.negatives)
    # ... and it is the best point of each task on its own, not just on average.
    best_per_task = ok.loc[ok.groupby("task").valid_score.idxmax(), ["l2", "negatives"]]
    assert set(map(tuple, best_per_task.to_numpy())) == {(default.l2, default.negatives)}
