"""The comparison's unit cache: JSON and Parquet only, so a cache file from shared storage cannot run code."""

from __future__ import annotations

import ast

import pandas as pd
import pytest

from adc_dist.compare import methods as cm
from adc_dist.compare import unit_cache
from adc_dist.compare.runner import Comparison, Settings
from adc_dist.errors import AdcError
from malicious import code_running_pickle


@pytest.fixture(scope="module")
def final_run(data_root) -> cm.FinalRun:
    """A real unit value: the popularity baseline tested on a real task, with a small history."""
    fr = cm.baseline_final("popularity", "amazon-dvd-video", {}, seed=0)
    hist = pd.DataFrame({"epoch": [1, 2], "loss_dvd": [0.69, 0.6], "weight_dvd": [1.0, 1.1],
                         "loss_video": [0.7, 0.65], "weight_video": [1.0, 0.9]})
    return cm.FinalRun(fr.per_user, cm.long_history(hist), 2.0, fr.seconds)


def test_every_kind_of_unit_reads_back_equal(tmp_path, final_run):
    sweep = pd.DataFrame({"lr": [0.01, 0.003], "domains": [None, ["dvd"]], "valid_score": [0.02, 0.03],
                          "best_epoch": [3, 2], "wall_time_s": [1.5, 2.5]})
    tuning_run = cm.FinalRun(final_run.per_user, final_run.history, 3.0, 2.5, valid=0.2705)
    for i, value in enumerate([0.0213, sweep, final_run, cm.FinalRun(final_run.per_user, pd.DataFrame(), None, 1.0),
                               tuning_run]):
        unit_cache.store(tmp_path / str(i), value)
        back = unit_cache.load(tmp_path / str(i))
        if isinstance(value, float):
            assert back == value
        elif isinstance(value, pd.DataFrame):
            assert back["domains"].isna().tolist() == [True, False] and list(back["domains"][1]) == ["dvd"]
            pd.testing.assert_frame_equal(back.drop(columns="domains"), value.drop(columns="domains"))
        else:
            pd.testing.assert_frame_equal(back.per_user, value.per_user)
            assert len(back.history) == len(value.history)
            if len(value.history):
                pd.testing.assert_frame_equal(back.history, value.history)
            assert (back.best_epoch, back.seconds, back.valid) == (value.best_epoch, value.seconds, value.valid)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_pickle_planted_in_the_cache_runs_nothing(tmp_path, final_run):
    """Every file of a unit replaced by a code-running pickle: one error line, no canary."""
    canary = tmp_path / "CANARY"
    bomb = code_running_pickle(canary)
    unit_cache.store(tmp_path / "u", final_run)
    for f in (tmp_path / "u").iterdir():
        f.write_bytes(bomb)
    with pytest.raises(AdcError, match="is damaged") as err:
        unit_cache.load(tmp_path / "u")
    assert "\n" not in str(err.value) and len(str(err.value)) <= 300
    assert not canary.exists()


def test_the_comparison_computes_a_unit_once_and_then_reads_it(tmp_path):
    s = Settings(tasks=["amazon-dvd-video"], methods=["popularity"], seeds=[0], budget=1, out=tmp_path,
                 work=tmp_path / "work", adc={}, mf={}, quiet=True)
    calls = []

    def compute() -> float:
        calls.append(1)
        return 0.5

    first, second = Comparison(s), Comparison(s)
    assert first.memo({"k": 1}, compute) == 0.5 and second.memo({"k": 1}, compute) == 0.5
    assert calls == [1] and (first.computed, second.reused) == (1, 1)
    # An old pickle cache beside it is never read.
    (tmp_path / "work" / "units" / "0123456789abcdef0123.pkl").write_bytes(code_running_pickle(tmp_path / "C"))
    assert Comparison(s).memo({"k": 1}, compute) == 0.5 and not (tmp_path / "C").exists()


