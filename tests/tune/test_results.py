"""Parquet results: fixed schema across tasks, atomic writes, merges without duplicates, S3."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sweep_fixtures as sf

from adc_dist.tune import records as RC, results as R
from adc_dist.config import FIELD_NAMES
from adc_dist.errors import AdcError


@pytest.fixture(scope="module")
def records():
    return sf.paper_sweep("paper")


def test_one_fixed_schema_for_tasks_with_different_domains(tmp_path, records):
    R.write_records(R.open_storage(tmp_path), records)
    for name, schema in ((R.TRIALS_FILE, R.TRIALS_SCHEMA), (R.HISTORY_FILE, R.HISTORY_SCHEMA),
                         (R.METRICS_FILE, R.METRICS_SCHEMA)):
        t = pq.read_table(tmp_path / name)
        assert t.schema.equals(schema, check_metadata=False), name
        assert t.schema.metadata[b"adc_dist.schema_version"] == RC.SCHEMA_VERSION.encode()
    # every TrainConfig field is its own column
    names = pq.read_schema(tmp_path / R.TRIALS_FILE).names
    assert set(FIELD_NAMES) <= set(names)


def test_read_back_with_pandas_rows_types_values(tmp_path, records):
    R.write_records(R.open_storage(tmp_path), records)
    res = R.load_results(tmp_path)
    t = res.trials
    assert len(t) == len(records) == t["trial_id"].nunique()
    assert t["d"].dtype == "int64" and t["gamma"].dtype == "float64" and t["use_gpu"].dtype == bool
    assert str(t["started_at"].dtype).startswith("datetime64")
    assert t["status"].value_counts().to_dict() == {"ok": 51, "stopped": 1, "error": 1}

    ok = t[t["status"] == "ok"].iloc[0]
    assert list(ok["task_domains"]) == ["book", "music"]
    assert ok["valid_score"] == pytest.approx(ok["metrics"]["valid_ndcg10_mean"])
    assert ok["test_score"] == pytest.approx(ok["metrics"]["test_ndcg10_mean"])
    assert ok["wall_time_s"] > ok["train_time_s"] > 0 and ok["startup_s"] >= 0
    assert {"test_recall50_music", "valid_ndcg5_book"} <= set(ok["metrics"])

    err = t[t["status"] == "error"].iloc[0]
    assert "out of memory" in err["error"] and pd.isna(err["test_score"])
    assert not any(k.startswith("test_") for k in err["metrics"])  # what it validated is kept
    assert err["d"] == 200  # the hyper-parameters of a failed trial are kept
    stopped = t[t["status"] == "stopped"].iloc[0]
    assert pd.isna(stopped["test_score"]) and stopped["valid_score"] > 0 and stopped["epochs_run"] == 2

    m = res.metrics  # long: one row per split x metric x N x domain
    one = m[m["trial_id"] == ok["trial_id"]]
    assert len(one) == 2 * 2 * 4 * 3
    assert set(one["domain"]) == {"book", "music", "mean"} and set(one["n"]) == {5, 10, 20, 50}

    h = res.history
    assert len(h) == sum(len(r.results) for r in records)
    first = h[h["trial_id"] == ok["trial_id"]].sort_values("epoch")
    assert list(first["epoch"]) == list(range(1, 9))
    assert set(first.iloc[0]["weight"]) == {"book", "music"}
    assert "gradnorm_target_spread" in first.iloc[0]["extra"]
    assert "hostname" not in first.iloc[0]["extra"]


def test_rewrite_merges_without_duplicates_and_newer_rows_win(tmp_path, records):
    st = R.open_storage(tmp_path)
    R.write_records(st, records[:10])
    R.write_records(st, records[5:])  # overlapping: a resumed sweep re-reports 5 trials
    fixed = sf.make_record("paper", records[-1].trial_id, "amazon-book-music", {"d": 200, "num_hidden_layers": 5})
    R.write_records(st, [fixed])  # the failed trial, restarted and finished
    res = R.load_results(tmp_path)
    assert len(res.trials) == len(records) and res.trials["trial_id"].is_unique
    row = res.trials.set_index("trial_id").loc[fixed.trial_id]
    assert row["status"] == "ok" and pd.isna(row["error"])
    assert not res.history.duplicated(["sweep", "trial_id", "epoch"]).any()
    assert not res.metrics.duplicated(R.METRICS_KEY).any()
    # a second sweep in the same directory keeps its own trials, even with equal ids
    other = sf.make_record("ablation", records[0].trial_id, "amazon-book-dvd", {})
    R.write_records(st, [other])
    res = R.load_results(tmp_path)
    assert len(res.trials) == len(records) + 1
    assert set(res.trials["sweep"]) == {"paper", "ablation"}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, records, monkeypatch):
    st = R.open_storage(tmp_path)
    R.write_records(st, records[:3])
    before = pq.read_table(tmp_path / R.TRIALS_FILE)

    def broken(table, where, **kw):
        with open(where, "wb") as f:
            f.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(R.pq, "write_table", broken)
    with pytest.raises(OSError, match="disk full"):
        R.write_records(st, records[3:6])
    monkeypatch.undo()
    assert pq.read_table(tmp_path / R.TRIALS_FILE).equals(before)
    assert sorted(os.listdir(tmp_path)) == sorted([R.TRIALS_FILE, R.HISTORY_FILE, R.METRICS_FILE])


def test_older_files_are_conformed_and_bad_types_rejected(tmp_path, records):
    st = R.open_storage(tmp_path)
    R.write_records(st, records[:2])
    t = pq.read_table(tmp_path / R.TRIALS_FILE)
    # a file from before a TrainConfig field existed; pandas' large_string columns
    old = t.drop_columns(["subsample_frac"]).cast(pa.schema(
        [f.with_type(pa.large_string()) if f.type == pa.string() else f
         for f in t.drop_columns(["subsample_frac"]).schema]))
    pq.write_table(old, tmp_path / R.TRIALS_FILE)
    R.write_records(st, records[2:4])
    res = R.load_results(tmp_path)
    assert len(res.trials) == 4
    assert res.trials["subsample_frac"].isna().sum() == 2

    bad = t.set_column(t.schema.get_field_index("d"), "d", pa.array(["x"] * t.num_rows))
    pq.write_table(bad, tmp_path / R.TRIALS_FILE)
    with pytest.raises(AdcError, match="column 'd' has type string"):
        R.load_results(tmp_path)


def test_not_a_results_dir(tmp_path):
    with pytest.raises(AdcError, match="holds no trials.parquet"):
        R.load_results(tmp_path)


def test_metric_keys_parse():
    assert RC.parse_metric_key("test_ndcg10_book") == ("test", "ndcg", 10, "book")
    assert RC.parse_metric_key("valid_recall50_movies_tv") == ("valid", "recall", 50, "movies_tv")
    assert RC.parse_metric_key("valid_recall50") is None
    assert RC.score_key("valid", "recall@20") == "valid_recall20_mean"


# --------------------------------------------------------------------------- S3
@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("moto")
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"endpoint_override={host}:{port}&scheme=http&region=us-east-1&allow_bucket_creation=true"
    server.stop()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_s3_round_trip_merge_and_report(s3, records, capsys):
    from adc_dist.tune import report

    uri = f"s3://adc-results/sweeps/paper?{s3}"
    st = R.open_storage(uri)
    assert not st.is_local and st.root == "adc-results/sweeps/paper"
    R.write_records(st, records[:20])
    R.write_records(st, records[10:])
    res = R.load_results(uri)
    assert len(res.trials) == len(records) and res.trials["trial_id"].is_unique
    assert report.main([uri]) == 0
    out = capsys.readouterr().out
    assert "amazon-book-music" in out and "figures in s3://adc-results/sweeps/paper/figures?" in out
    png = st.child("figures").read_bytes("ndcg_vs_gamma.png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
