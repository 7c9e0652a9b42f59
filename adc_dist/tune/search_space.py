"""Search spaces as YAML: parsed, validated against TrainConfig, turned into Ray Tune's.

A space file (``tune_spaces/*.yaml``) names TrainConfig fields only -- the same names
as the CLI flags and the Parquet columns::

    description: what this sweep is for
    design: grid            # grid (default): the product of every grid key, times
                            #   --num-samples, random keys drawn per trial
                            # one_at_a_time: vary one key at a time around `fixed`
    fixed:                  # held constant in every trial
      epochs: 20
    search:                 # one distribution per key
      num_hidden_layers: {grid: [1, 2, 3, 4]}
      gamma: [0, 0.5, 1.5]  # a bare list is a grid
      lr: {loguniform: [1.0e-4, 1.0e-2]}
    tune:                   # optional sweep defaults; the CLI flags override them
      num_samples: 1
      scheduler: asha       # asha | fifo
      grace_period: 2
      reduction_factor: 3

Distributions (Ray Tune's, same argument order): ``grid``, ``choice`` (lists);
``uniform``, ``loguniform`` ``[low, high]``; ``quniform``, ``qloguniform``
``[low, high, q]``; ``randint``, ``lograndint`` ``[low, high)``; ``qrandint``
``[low, high, q]`` (high inclusive).

Everything is checked before Ray starts: unknown keys (with close-name suggestions),
wrong types, empty or inverted ranges, values TrainConfig rejects (e.g. ``gamma: -1``)
and, for the grid/choice keys, every combination (e.g. ``d: 4`` with 5 halving
layers). Each problem raises one :class:`AdcError` naming the file and the key.
"""

from __future__ import annotations

import difflib
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Any, Mapping, Union, get_args, get_origin, get_type_hints

from adc_dist.inputs import files as inputs
from adc_dist.config import FIELD_NAMES, TrainConfig, coerce, from_mapping, unknown_key_error
from adc_dist.errors import AdcError
from adc_dist.inputs.files import short

LIST_KINDS = ("grid", "choice")
RANGE_KINDS = {  # kind -> number of arguments
    "uniform": 2, "loguniform": 2, "quniform": 3, "qloguniform": 3,
    "randint": 2, "lograndint": 2, "qrandint": 3,
}
KINDS = LIST_KINDS + tuple(RANGE_KINDS)
DESIGNS = ("grid", "one_at_a_time")
SECTIONS = ("description", "design", "fixed", "search", "tune")
SCHEDULERS = ("asha", "fifo")
TUNE_KEYS = {"num_samples": int, "scheduler": str, "grace_period": int, "reduction_factor": float,
             "max_concurrent": int, "time_budget_s": float}
# (lowest, highest) of the numeric tune keys; lowest is exclusive for floats (reduction_factor
# > 1, time_budget_s > 0). The highs are sanity limits, named in the message when hit.
TUNE_RANGES = {"num_samples": (1, 10_000), "grace_period": (1, 100_000), "reduction_factor": (1.0, 1_000.0),
               "max_concurrent": (1, 10_000), "time_budget_s": (0.0, 365 * 86_400.0)}
MAX_GRID_VALUES = 1_000  # values of one grid/choice list
MAX_TRIALS_PER_TASK = 100_000  # trials one task of a sweep may have (grid product x num_samples)

# Keys the sweep itself sets: a space may not name them.
RESERVED = {
    "task": "the tasks come from --tasks",
    "name": "each trial is named by Ray Tune",
    "storage_path": "use --storage",
    "resume": "use --resume",
}
# Keys a space may fix but not search: every trial of a sweep must ask for the same
# resources, and be compared on the same metric.
NOT_SEARCHABLE = {
    "num_workers": "resources are per sweep (--num-workers)",
    "use_gpu": "resources are per sweep (--gpus-per-worker)",
    "cpus_per_worker": "resources are per sweep (--cpus-per-worker)",
    "early_stop_metric": "trials are compared on one metric",
    "data_root": "one data root per sweep",
}
MAX_COMBINATIONS_CHECKED = 20_000
POINT_KEY = "point"  # the Tune key of a one_at_a_time design (a dict of overrides)


@dataclass(frozen=True)
class Dist:
    """One searched key: a Tune distribution by name and its (coerced) arguments."""

    kind: str
    args: tuple

    @property
    def values(self) -> list[Any] | None:
        """The finite values of grid/choice; None for a continuous/integer range."""
        return list(self.args) if self.kind in LIST_KINDS else None

    @property
    def endpoints(self) -> list[Any]:
        """Values to validate against TrainConfig: the list, or the range's bounds."""
        if self.values is not None:
            return self.values
        low, high = self.args[0], self.args[1]
        if self.kind in ("randint", "lograndint"):
            high = high - 1  # Tune's randint excludes `high`
        return [low, high]

    def to_tune(self) -> Any:
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def describe(self) -> str:
        return f"{self.kind}{list(self.args)}"


