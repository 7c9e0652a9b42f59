"""Finished comparisons merged into one: ``python -m adc_dist.compare --merge A B --out C``.

A comparison of several methods on the six tasks takes hours on a small machine, so methods
are often run apart: a baseline added later, an ADC variant on another machine. Merging gives
them one set of tables, one cold-user slice and the paired tests across all of them, as if
they had been one run. That is sound only when the runs share the protocol, so the merge
refuses otherwise:

- the same seeds (seed s is the split seed: the same test users), validation budget, and
  fixed ADC and MF settings (``settings.json``, or the ``results.md`` of an output written
  before that file existed);
- a unit that several inputs hold (study x task x method x seed, e.g. BPR-MF run in both)
  must have the same per-user test metrics in each: proof that the split and the evaluator
  are the same. The first input's copy is kept.

With one input folder the "merge" writes that comparison's outputs again with this
version's report code (its tables, paired tests and targets), training nothing.

``--replace METHOD`` is for a method rerun on purpose (a baseline re-tuned with a wider grid):
where a later input holds that method on a task, its rows there (every study's units, and
the tuning rows that chose their configurations) replace the earlier inputs', without the
sameness check; on other tasks the earlier ones stay, and the report says which task took
which. Replacing whole tasks keeps one run's configuration behind all of a task's rows: a
sparse-study row of the old run beside main rows of the new would pair two tunings.

Every input needs its ``per_user.parquet``: the paired tests read it (files over 1 MB are
not committed; a comparison rerun with its ``--work`` cache, on the same code, writes it again
in seconds).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from adc_dist.compare import methods as cm
from adc_dist.compare.table import METRICS
from adc_dist.errors import AdcError
from adc_dist.train.run_dir import read_parquet

UNIT = ["study", "task", "method", "seed"]
# Per-user metrics of a unit held twice may differ by float32 storage rounding only.
SAME_TOLERANCE = 1e-6
# Settings that must agree; tasks and methods may differ (that is what a merge adds).
PROTOCOL = ("seeds", "budget", "adc", "mf")
# ADC settings that say where, not how: not part of the protocol.
LOCAL_ADC_KEYS = ("data_root",)
# The methods whose units a setting reaches: a comparison that ran none of them did not use it,
# so it cannot disagree (a run of the baselines alone merges with ADC runs of any epochs).
USED_BY = {"adc": set(cm.ADC_METHODS), "mf": set(cm.BASELINE_METHODS)}


@dataclass
class Output:
    folder: Path
    settings: dict[str, Any]
    results: pd.DataFrame
    per_user: pd.DataFrame
    tuning: pd.DataFrame
    histories: pd.DataFrame


def _settings_from_report(folder: Path) -> dict[str, Any]:
    """The protocol as results.md states it (outputs written before settings.json existed)."""
    path = folder / "results.md"
    if not path.is_file():
        raise AdcError(f"{folder} is not a comparison's output: it has neither settings.json nor results.md")
    text = path.read_text()
    found = {k: re.search(p, text) for k, p in (
        ("command", r"Produced by `([^`]*)`"), ("seeds", r"Seeds \[([0-9, ]*)\]"),
        ("budget", r"validation budget (\d+) configuration"), ("adc", r"- ADC \(every run\): `(\{.*\})`"),
        ("mf", r"- MF baselines \(every run\): `(\{.*\})`"))}
    missing = [k for k, m in found.items() if m is None]
    if missing:
        raise AdcError(f"{path}: cannot read the comparison's {', '.join(missing)} from it (and there is no "
                       "settings.json beside it)")
    return {"command": found["command"][1], "seeds": [int(s) for s in found["seeds"][1].split(",") if s.strip()],
            "budget": int(found["budget"][1]), "adc": json.loads(found["adc"][1]),
            "mf": json.loads(found["mf"][1]), "sources": []}


def read_output(folder: Path) -> Output:
    if not folder.is_dir():
        raise AdcError(f"--merge: {folder} is not a folder")
    settings_file = folder / "settings.json"
    settings = json.loads(settings_file.read_text()) if settings_file.is_file() else _settings_from_report(folder)
    frames = {}
    for name in ("results", "per_user", "tuning", "histories"):
        path = folder / f"{name}.parquet"
        if path.is_file():
            frames[name] = read_parquet(str(path))
        elif name == "histories":
            frames[name] = pd.DataFrame()
        elif name == "per_user":
            raise AdcError(f"{path} is missing: the paired tests need every input's per-user metrics (a file over "
                           "1 MB is not committed to git; rerunning that comparison with its --work cache, on the same "
                           "code, writes it again without training)")
        else:
            raise AdcError(f"{path} is missing: {folder} is not a finished comparison's output")
    return Output(folder, settings, frames["results"], frames["per_user"], frames["tuning"], frames["histories"])


def _protocol(settings: dict[str, Any]) -> dict[str, Any]:
    p = {k: settings[k] for k in PROTOCOL}
    p["adc"] = {k: v for k, v in p["adc"].items() if k not in LOCAL_ADC_KEYS}
    return p


def _uses(o: Output, key: str) -> bool:
    """Whether comparison ``o`` ran a method that ``key``'s settings reach."""
    return key not in USED_BY or bool(set(o.results["method"].astype(str)) & USED_BY[key])


