"""The report: best configuration per task (chosen on validation) and the paper's figures."""

from __future__ import annotations

import pandas as pd
import pytest
import sweep_fixtures as sf

from adc_dist.tune import report
from adc_dist.tune import results as R
from adc_dist.errors import AdcError


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweep")
    R.write_records(R.open_storage(d), sf.paper_sweep("paper"))
    return d


def test_cli_prints_best_per_task_and_writes_the_figures(results_dir, capsys):
    assert report.main([str(results_dir)]) == 0
    out = capsys.readouterr().out
    for task in sf.TASKS:
        assert task in out
    assert "test ndcg@10" in out and "17/1/1" in out  # ok/stopped/error counts
    assert "failed: amazon-book-music" in out and "out of memory" in out
    figs = results_dir / "figures"
    expected = {"recall_at_n.png", "ndcg_vs_num_hidden_layers.png", "ndcg_vs_gamma.png", "ndcg_vs_d.png",
                "ndcg_vs_negatives.png", "domain_weights.png"}
    assert {p.name for p in figs.iterdir()} == expected
    for p in figs.iterdir():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a real plot, not an empty canvas


def test_best_is_chosen_on_validation_not_test(results_dir):
    res = R.load_results(results_dir)
    best = report.best_per_task(res.trials)
    assert len(best) == len(sf.TASKS)
    for _, row in best.iterrows():
        same = res.trials[(res.trials["task"] == row["task"]) & (res.trials["status"] == "ok")]
        assert row["valid_score"] == same["valid_score"].max()
    # the synthetic optimum: 3 hidden layers, gamma 1.5, d 100, 5 negatives
    assert set(best["num_hidden_layers"]) == {3} and set(best["gamma"]) == {1.5}
    table = report.best_table(res)
    assert list(table.columns[:2]) == ["task", "trial"]
    assert {"d", "num_hidden_layers", "gamma", "negatives", "test R@50"} <= set(table.columns)


def test_a_stopped_trial_never_beats_a_finished_one():
    recs = [sf.make_record("s", "a", "amazon-book-music", {"num_hidden_layers": 3}, status="stopped"),
            sf.make_record("s", "b", "amazon-book-music", {"num_hidden_layers": 1})]
    recs[0].results[-1]["valid_ndcg10_mean"] = 1.0  # stopped early but validated higher
    trials = pd.DataFrame([r.trial_row() for r in recs])
    assert report.best_per_task(trials)["trial_id"].tolist() == ["b"]


def test_slices_hold_the_other_keys_at_the_base_of_a_one_at_a_time_sweep(results_dir):
    res = R.load_results(results_dir)
    pts = report.slice_points(res.trials, "gamma")
    assert pts["exact"].all()
    per_task = pts.groupby("task")
    assert all(len(g) == 6 for _, g in per_task)
    # every gamma point of the slice sits at the base: 2 layers, d 100, 5 negatives
    assert set(pts["num_hidden_layers"]) == {2} and set(pts["d"]) == {100} and set(pts["negatives"]) == {5}


def test_slices_of_a_grid_go_through_the_best_configuration():
    recs = []
    for i, (layers, gamma) in enumerate([(l, g) for l in (1, 2, 3) for g in (0.0, 1.5, 3.0)]):
        recs.append(sf.make_record("g", f"t{i}", "amazon-book-dvd", {"num_hidden_layers": layers, "gamma": gamma}))
    trials = pd.DataFrame([r.trial_row() for r in recs])
    pts = report.slice_points(trials, "num_hidden_layers")
    assert pts["exact"].all() and set(pts["gamma"]) == {1.5} and pts["num_hidden_layers"].tolist() == [1, 2, 3]


def test_metric_option_and_sweep_filter(results_dir, tmp_path, capsys):
    out = tmp_path / "figs"
    assert report.main([str(results_dir), "--metric", "recall@20", "--out", str(out), "--sweep", "paper"]) == 0
    assert (out / "recall_vs_gamma.png").is_file()
    with pytest.raises(AdcError, match="N in \\[5, 10, 20, 50\\]"):
        report.main([str(results_dir), "--metric", "ndcg@7"])
    with pytest.raises(AdcError, match="ndcg@N or recall@N"):
        report.main([str(results_dir), "--metric", "auc"])
    with pytest.raises(AdcError, match="no trial of sweep 'nope'"):
        report.main([str(results_dir), "--sweep", "nope"])
    with pytest.raises(AdcError, match="holds no trials.parquet"):
        report.main([str(tmp_path / "empty")])


def test_all_failed_sweep_reports_without_figures(tmp_path, capsys):
    recs = [sf.make_record("s", f"e{i}", "amazon-book-music", {}, status="error") for i in range(2)]
    R.write_records(R.open_storage(tmp_path), recs)
    assert report.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "(no finished trial)" in out and "figures" in out
