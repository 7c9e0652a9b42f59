"""--merge: comparisons run apart give the tables and paired tests of one run, and runs of
different protocols or splits are refused.

The inputs are a real comparison split in two: the committed sparse-study run at budget 2
(results/sparse-balancing-budget2: six tasks, six methods, 157k per-user rows), its methods
divided between two output folders that both hold BPR-MF and MostPop, as two runs would.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adc_dist.compare.driver import main
from adc_dist.errors import AdcError

RUN = Path(__file__).resolve().parents[2] / "results" / "sparse-balancing-budget2"
PART = {"a": ["popularity", "bpr_mf", "adc_gradnorm"], "b": ["popularity", "bpr_mf", "cmf", "adc_equal", "adc_static"]}


def _write_part(folder: Path, methods: list[str], *, settings: bool, adc_epochs: int = 30) -> None:
    folder.mkdir()
    for name in ("results", "per_user", "tuning", "histories"):
        df = pd.read_parquet(RUN / f"{name}.parquet")
        df[df["method"].astype(str).isin(methods)].to_parquet(folder / f"{name}.parquet")
    shutil.copy(RUN / "results.md", folder / "results.md")
    if settings:  # what compare writes now; the other part is read from its results.md, as older outputs are
        (folder / "settings.json").write_text(json.dumps({
            "command": "python -m adc_dist.compare --methods " + ",".join(methods), "seeds": [0], "budget": 2,
            "adc": {"epochs": adc_epochs, "eval_every": 1, "patience": 3, "topk": [10, 20], "early_stop_metric": "ndcg@10",
                    "data_root": "/elsewhere"},  # where the data was is not part of the protocol
            "mf": {"epochs": 60, "eval_every": 5, "patience": 2, "batch_size": 4096}}))


@pytest.fixture()
def parts(tmp_path):
    _write_part(tmp_path / "a", PART["a"], settings=True)
    _write_part(tmp_path / "b", PART["b"], settings=False)
    return tmp_path


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    df = df.copy()
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df.sort_values(keys).reset_index(drop=True)


def test_two_runs_merged_give_the_one_runs_tables_and_paired_tests(parts):
    assert main(["--merge", str(parts / "a"), str(parts / "b"), "--out", str(parts / "ab"), "--quiet"]) == 0
    out = parts / "ab"
    unit = ["study", "task", "method", "seed", "domain"]
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(out / "results.parquet"), unit),
                                  _sorted(pd.read_parquet(RUN / "results.parquet"), unit))
    merged_pu = pd.read_parquet(out / "per_user.parquet")
    assert len(merged_pu) == len(pd.read_parquet(RUN / "per_user.parquet"))  # BPR-MF and MostPop once each
    # The paired tests across both parts: GradNorm (part a) against the best other method and
    # against tuned static weights (part b), exactly as the single run computed them.
    test = ["comparison", "task", "domain"]
    got = _sorted(pd.read_parquet(out / "significance.parquet"), test)
    want = _sorted(pd.read_parquet(RUN / "significance.parquet"), test)
    assert set(got["comparison"]) == {"sparse: best other", "sparse: BPR-MF", "sparse: tuned static"}
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-9)
    assert "adc_static" in set(got["method_b"]) and "adc_gradnorm" not in PART["b"]
    md = (out / "results.md").read_text()
    assert md.startswith("# ADC against baselines: results\n\nMerged by `python -m adc_dist.compare --merge")
    assert f"`{parts / 'a'}` (`python -m adc_dist.compare --methods popularity,bpr_mf,adc_gradnorm`)" in md
    assert "Seeds [0]" in md and "validation budget 2 configurations" in md
    assert "## Paired tests on the cut domain: ADC GradNorm against the best other method" in md
    settings = json.loads((out / "settings.json").read_text())
    assert settings["methods"] == ["popularity", "bpr_mf", "cmf", "adc_equal", "adc_static", "adc_gradnorm"]
    assert len(settings["sources"]) == 2 and settings["budget"] == 2
    # The merged output is itself an input: merged again with a part, nothing changes.
    main(["--merge", str(out), str(parts / "b"), "--out", str(parts / "again"), "--quiet"])
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(parts / "again" / "significance.parquet"), test), got)


def test_one_folder_is_its_report_written_again_with_the_targets(parts):
    """--merge of one folder trains and merges nothing: the same units, the report of this code."""
    assert main(["--merge", str(parts / "a"), "--out", str(parts / "again"), "--quiet"]) == 0
    unit = ["study", "task", "method", "seed", "domain"]
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(parts / "again" / "results.parquet"), unit),
                                  _sorted(pd.read_parquet(parts / "a" / "results.parquet"), unit))
    md = (parts / "again" / "results.md").read_text()
    assert md.startswith("# ADC against baselines: results\n\nReported again by `python -m adc_dist.compare --merge")
    assert "## Targets: ADC against per-domain BPR-MF" in md and "**Sparse study**: the best ADC variant, ADC GradNorm" in md


def test_a_unit_with_other_per_user_metrics_is_refused_and_nothing_written(parts):
    pu = pd.read_parquet(parts / "b" / "per_user.parquet")
    is_mf = (pu["method"] == "bpr_mf") & (pu["task"] == "amazon-dvd-video")
    pu.loc[is_mf, "ndcg@10"] = np.float32(0.5)  # BPR-MF of another split or code
    pu.to_parquet(parts / "b" / "per_user.parquet")
    with pytest.raises(AdcError, match=r"sparse-video-10pct/amazon-dvd-video/bpr_mf/0 is in .* different per-user"):
        main(["--merge", str(parts / "a"), str(parts / "b"), "--out", str(parts / "ab")])
    assert not (parts / "ab").exists()


def test_other_protocols_and_incomplete_inputs_are_refused(parts):
    md = parts / "b" / "results.md"
    md.write_text(md.read_text().replace("validation budget 2", "validation budget 3"))
    with pytest.raises(AdcError, match=r"'budget' differs \(3 against 2\)"):
        main(["--merge", str(parts / "a"), str(parts / "b"), "--out", str(parts / "ab")])
    (parts / "a" / "per_user.parquet").unlink()
    with pytest.raises(AdcError, match=r"per_user.parquet is missing: the paired tests need"):
        main(["--merge", str(parts / "a"), str(parts / "b"), "--out", str(parts / "ab")])
    with pytest.raises(AdcError, match="--out .* is one of the inputs"):
        main(["--merge", str(parts / "a"), str(parts / "b"), "--out", str(parts / "b")])
    assert not (parts / "ab").exists()


def test_adc_settings_bind_only_comparisons_that_trained_an_adc_method(parts):
    """A run of the baselines alone never used its ADC settings: it merges with an ADC run of other
    epochs, and the merge records the ADC run's; two runs that both trained ADC must agree."""
    _write_part(parts / "baselines", ["popularity", "bpr_mf", "cmf"], settings=True, adc_epochs=60)
    main(["--merge", str(parts / "baselines"), str(parts / "a"), "--out", str(parts / "merged"), "--quiet"])
    settings = json.loads((parts / "merged" / "settings.json").read_text())
    assert settings["adc"]["epochs"] == 30 and settings["methods"] == ["popularity", "bpr_mf", "cmf", "adc_gradnorm"]
    _write_part(parts / "equal60", ["popularity", "bpr_mf", "adc_equal"], settings=True, adc_epochs=60)
    with pytest.raises(AdcError, match=r"'adc' differs \(\{'epochs': 60"):
        main(["--merge", str(parts / "merged"), str(parts / "equal60"), "--out", str(parts / "again")])
    assert not (parts / "again").exists()