def _check_protocol(first: Output, other: Output) -> None:
    a, b = _protocol(first.settings), _protocol(other.settings)
    for key in PROTOCOL:
        if _uses(first, key) and _uses(other, key) and a[key] != b[key]:
            raise AdcError(f"cannot merge {other.folder} into {first.folder}: {key!r} differs ({b[key]} against "
                           f"{a[key]}); merged tables would compare methods run under different protocols")


def _keys(df: pd.DataFrame, columns: list[str] = UNIT) -> pd.Series:
    """One string per row naming its unit, e.g. ``main/amazon-book-music/bpr_mf/0``."""
    if df.empty:
        return pd.Series([], dtype=str, index=df.index)
    key = df[columns[0]].astype(str)
    for c in columns[1:]:
        key = key + "/" + df[c].astype(str)
    return key


def _only(df: pd.DataFrame, units: set[str], keep: bool, columns: list[str] = UNIT) -> pd.DataFrame:
    """Rows of ``df`` whose unit (``columns``) is in ``units`` (keep) or not (not keep)."""
    if df.empty:
        return df
    inside = _keys(df, columns).isin(units)
    return df[inside if keep else ~inside]


def _check_same(unit: str, kept: pd.DataFrame, other: pd.DataFrame, first: Path, second: Path) -> None:
    """A unit held by two inputs: the same users and, within rounding, the same per-user metrics."""
    keys = ["domain", "user"]
    a = kept.set_index(keys)[list(METRICS)].sort_index()
    b = other.set_index(keys)[list(METRICS)].sort_index()
    if not a.index.equals(b.index):
        raise AdcError(f"cannot merge: {unit} is in {first} and {second} with different test users ({len(a)} "
                       f"against {len(b)} rows): the two comparisons did not use the same split")
    diff = float((a.astype("float64") - b.astype("float64")).abs().to_numpy().max()) if len(a) else 0.0
    if diff > SAME_TOLERANCE:
        raise AdcError(f"cannot merge: {unit} is in {first} and {second} with different per-user metrics (largest "
                       f"difference {diff:.3g}): the runs differ in split, settings or code; leave that method out "
                       "of one of them")


def _drop_replaced(merged: Output, other: Output, replace: list[str]) -> tuple[Output, list[str]]:
    """``merged`` without its rows of the methods in ``replace`` on the tasks where ``other`` has
    them; and the ``task/method`` pairs so replaced."""
    cols = ["task", "method"]
    held = _keys(other.results, cols)
    taken = set(held[other.results["method"].astype(str).isin(replace)])
    replaced = sorted(taken & set(_keys(merged.results, cols)))
    if not replaced:
        return merged, []

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        return df if df.empty else df[~_keys(df, cols).isin(taken)]

    return Output(merged.folder, merged.settings, keep(merged.results), keep(merged.per_user),
                  keep(merged.tuning), keep(merged.histories)), replaced