@dataclass
class SearchSpace:
    path: str
    description: str
    design: str
    fixed: dict[str, Any]
    search: dict[str, Dist]
    tune: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return Path(self.path).stem

    @property
    def grid_keys(self) -> list[str]:
        return [k for k, d in self.search.items() if d.kind == "grid"]

    @property
    def random_keys(self) -> list[str]:
        return [k for k, d in self.search.items() if d.kind != "grid"]

    def points(self) -> list[dict[str, Any]]:
        """one_at_a_time: the base point and one point per non-base value of each key."""
        base = self.base_config().to_dict()
        pts: list[dict[str, Any]] = [{}]
        for key, dist in self.search.items():
            for v in dist.values or []:
                if v != base[key]:
                    pts.append({key: v})
        return pts

    def base_config(self) -> TrainConfig:
        return from_mapping(self.fixed, where=f"{self.path}: fixed")

    def trials_per_task(self, num_samples: int = 1) -> int:
        """How many trials the sweep runs per task (Tune repeats the grid num_samples times)."""
        if self.design == "one_at_a_time":
            return len(self.points()) * num_samples
        n = 1
        for k in self.grid_keys:
            n *= len(self.search[k].args)
        return n * num_samples

    def param_space(self, tasks: list[str]) -> dict[str, Any]:
        """Ray Tune's param_space: fixed values, distributions, and a grid over the tasks.

        The trial function turns a Tune config back into a TrainConfig with
        :func:`config_from_trial`.
        """
        from ray import tune

        space: dict[str, Any] = dict(self.fixed)
        space["task"] = tune.grid_search(list(tasks))
        if self.design == "one_at_a_time":
            space[POINT_KEY] = tune.grid_search(self.points())
        else:
            for key, dist in self.search.items():
                space[key] = dist.to_tune()
        return space

    def summary(self) -> str:
        lines = [f"space {self.path} ({self.design}): {self.description}".rstrip(": ")]
        for k, d in self.search.items():
            lines.append(f"  {k}: {d.describe()}")
        if self.fixed:
            lines.append("  fixed: " + ", ".join(f"{k}={v}" for k, v in self.fixed.items()))
        return "\n".join(lines)


def config_from_trial(config: Mapping[str, Any]) -> TrainConfig:
    """The TrainConfig of one Tune trial (flattens a one_at_a_time point)."""
    values = {k: v for k, v in config.items() if k != POINT_KEY}
    values.update(config.get(POINT_KEY) or {})
    return from_mapping(values, where="trial config")


def trial_overrides(config: Mapping[str, Any]) -> dict[str, Any]:
    """The flat key -> value view of a Tune trial config (for printing)."""
    values = {k: v for k, v in config.items() if k != POINT_KEY}
    values.update(config.get(POINT_KEY) or {})
    return values


