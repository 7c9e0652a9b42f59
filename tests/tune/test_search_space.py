"""Search-space YAML: the shipped spaces parse, and bad specs fail with one clear message."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from adc_dist.errors import AdcError
from adc_dist.tune.search_space import POINT_KEY, config_from_trial, load_space, parse_space

SPACES = Path(__file__).resolve().parents[2] / "tune_spaces"


def space(text: str):
    import yaml

    return parse_space(yaml.safe_load(textwrap.dedent(text)), where="t.yaml")


def fails(text: str, *needles: str) -> str:
    with pytest.raises(AdcError) as e:
        space(text)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    assert "t.yaml" in msg
    return msg


@pytest.mark.parametrize("name", sorted(p.name for p in SPACES.glob("*.yaml")))
def test_shipped_spaces_parse(name):
    s = load_space(SPACES / name)
    assert s.search and s.trials_per_task() >= 2


def test_paper_space_covers_the_figures_ranges():
    s = load_space(SPACES / "paper.yaml")
    assert set(s.search) == {"num_hidden_layers", "d", "gamma", "negatives"}
    assert s.search["num_hidden_layers"].values == [1, 2, 3, 4, 5]
    assert s.search["d"].values == [25, 50, 100, 200]
    assert s.search["gamma"].values[0] == 0.0 and max(s.search["gamma"].values) == 3.0
    assert s.search["negatives"].values == [1, 3, 5, 7, 9]
    # one at a time around the paper's defaults: 1 base + 4 + 3 + 5 + 4 = 17 per task
    assert s.design == "one_at_a_time" and s.trials_per_task() == 17
    grid = load_space(SPACES / "paper_grid.yaml")
    assert grid.trials_per_task() == 5 * 4 * 6 * 5


def test_param_space_is_ray_tune_and_round_trips_to_train_config():
    from ray import tune
    from ray.tune.search.sample import Float, Integer

    s = load_space(SPACES / "random.yaml")
    ps = s.param_space(["amazon-book-music", "amazon-book-dvd"])
    assert ps["task"] == tune.grid_search(["amazon-book-music", "amazon-book-dvd"])
    assert isinstance(ps["lr"], Float) and isinstance(ps["negatives"], Integer)
    assert ps["num_hidden_layers"] == tune.grid_search([1, 2, 3])
    assert ps["epochs"] == 20
    sampled = {k: (v.sample() if hasattr(v, "sample") else v) for k, v in ps.items()}
    sampled["task"] = "amazon-book-music"
    sampled["num_hidden_layers"] = 2
    cfg = config_from_trial(sampled)
    assert 1e-4 <= cfg.lr <= 1e-2 and 1 <= cfg.negatives <= 9 and isinstance(cfg.negatives, int)


@pytest.mark.parametrize("name", sorted(p.name for p in SPACES.glob("*.yaml")))
def test_every_shipped_space_converts_to_ray_tune(name):
    ps = load_space(SPACES / name).param_space(["amazon-book-music"])
    assert ps["task"] == {"grid_search": ["amazon-book-music"]}


def test_one_at_a_time_points_vary_one_key_around_the_base():
    s = space("""
        design: one_at_a_time
        fixed: {d: 32}
        search:
          gamma: [0.0, 1.5, 3.0]
          num_hidden_layers: [1, 2]
    """)
    # base (gamma 1.5, 2 layers: TrainConfig defaults) + gamma 0, 3 + layers 1
    assert s.points() == [{}, {"gamma": 0.0}, {"gamma": 3.0}, {"num_hidden_layers": 1}]
    ps = s.param_space(["t"])
    assert len(ps[POINT_KEY]["grid_search"]) == 4
    cfg = config_from_trial({"task": "t", "d": 32, POINT_KEY: {"gamma": 3.0}})
    assert cfg.gamma == 3.0 and cfg.d == 32 and cfg.num_hidden_layers == 2


def test_yaml_strings_are_coerced():
    s = space("""
        search:
          lr: {loguniform: [1e-4, 1e-2]}   # YAML reads 1e-4 as a string
          topk: {grid: [[5, 10], [10, 20]]}
          balancer: {choice: [gradnorm, equal]}
        fixed: {early_stop_metric: ndcg@10}
    """)
    assert s.search["lr"].args == (1e-4, 1e-2)
    assert s.search["topk"].values == [[5, 10], [10, 20]]


@pytest.mark.parametrize("text,needles", [
    ("search: {gama: [0, 1]}", ["unknown config key 'gama'", "did you mean gamma"]),
    ("fixed: {epoch: 3}\nsearch: {gamma: [0, 1]}", ["'epoch'", "epochs"]),
    ("serach: {gamma: [0, 1]}", ["unknown section 'serach'", "'search'"]),
    ("search: {gamma: {uniformm: [0, 1]}}", ["unknown distribution 'uniformm'", "'uniform'"]),
    ("search: {gamma: {uniform: [2, 1]}}", ["search.gamma", "empty or inverted"]),
    ("search: {gamma: {uniform: [1, 1]}}", ["empty or inverted"]),
    ("search: {lr: {loguniform: [0, 0.1]}}", ["search.lr", "low > 0"]),
    ("search: {negatives: {randint: [3, 3]}}", ["search.negatives", "need high > low"]),
    ("search: {gamma: {quniform: [0, 3, 0]}}", ["q > 0"]),
    ("search: {gamma: {uniform: [0]}}", ["[low, high]"]),
    ("search: {gamma: {uniform: [-1, 2]}}", ["search.gamma = -1.0 is impossible", "gamma must be >= 0"]),
    ("search: {gamma: [0.5, -1]}", ["search.gamma = -1.0 is impossible"]),
    ("search: {d: {uniform: [8, 64]}}", ["d is an integer", "randint"]),
    ("search: {balancer: {uniform: [0, 1]}}", ["not a number"]),
    ("search: {balancer: [gradnorm, sgd]}", ["balancer must be one of"]),
    ("search: {d: [8, 8]}", ["lists 8 twice"]),
    ("search: {d: []}", ["at least one value"]),
    ("search: {d: 8}", ["expected one distribution"]),
    ("search: {}", ["names no key"]),
    ("fixed: {d: 8}\nsearch: {d: [8, 16]}", ["both fixed and searched"]),
    ("search: {task: [a, b]}", ["--tasks"]),
    ("fixed: {storage_path: x}\nsearch: {d: [8]}", ["--storage"]),
    ("search: {num_workers: [1, 2]}", ["fixed but not searched"]),
    ("search: {d: [4, 8]}\nfixed: {num_hidden_layers: 4}", ["d=4 is too small"]),
    ("search: {d: [4, 64]\n , num_hidden_layers: [1, 4]}", ["combination d=4, num_hidden_layers=4 is impossible"]),
    ("design: one_at_a_time\nsearch: {gamma: {uniform: [0, 1]}}", ["one_at_a_time needs grid or choice"]),
    ("design: random\nsearch: {gamma: [0]}", ["design must be one of"]),
    ("search: {gamma: [0]}\ntune: {shceduler: asha}", ["'shceduler'", "scheduler"]),
    ("search: {gamma: [0]}\ntune: {scheduler: hyperband}", ["tune.scheduler must be one of"]),
    ("search: {gamma: [0]}\ntune: {num_samples: many}", ["tune.num_samples expects int"]),
    ("gamma: [0, 1]", ["unknown section 'gamma'", "under 'fixed:' or 'search:'"]),
    ("search: {gamma: [0, 1]}\nfixed: {static_weights: [1, -1], balancer: static}", ["static_weights"]),
])
def test_bad_specs_are_rejected_with_the_key_named(text, needles):
    fails(text, *needles)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(AdcError, match="does not exist"):
        load_space(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("search: {gamma: [0, 1]\n")
    with pytest.raises(AdcError, match="not valid YAML"):
        load_space(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- gamma\n")
    with pytest.raises(AdcError, match="must be a mapping"):
        load_space(listy)


def test_overrides_are_fixed_keys_and_validated(tmp_path):
    s = load_space(SPACES / "smoke.yaml", overrides={"epochs": 1})
    assert s.fixed["epochs"] == 1
    with pytest.raises(AdcError, match="epochs must be >= 1"):
        load_space(SPACES / "smoke.yaml", overrides={"epochs": 0})
    with pytest.raises(AdcError, match="both fixed and searched"):
        load_space(SPACES / "smoke.yaml", overrides={"gamma": 1.0})