def merge_outputs(outputs: list[Output], log: Callable[[str], Any] = print,
                  replace: list[str] | None = None) -> tuple[Output, list[str]]:
    """One Output holding every input's units; the first input's copy of a unit held twice,
    except for the methods in ``replace`` (module doc). Returns it and the replaced
    ``task/method`` pairs with the input each came from."""
    merged = outputs[0]
    replaced: list[str] = []
    for other in outputs[1:]:
        _check_protocol(merged, other)
        merged, taken = _drop_replaced(merged, other, replace or [])
        replaced += [f"{t} from `{other.folder}`" for t in taken]
        mine, theirs = _keys(merged.per_user), _keys(other.per_user)
        shared = set(mine) & set(theirs)
        for unit in sorted(shared):
            _check_same(unit, merged.per_user[mine == unit], other.per_user[theirs == unit],
                        merged.folder, other.folder)
        if shared:
            log(f"  {len(shared)} unit(s) in both {merged.folder} and {other.folder}, identical: "
                + ", ".join(sorted(set(other.per_user.loc[theirs.isin(shared), "method"].astype(str)))))
        # Tuning rows are per study x task x method (no seed): those already present stay.
        tuned = set(_keys(merged.tuning, ["study", "task", "method"]))
        # The settings of the input that used them (the first, when both did: they agree).
        settings = {**merged.settings, **{k: other.settings[k] for k in USED_BY
                                          if not _uses(merged, k) and _uses(other, k)}}
        merged = Output(
            merged.folder, settings,
            pd.concat([merged.results, _only(other.results, shared, False)], ignore_index=True),
            pd.concat([merged.per_user, _only(other.per_user, shared, False)], ignore_index=True),
            pd.concat([merged.tuning, _only(other.tuning, tuned, False, ["study", "task", "method"])],
                      ignore_index=True),
            pd.concat([merged.histories, _only(other.histories, shared, False)], ignore_index=True))
    return merged, replaced


def run_merge(folders: list[Path], out: Path, command: str, quiet: bool = False,
              names: list[str] | None = None, replace: list[str] | None = None) -> None:
    """Read the finished comparisons in ``folders``, merge them, write the outputs to ``out``;
    ``names``: the folders as the user wrote them, for the report; ``replace``: methods whose
    later units replace the earlier ones (module doc)."""
    from adc_dist.compare.report import write_outputs
    from adc_dist.compare.runner import Collected, Settings

    t0 = time.perf_counter()
    log = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
    if out.resolve() in {f.resolve() for f in folders}:
        raise AdcError(f"--out {out} is one of the inputs: write the merge to a new folder (nothing is overwritten "
                       "that the merge reads)")
    outputs = [read_output(f) for f in folders]  # every input read and checked before anything is written
    log(f"merge: {len(outputs)} comparison{'s' if len(outputs) > 1 else ''} -> {out}")
    m, replaced = merge_outputs(outputs, log, replace)
    if replace and not replaced:
        raise AdcError(f"--replace {','.join(replace)}: no input after the first holds it on a task that an earlier "
                       "input has, so nothing would be replaced (the rerun goes last)")
    for line in replaced:
        log(f"  replaced {line}")
    # A categorical column concatenated with other categories comes back as object: recompact on write.
    for df in (m.results, m.per_user, m.histories):
        for c in ("study", "task", "method", "domain"):
            if c in df:
                df[c] = df[c].astype(str)
    studies = set(m.results["study"])
    settings = Settings(
        tasks=list(dict.fromkeys(m.results["task"])), seeds=m.settings["seeds"], budget=m.settings["budget"],
        methods=[x for x in cm.METHODS if x in set(m.results["method"])], out=out, work=out / "tmp-work",
        adc=m.settings["adc"], mf=m.settings["mf"], balancing=bool(studies - {"main"}), main_finals="main" in studies,
        command=command, sources=[o.settings["command"] for o in outputs])
    inputs = "; ".join(f"`{name}` (`{o.settings['command']}`)" for name, o in zip(names or folders, outputs))
    # One input: its report written again by this code (new tables, tests or targets), nothing trained.
    produced = (f"Merged by `{command}` from {len(outputs)} comparisons of the same protocol: {inputs}"
                if len(outputs) > 1 else f"Reported again by `{command}` from {inputs}")
    if replaced:  # the tables mix runs of one method: say which rows are whose
        produced += (f". With `--replace {','.join(replace or [])}`, these tasks' rows of the method come from the "
                     f"later input, not the earlier: {'; '.join(replaced)}")
    collected = Collected(rows=m.results.to_dict("records"), per_user=[m.per_user],
                          histories=[m.histories] if len(m.histories) else [], tuning=m.tuning.to_dict("records"))
    write_outputs(collected, settings, wall_s=time.perf_counter() - t0, produced=produced, log=log)