def test_adc_units_are_keyed_by_every_trainconfig_default_not_only_the_set_flags(tmp_path):
    """A changed TrainConfig default (zero_init became one) must not read the ADC units of the old one."""
    from adc_dist.config import FIELD_NAMES

    def key(adc):
        return Comparison(Settings(tasks=["amazon-dvd-video"], methods=["adc_gradnorm"], seeds=[0], budget=1,
                                   out=tmp_path, work=tmp_path / "work", adc=adc, mf={}, quiet=True)).adc_key()

    default, old = key({"d": 128}), key({"d": 128, "zero_init": False})
    assert set(default) == set(FIELD_NAMES) - {"name", "storage_path", "data_root"}
    assert default["zero_init"] is True and default["d"] == 128 and old["zero_init"] is False


def test_a_unit_computed_by_other_code_is_computed_again(tmp_path, monkeypatch):
    """An upgrade or a fix must not report the old code's units: the code is part of every key."""
    from adc_dist.compare import runner

    s = Settings(tasks=["amazon-dvd-video"], methods=["popularity"], seeds=[0], budget=1, out=tmp_path,
                 work=tmp_path / "work", adc={}, mf={}, quiet=True)
    values = iter([0.5, 0.25])
    assert Comparison(s).memo({"k": 1}, lambda: next(values)) == 0.5
    monkeypatch.setattr(runner, "code_fingerprint", lambda: "another version")
    again = Comparison(s)
    assert again.memo({"k": 1}, lambda: next(values)) == 0.25 and (again.computed, again.reused) == (1, 0)


def test_the_fingerprint_follows_the_code_that_computes_units_not_the_reports(tmp_path):
    import shutil

    from adc_dist.compare.runner import PACKAGE, code_fingerprint

    copy = tmp_path / "adc_dist"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_fingerprint(copy) == code_fingerprint(PACKAGE)
    fingerprints = [code_fingerprint.__wrapped__(copy)]
    for module, changes_units in (("compare/report.py", False), ("compare/table.py", False),
                                  ("train/loop.py", True), ("compare/baselines/__init__.py", True)):
        with open(copy / module, "a") as f:
            f.write("\nAN_EDIT = 1\n")
        fingerprints.append(code_fingerprint.__wrapped__(copy))
        assert (fingerprints[-1] != fingerprints[-2]) == changes_units, module


def test_the_fingerprint_ignores_comments_and_docstrings_but_not_code(tmp_path):
    """Rewording a comment or a docstring must not throw away a day of cached units; changing
    what the code computes, even one constant, must."""
    import shutil

    from adc_dist.compare.runner import PACKAGE, code_fingerprint

    copy = tmp_path / "adc_dist"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    loop = copy / "train" / "loop.py"
    source = loop.read_text()
    before = code_fingerprint.__wrapped__(copy)

    def fingerprint_of(text: str) -> str:
        loop.write_text(text)
        return code_fingerprint.__wrapped__(copy)

    reworded = source.replace('"""', '"""Reworded. ', 1).replace("\ndef ", "\n# a new comment\n\ndef ", 1)
    assert reworded != source and fingerprint_of(reworded) == before
    tree = ast.parse(source)
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and ast.get_docstring(n))
    first = function.body[0]
    lines = source.splitlines(keepends=True)
    # The function's docstring deleted outright: its body now starts with code.
    without = "".join(lines[:first.lineno - 1] + lines[first.end_lineno:])
    assert fingerprint_of(without) == before, function.name
    number = next(n for n in ast.walk(tree) if isinstance(n, ast.Constant) and type(n.value) in (int, float)
                  and n.lineno == n.end_lineno)
    line = lines[number.lineno - 1]
    changed = line[:number.col_offset] + repr(number.value + 1) + line[number.end_col_offset:]
    assert fingerprint_of("".join(lines[:number.lineno - 1] + [changed] + lines[number.lineno:])) != before
