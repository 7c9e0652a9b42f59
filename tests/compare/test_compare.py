"""python -m adc_dist.compare: bad flags stop with one line; --quick runs end to end."""

import subprocess
import sys

import pandas as pd
import pytest

from adc_dist.compare.driver import build_parser, main, settings_from_args
from adc_dist.errors import AdcError


def _settings(*argv):
    return settings_from_args(build_parser().parse_args(list(argv)), list(argv))


@pytest.mark.parametrize("argv,message", [
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--budget", "99"], "--budget must be between 1 and"),
    (["--budget", "two"], "invalid int value"),
    (["--methods", "cmf,gradnrm"], "unknown method 'gradnrm'"),
    (["--tasks", "amazon-book-musik"], "did you mean amazon-book-music"),
    (["--set", "lr=0.1"], "the comparison sets 'lr' itself"),
    (["--set", "dd=8"], "did you mean d"),
    (["--set", "d=-1"], "d must be > 0"),
    (["--frobnicate"], "unknown flag --frobnicate"),
    (["--sparse-only", "--no-balancing-study"], "--sparse-only needs the sparse-domain study"),
    (["--sparse-only", "--methods", "bpr_mf,adc_paper"], "--sparse-only needs the sparse-domain study"),
])
def test_bad_flags_raise_one_clear_error(argv, message):
    with pytest.raises(AdcError, match=message):
        _settings(*argv)


def test_bad_flag_on_the_command_line_exits_2_with_one_line():
    p = subprocess.run([sys.executable, "-m", "adc_dist.compare", "--seeds", "0"], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: --seeds must be >= 1 (got 0)"]


def test_quick_mode_is_one_task_two_seeds_and_small_models():
    s = _settings("--quick")
    assert s.tasks == ["amazon-music-video"] and s.seeds == [0, 1] and s.budget == 2
    assert s.adc["epochs"] <= 2 and s.balancing
    assert _settings("--quick", "--tasks", "six").tasks == ["amazon-book-music"]
    assert _settings("--methods", "cmf,adc_gradnorm").balancing  # the sparse study runs the balancers present
    assert not _settings("--methods", "cmf,adc_paper").balancing  # ... and needs one of them
    only = _settings("--sparse-only", "--methods", "bpr_mf,adc_gradnorm")
    assert only.balancing and not only.main_finals and _settings().main_finals


@pytest.fixture
def tiny_data_root(tmp_path, monkeypatch):
    from synthetic import make_task

    t = make_task(n_users=120, n_items=(60, 40), per_user=(10, 6), seed=0, domains=("a", "b"))
    rows = [pd.DataFrame({"user": inter.users, "item": inter.items, "domain": t.domains[k]})
            for s in ("train", "valid", "test") for k, inter in enumerate(t.split(s))]
    pd.concat(rows).to_csv(tmp_path / "tiny.csv", index=False)
    monkeypatch.setenv("ADC_DATA_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.ray
def test_quick_comparison_writes_every_output(tiny_data_root, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--quick", "--budget", "1", "--tasks", "file:tiny.csv", "--out", str(out)]) == 0
    res = pd.read_parquet(out / "results.parquet")
    main_rows = res[res["study"] == "main"]
    # one row per method x seed x domain, with the four metrics
    assert set(main_rows["method"]) >= {"neumf", "dtcdr", "adc_paper", "bpr_mf", "adc_gradnorm"}
    assert len(main_rows) == 11 * 2 * 2
    assert {"study", "task", "method", "seed", "domain", "recall@10", "ndcg@10"} <= set(res.columns)
    # the sparse study: b (the smaller domain) cut to 10 %; balancers, BPR-MF, CMF, the paper preset
    sparse = res[res["study"] == "sparse-b-10pct"]
    assert set(res["study"]) == {"main", "sparse-b-10pct"}
    assert set(sparse["method"]) == {"adc_equal", "adc_static", "adc_gradnorm", "bpr_mf", "cmf", "adc_paper"}
    assert len(sparse) == 6 * 2 * 2
    per_user = pd.read_parquet(out / "per_user.parquet")
    # the per-domain means of the per-user file are the rows of results.parquet
    means = per_user.groupby(["study", "method", "seed", "domain"], observed=True)["ndcg@10"].mean()
    check = res.set_index(["study", "method", "seed", "domain"])["ndcg@10"]
    pd.testing.assert_series_equal(means.sort_index(), check.sort_index(), check_names=False, check_dtype=False,
                                   check_index_type=False, check_categorical=False)
    # the cold-user slice: every user's train positives in the evaluated domain
    from adc_dist.compare.methods import train_items

    counts = train_items("file:tiny.csv", 0).set_index(["user", "domain"])["train_items"]
    pu0 = per_user[(per_user["study"] == "main") & (per_user["seed"] == 0)]
    assert (pu0.set_index(["user", "domain"])["train_items"] == counts.reindex(
        pu0.set_index(["user", "domain"]).index)).all()
    sig = pd.read_parquet(out / "significance.parquet")
    assert set(sig["comparison"]) == {"best other", "tuned static"} and len(sig) == 4
    md = (out / "results.md").read_text()
    assert "## Test NDCG@10" in md and "**" in md and "ADC GradNorm" in md and "Balancing study" in md
    assert ("Cold users" in md) == bool((per_user.loc[per_user["study"] == "main", "train_items"] <= 3).any())
    for png in ("main_ndcg10.png", "trajectories.png", "balancing.png"):
        assert (out / png).stat().st_size > 10_000
    assert "wrote" in capsys.readouterr().out
