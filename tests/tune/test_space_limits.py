"""Search spaces are checked for sense, not only for type: zero-width and degenerate ranges,
absurd counts and non-finite numbers are refused with the key (and the limit) named."""

from __future__ import annotations

import textwrap

import pytest

from adc_dist.config import LIMITS
from adc_dist.errors import AdcError
from adc_dist.inputs.files import load_yaml_text
from adc_dist.tune.search_space import MAX_GRID_VALUES, MAX_TRIALS_PER_TASK, parse_space


def parse(text: str):
    return parse_space(load_yaml_text(textwrap.dedent(text), "t.yaml"), where="t.yaml")


@pytest.mark.parametrize("text,needles", [
    # zero width: one value, which belongs under fixed:
    ("search: {gamma: {quniform: [1.5, 1.5, 0.5]}}", ["search.gamma", "empty", "fixed:"]),
    ("search: {lr: {qloguniform: [0.01, 0.01, 0.001]}}", ["search.lr", "empty"]),
    ("search: {d: {qrandint: [64, 64, 8]}}", ["search.d", "empty"]),
    ("search: {d: {lograndint: [8, 8]}}", ["need high > low"]),
    # a step wider than the range samples at most two values
    ("search: {gamma: {quniform: [0, 1, 5]}}", ["step q=5 is wider than the range"]),
    ("search: {d: {qrandint: [8, 16, 64]}}", ["step q=64"]),
    # non-finite and non-numeric arguments
    ("search: {gamma: {uniform: [0, .inf]}}", ["must be finite"]),
    ("search: {gamma: {uniform: [.nan, 1]}}", ["must be finite"]),
    ("search: {gamma: {quniform: [0, 1, .nan]}}", ["must be finite"]),
    ("search: {gamma: {uniform: [{a: 1}, 1]}}", ["needs numbers"]),
    ("search: {gamma: {uniform: [true, 2]}}", ["needs numbers"]),
    ("search: {gamma: [.nan, 1]}", ["gamma must be a finite number"]),
    ("search: {lr: [.inf]}", ["lr must be a finite number"]),
    # absurd counts, by TrainConfig's limits (the range's ends are checked)
    ("search: {negatives: {randint: [1, 100000]}}", ["search.negatives", "above the limit of 1,000"]),
    ("search: {negatives: [5, 100000]}", ["above the limit of 1,000"]),
    ("search: {d: {lograndint: [8, 1000000000000]}}", [f"above the limit of {LIMITS['d']:,}"]),
    ("search: {epochs: {qrandint: [1, 1e12, 1]}}", ["epochs", "above the limit"]),
    # the tune section
    ("search: {gamma: [0, 1]}\ntune: {num_samples: 0}", ["tune.num_samples must be >= 1"]),
    ("search: {gamma: [0, 1]}\ntune: {num_samples: 2.5}", ["tune.num_samples expects int"]),
    ("search: {gamma: [0, 1]}\ntune: {num_samples: 100000000}", ["above the limit of 10,000"]),
    ("search: {gamma: [0, 1]}\ntune: {reduction_factor: 1}", ["reduction_factor must be > 1"]),
    ("search: {gamma: [0, 1]}\ntune: {reduction_factor: .nan}", ["reduction_factor must be > 1"]),
    ("search: {gamma: [0, 1]}\ntune: {time_budget_s: -5}", ["time_budget_s must be > 0"]),
    ("search: {gamma: [0, 1]}\ntune: {grace_period: true}", ["grace_period expects int"]),
    ("search: {gamma: [0, 1]}\ntune: {scheduler: [asha]}", ["tune.scheduler expects a name"]),
])
def test_senseless_spaces_are_refused(text, needles):
    with pytest.raises(AdcError) as e:
        parse(text)
    msg = str(e.value)
    for n in needles:
        assert n in msg, msg
    assert "t.yaml" in msg and len(msg) <= 300 and "\n" not in msg, msg


def test_too_many_grid_values_or_trials_are_refused_with_the_limit_named():
    values = ", ".join(str(i / 10) for i in range(MAX_GRID_VALUES + 1))
    with pytest.raises(AdcError, match=f"the limit is {MAX_GRID_VALUES:,}"):
        parse(f"search: {{gamma: [{values}]}}")
    # 60 x 60 x 30 grid values = 108,000 trials per task: each list is fine, the product is not
    lr = ", ".join(f"{(i + 1) * 1e-4:.4g}" for i in range(60))
    wd = ", ".join(f"{i * 1e-6:.4g}" for i in range(60))
    gamma = ", ".join(str(i / 10) for i in range(30))
    with pytest.raises(AdcError, match=f"the limit is {MAX_TRIALS_PER_TASK:,}"):
        parse(f"search: {{lr: [{lr}], weight_decay: [{wd}], gamma: [{gamma}]}}")


def test_sensible_ranges_still_parse():
    s = parse("""
        search:
          gamma: {quniform: [0, 3, 0.5]}
          d: {qrandint: [16, 128, 16]}
          negatives: {randint: [1, 10]}
        tune: {num_samples: 4, reduction_factor: 2, time_budget_s: 3600}
    """)
    assert s.search["gamma"].args == (0.0, 3.0, 0.5) and s.tune["num_samples"] == 4