@pytest.mark.parametrize("argv, message", [
    (["--merge", "x", "y"], "--merge needs --out"),
    (["--merge", "x", "y", "--out", "z", "--budget", "2"], "--merge runs nothing, so --budget has no effect"),
    (["--merge", "x", "y", "--out", "z", "--set", "d=8"], "so --set has no effect"),
    (["--merge", "x", "y", "--out", "z", "--replace", "bpr"], "--replace: unknown method 'bpr'"),
    (["--replace", "bpr_mf"], "--replace says which method a --merge takes from the later input: it needs --merge"),
])
def test_merge_flags_are_checked_before_reading_anything(argv, message):
    with pytest.raises(AdcError, match=message):
        main(argv)


def test_merge_on_the_command_line_exits_2_with_one_line(parts):
    r = subprocess.run([sys.executable, "-m", "adc_dist.compare", "--merge", str(parts / "a"), str(parts / "nope"),
                        "--out", str(parts / "ab")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: --merge: ") and "nope is not a folder" in r.stderr


def test_replace_takes_a_rerun_methods_units_from_the_later_input(parts):
    """--replace bpr_mf: a BPR-MF rerun (here: other per-user metrics, on one task) replaces the
    earlier input's BPR-MF on that task, units and tuning rows, where a plain merge refuses; the
    other tasks keep the earlier BPR-MF, and the report says which rows are whose."""
    rerun = parts / "rerun"
    _write_part(rerun, ["bpr_mf"], settings=True)
    for name in ("results", "per_user", "tuning", "histories"):
        df = pd.read_parquet(rerun / f"{name}.parquet")
        df = df[df["task"] == "amazon-dvd-video"]
        if name in ("results", "per_user"):
            df["ndcg@10"] = np.float32(0.5)
        if name == "tuning":
            df["valid_ndcg10"] = 0.25
        df.to_parquet(rerun / f"{name}.parquet")
    with pytest.raises(AdcError, match="different per-user metrics"):
        main(["--merge", str(parts / "a"), str(rerun), "--out", str(parts / "plain"), "--quiet"])
    main(["--merge", str(parts / "a"), str(rerun), "--replace", "bpr_mf", "--out", str(parts / "ab"), "--quiet"])
    res = pd.read_parquet(parts / "ab" / "results.parquet")
    mf = res[res["method"] == "bpr_mf"]
    original = pd.read_parquet(parts / "a" / "results.parquet")
    assert len(mf) == len(original[original["method"] == "bpr_mf"])  # each unit once
    on_dvd = mf["task"] == "amazon-dvd-video"
    assert on_dvd.any() and (mf.loc[on_dvd, "ndcg@10"] == 0.5).all() and (mf.loc[~on_dvd, "ndcg@10"] != 0.5).all()
    tuning = pd.read_parquet(parts / "ab" / "tuning.parquet").query("method == 'bpr_mf'")
    assert (tuning.loc[tuning["task"] == "amazon-dvd-video", "valid_ndcg10"] == 0.25).all()
    assert (tuning.loc[tuning["task"] != "amazon-dvd-video", "valid_ndcg10"] != 0.25).all()
    pu = pd.read_parquet(parts / "ab" / "per_user.parquet")
    assert (pu.loc[(pu["method"] == "bpr_mf") & (pu["task"] == "amazon-dvd-video"), "ndcg@10"] == 0.5).all()
    md = (parts / "ab" / "results.md").read_text()
    assert "With `--replace bpr_mf`, these tasks' rows of the method come from the later input" in md
    assert f"amazon-dvd-video/bpr_mf from `{rerun}`" in md and "amazon-music-dvd/bpr_mf from" not in md
    with pytest.raises(AdcError, match="nothing would be replaced"):
        main(["--merge", str(parts / "a"), str(parts / "b"), "--replace", "cmf", "--out", str(parts / "none")])
    assert not (parts / "none").exists()  # CMF is only in the later input: a plain merge adds it