# --------------------------------------------------------------------------- parsing
def load_space(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> SearchSpace:
    """Read and validate a space file; ``overrides`` are extra fixed keys (CLI ``--set``)."""
    p = Path(path)
    if not os.path.lexists(p):
        hint = ""
        spaces = sorted(Path("tune_spaces").glob("*.yaml")) if Path("tune_spaces").is_dir() else []
        if spaces:
            hint = "; available: " + ", ".join(str(s) for s in spaces)
        raise AdcError(f"search space {p} does not exist{hint}")
    raw = inputs.load_yaml(p, "search space")  # size, depth and alias limits; one line on bad input
    return parse_space(raw if raw is not None else {}, where=inputs.show(p), overrides=overrides)


def parse_space(raw: Any, where: str = "search space", overrides: Mapping[str, Any] | None = None,
                override_source: str = "--set") -> SearchSpace:
    if not isinstance(raw, dict):
        raise AdcError(f"{where} must be a mapping with sections {', '.join(SECTIONS)} (found a {type(raw).__name__})")
    for key in raw:
        if key not in SECTIONS:
            close = difflib.get_close_matches(str(key), SECTIONS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; sections are {', '.join(SECTIONS)}"
            if key in FIELD_NAMES:
                hint = f"; put config keys under 'fixed:' or 'search:'"
            raise AdcError(f"{where}: unknown section {short(key)}{hint}")
    design = raw.get("design", "grid")
    if design not in DESIGNS:
        raise AdcError(f"{where}: design must be one of {', '.join(DESIGNS)} (got {short(design)})")

    fixed_raw = _mapping(raw.get("fixed"), f"{where}: fixed")
    fixed_raw.update(overrides or {})
    # A bad --set value is blamed on --set, not on the space file it overrides.
    blame = {k: f"{override_source} {k}={v}" for k, v in (overrides or {}).items()}
    fixed = {}
    for key, value in fixed_raw.items():
        _check_key(key, blame.get(key, f"{where}: fixed"))
        try:
            fixed[key] = coerce(key, value)
        except AdcError as e:
            raise AdcError(f"{e} (from {blame[key]})" if key in blame else str(e)) from None
    if blame:
        from_mapping(fixed, where=f"{where}: fixed", sources=blame)

    search_raw = _mapping(raw.get("search"), f"{where}: search")
    if not search_raw:
        raise AdcError(f"{where}: 'search' names no key; give at least one, e.g. gamma: {{grid: [0, 1.5]}}")
    search = {}
    for key, spec in search_raw.items():
        kw = f"{where}: search.{key}"
        _check_key(key, f"{where}: search")
        if key in NOT_SEARCHABLE:
            raise AdcError(f"{kw}: may be fixed but not searched ({NOT_SEARCHABLE[key]})")
        if key in fixed:
            raise AdcError(f"{kw}: the key is both fixed and searched; keep one")
        search[key] = _parse_dist(key, spec, kw)

    tune_raw = _mapping(raw.get("tune"), f"{where}: tune")
    tune_cfg: dict[str, Any] = {}
    for key, value in tune_raw.items():
        if key not in TUNE_KEYS:
            raise unknown_key_error(str(key), f"{where}: tune", tuple(TUNE_KEYS))
        tune_cfg[key] = _tune_value(key, value, f"{where}: tune.{key}")
    if tune_cfg.get("scheduler", "asha") not in SCHEDULERS:
        raise AdcError(f"{where}: tune.scheduler must be one of {', '.join(SCHEDULERS)} "
                       f"(got {short(tune_cfg['scheduler'])})")

    space = SearchSpace(where, str(raw.get("description", "") or "").strip(), design, fixed, search, tune_cfg)
    if design == "one_at_a_time":
        bad = [k for k, d in search.items() if d.values is None]
        if bad:
            raise AdcError(f"{where}: design one_at_a_time needs grid or choice lists; {bad[0]!r} is {search[bad[0]].kind}")
    _validate_against_config(space, where)
    trials = space.trials_per_task(tune_cfg.get("num_samples", 1))
    if trials > MAX_TRIALS_PER_TASK:
        raise AdcError(f"{where}: {trials:,} trials per task (grid product x num_samples); the limit is "
                       f"{MAX_TRIALS_PER_TASK:,}: search fewer values, or draw them at random with --num-samples")
    return space


def _tune_value(key: str, value: Any, where: str) -> Any:
    """One value of the ``tune:`` section, typed and within :data:`TUNE_RANGES`."""
    typ = TUNE_KEYS[key]
    if typ is str:
        if not isinstance(value, str):
            raise AdcError(f"{where} expects a name, got {short(value)}")
        return value
    try:
        x = _number(value, typ is int)
    except (TypeError, ValueError, OverflowError):
        raise AdcError(f"{where} expects {typ.__name__}, got {short(value)}") from None
    low, high = TUNE_RANGES[key]
    if not math.isfinite(x) or x < low or (typ is float and x == low):
        raise AdcError(f"{where} must be {'>=' if typ is int else '>'} {low:g} and finite (got {short(value)})")
    if x > high:
        raise AdcError(f"{where}={x:,} is above the limit of {high:,g}")
    return x


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise AdcError(f"{where} must be a mapping of key: value (got {type(value).__name__})")
    return dict(value)


def _check_key(key: Any, where: str) -> None:
    if key in RESERVED:
        raise AdcError(f"{where}.{key}: a space may not set {key!r} ({RESERVED[key]})")
    if key not in FIELD_NAMES:
        raise unknown_key_error(str(key), where)


def _parse_dist(key: str, spec: Any, where: str) -> Dist:
    if isinstance(spec, list):
        spec = {"grid": spec}
    if not isinstance(spec, dict) or len(spec) != 1:
        raise AdcError(f"{where}: expected one distribution such as {{grid: [...]}} or {{uniform: [low, high]}}; "
                       f"kinds are {', '.join(KINDS)} (got {short(spec)})")
    ((kind, args),) = spec.items()
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; kinds are {', '.join(KINDS)}"
        raise AdcError(f"{where}: unknown distribution {short(kind)}{hint}")
    if not isinstance(args, list):
        raise AdcError(f"{where}: {kind} takes a list (got {short(args)})")

    if kind in LIST_KINDS:
        if not args:
            raise AdcError(f"{where}: {kind} needs at least one value")
        if len(args) > MAX_GRID_VALUES:
            raise AdcError(f"{where}: {kind} lists {len(args):,} values; the limit is {MAX_GRID_VALUES:,}")
        values = [coerce(key, v) for v in args]
        seen = []
        for v in values:
            if v in seen:
                raise AdcError(f"{where}: {kind} lists {short(v)} twice")
            seen.append(v)
        return Dist(kind, tuple(values))

    n = RANGE_KINDS[kind]
    if len(args) != n:
        form = "[low, high, q]" if n == 3 else "[low, high]"
        raise AdcError(f"{where}: {kind} takes {form} (got {short(args)})")
    integer = kind in ("randint", "lograndint", "qrandint")
    try:
        nums = [_number(a, integer) for a in args]
    except (TypeError, ValueError, OverflowError):
        raise AdcError(f"{where}: {kind} needs {'integers' if integer else 'numbers'} (got {short(args)})") from None
    low, high = nums[0], nums[1]
    if not all(math.isfinite(x) for x in nums):
        raise AdcError(f"{where}: {kind} arguments must be finite (got {short(args)})")
    if kind in ("randint", "lograndint") and not high > low:
        raise AdcError(f"{where}: {kind} [low, high) is empty: need high > low (got {short(args)})")
    # A zero-width range (quniform [1, 1, 0.5]) samples one value: that is a fixed key, and as a
    # range it is almost always a typo, so it is refused like an empty one.
    if not high > low:
        raise AdcError(f"{where}: {kind} range is empty or inverted: need low < high "
                       f"(got {short(args)}{'; for a single value use fixed:' if high == low else ''})")
    if kind.startswith(("log", "qlog")) and low <= 0:
        raise AdcError(f"{where}: {kind} needs low > 0 (got {short(args)})")
    if n == 3 and not nums[2] > 0:
        raise AdcError(f"{where}: {kind} needs q > 0 (got {short(args)})")
    if n == 3 and nums[2] > high - low:
        raise AdcError(f"{where}: {kind} step q={nums[2]:g} is wider than the range [{low:g}, {high:g}]: "
                       f"it would sample at most two values (got {short(args)}); use grid or choice for those")
    # The key must accept what the distribution samples.
    typ = _field_type(key)
    if typ not in (int, float):
        raise AdcError(f"{where}: {key} is not a number; use grid or choice")
    if typ is int and not integer:
        raise AdcError(f"{where}: {key} is an integer; use randint, lograndint or qrandint")
    return Dist(kind, tuple(nums))


def _field_type(key: str) -> Any:
    """The field's type without Optional (int, float, str, bool, list[...])."""
    hint = get_type_hints(TrainConfig)[key]
    args = [a for a in get_args(hint) if a is not type(None)]
    return args[0] if get_origin(hint) in (Union, UnionType) and args else hint


def _number(value: Any, integer: bool) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    x = float(value)  # accepts YAML's "1e-3" strings
    if integer:
        if not x.is_integer():
            raise ValueError(value)
        return int(x)
    return x


def _validate_against_config(space: SearchSpace, where: str) -> None:
    """Every value (and every grid/choice combination) must make a valid TrainConfig."""
    try:
        base = space.base_config()
    except AdcError as e:
        raise AdcError(f"{where}: fixed: {e}") from None
    base_d = base.to_dict()
    for key, dist in space.search.items():
        for v in dist.endpoints:
            try:
                from_mapping({**base_d, key: v})
            except AdcError as e:
                raise AdcError(f"{where}: search.{key} = {short(v)} is impossible: {_strip(e)}") from None
    if space.design == "one_at_a_time":
        combos = [[(k, v) for k, v in p.items()] for p in space.points()]
    else:
        finite = [k for k, d in space.search.items() if d.values is not None]
        n = math.prod(len(space.search[k].args) for k in finite) if finite else 0
        if not finite or n > MAX_COMBINATIONS_CHECKED:
            return
        combos = itertools.product(*[[(k, v) for v in space.search[k].args] for k in finite])
    for combo in combos:
        try:
            from_mapping({**base_d, **dict(combo)})
        except AdcError as e:
            shown = ", ".join(f"{k}={short(v, 40)}" for k, v in combo)
            raise AdcError(f"{where}: the combination {shown} is impossible: {_strip(e)}") from None


def _strip(e: AdcError) -> str:
    return str(e).replace("invalid config: ", "", 1)
