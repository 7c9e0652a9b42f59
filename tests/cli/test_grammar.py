"""One grammar for every command: both spellings, close-name suggestions, one-line errors
that say which source (flag, --set, file) a bad value came from -- all before torch and Ray."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adc_dist.config import TrainConfig, from_mapping
from adc_dist.errors import MAX_LINE, AdcError, find_adc_error, one_line, run_cli

REPO = Path(__file__).resolve().parents[2]
SPACE = str(REPO / "tune_spaces" / "smoke.yaml")


def _cli(module: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                          timeout=120, cwd=cwd or REPO)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= MAX_LINE, proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------- suggestions
@pytest.mark.parametrize("module, argv, hint", [
    ("adc_dist.train", ["--num_workrs", "1"], "--num_workers"),
    ("adc_dist.tune", ["--task", "amazon-book-music"], "--tasks"),
    ("adc_dist.tune", ["--num_sampels", "2"], "--num_samples"),
    ("adc_dist.compare", ["--budgt", "2"], "--budget"),
    ("adc_dist.report", ["sweeps/x", "--metirc", "ndcg@10"], "--metric"),
    ("adc_dist.data", ["prepare", "six", "--data-rot", "x"], "--data-root"),
    ("adc_dist.cluster", ["check", "cluster", "--strikt"], "--strict"),
])
def test_an_unknown_flag_is_one_line_naming_the_close_flag(module, argv, hint):
    line = _one_error_line(_cli(module, *argv))
    assert f"unknown flag {argv[0] if argv[0].startswith('-') else [a for a in argv if a.startswith('--')][0]}" in line
    assert f"did you mean {hint}" in line or f"did you mean" in line and hint.replace("-", "_") in line.replace("-", "_")


@pytest.mark.parametrize("module, argv", [
    ("adc_dist.train", ["--num-workers", "0", "--smoke_test", "--dry"]),  # --dry is unknown: parsing stops there
    ("adc_dist.tune", ["--num_workers", "1", "--max_concurrent", "1", "--dry_run"]),
    ("adc_dist.tune", ["--num-workers", "1", "--max-concurrent", "1", "--dry-run"]),
])
def test_both_spellings_of_a_flag_are_accepted(module, argv, tmp_path):
    from adc_dist.cli.argparser import Parser

    if module == "adc_dist.train":
        from adc_dist.train.launch import build_parser
    else:
        from adc_dist.tune.driver import build_parser
    parser: Parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    assert extra == (["--dry"] if module == "adc_dist.train" else [])
    assert (args.cfg_num_workers == "0" and args.smoke_test) if module == "adc_dist.train" else \
        (args.num_workers == 1 and args.max_concurrent == 1 and args.dry_run)


def test_every_command_accepts_both_spellings_of_its_flags():
    from adc_dist.cluster.__main__ import build_parser as cluster
    from adc_dist.compare.driver import build_parser as compare
    from adc_dist.data.__main__ import _parser as data
    from adc_dist.train.launch import build_parser as train
    from adc_dist.tune.driver import build_parser as tune

    assert compare().parse_args(["--no_balancing_study", "--no-balancing-study"]).no_balancing_study
    assert data().parse_args(["prepare", "six", "--data_root", "a", "--cache-dir", "b"]).data_root == "a"
    assert tune().parse_args(["--time_budget_s", "5"]).time_budget_s == 5
    assert train().parse_args(["--batch-size", "8", "--smoke_test"]).cfg_batch_size == "8"
    assert cluster().parse_args(["check", "f.yaml", "--strict"]).strict


# ---------------------------------------------------------------------------- sources
def test_a_bad_value_names_its_source_flag_file_or_set(tmp_path):
    from adc_dist.train.launch import main as train

    cfg = tmp_path / "my.yaml"
    cfg.write_text(yaml.safe_dump({"d": -4, "gamma": 1.0}))
    with pytest.raises(AdcError, match=r"d must be > 0 \(got -4\) \(from config file .*my.yaml\)"):
        train(["--config", str(cfg)])
    # The flag overrides the file: the flag's bad value is blamed on the flag.
    with pytest.raises(AdcError, match=r"expects int, got 'x' \(from flag --d\)"):
        train(["--config", str(cfg), "--d", "x"])
    with pytest.raises(AdcError, match=r"gamma must be >= 0 \(got -1.0\) \(from flag --gamma\)"):
        train(["--gamma", "-1"])


@pytest.mark.parametrize("item, fragment", [
    ("epoch=1", "unknown config key 'epoch' in --set epoch=1; did you mean epochs"),
    ("d=-3", "d must be > 0 (got -3) (from --set d=-3)"),
    ("d=abc", "expects int, got 'abc' (from --set d=abc)"),
])
def test_tune_set_errors_blame_set_not_the_space_file(item, fragment):
    line = _one_error_line(_cli("adc_dist.tune", "--space", SPACE, "--tasks", "amazon-book-music",
                                "--set", item, "--dry-run"))
    assert fragment in line, line
    assert "smoke.yaml: fixed" not in line


def test_compare_set_errors_name_the_set_item():
    line = _one_error_line(_cli("adc_dist.compare", "--quick", "--set", "d=zero"))
    assert "(from --set d=zero)" in line


# ---------------------------------------------------------------------------- one line
def test_config_errors_are_one_line_naming_every_bad_field():
    with pytest.raises(AdcError) as e:
        from_mapping({"d": 0, "negatives": 0})
    assert "\n" not in str(e.value)
    assert "d must be > 0" in str(e.value) and "negatives must be >= 1" in str(e.value)
    with pytest.raises(AdcError) as e:
        TrainConfig(d=0, gamma=-1).validate()
    assert "\n" not in str(e.value) and str(e.value).startswith("invalid config: d must be > 0")


def test_run_cli_prints_one_bounded_line_even_for_a_huge_message(capsys):
    huge = "key: " + "[a, b] " * 1_200_000 + "\nsecond line"  # about 8 MB, as a YAML alias bomb gave

    def main():
        raise AdcError(huge)

    with pytest.raises(SystemExit) as ex:
        run_cli(main)
    assert ex.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: key: [a, b]") and err.rstrip("\n").endswith("...")
    assert len(err.rstrip("\n")) <= MAX_LINE


def test_an_adc_error_wrapped_by_ray_is_found_and_printed_as_the_plain_line(capsys):
    original = AdcError("the data root /x has no amazon4_cdtf")

    class WorkerGroupError(Exception):  # how Train V2 collects its workers' failures
        def __init__(self, failures):
            super().__init__("Training failed due to worker errors:\n" + "Traceback ...\n" * 40)
            self.worker_failures = failures

    try:
        try:
            raise original
        except AdcError as inner:
            raise RuntimeError("trial failed") from WorkerGroupError({0: inner})
    except RuntimeError as wrapped:
        assert find_adc_error(wrapped) is original

        def main():
            raise wrapped

        with pytest.raises(SystemExit) as ex:
            run_cli(main)
    assert ex.value.code == 2
    assert capsys.readouterr().err == f"error: {original}\n"
    assert one_line("a\n  b\tc") == "a b c"


# ---------------------------------------------------------------------------- fast feedback
@pytest.mark.parametrize("module, argv", [
    ("adc_dist.train.launch", ["--d", "x"]),
    ("adc_dist.train.launch", ["--num_workrs", "2"]),
    ("adc_dist.tune.driver", ["--space", SPACE, "--set", "d=-1", "--dry-run"]),
    ("adc_dist.compare.driver", ["--methds", "all"]),
])
def test_flag_and_config_errors_come_before_torch_and_ray_are_imported(module, argv):
    code = (f"import sys\nfrom {module} import main\ntry:\n    main({argv!r})\nexcept Exception as e:\n"
            f"    print(type(e).__name__)\nprint(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.stdout.split() == ["AdcError", "[]"], proc.stdout + proc.stderr


@pytest.mark.parametrize("module", ["adc_dist.train", "adc_dist.tune", "adc_dist.compare", "adc_dist.report",
                                    "adc_dist.data", "adc_dist.cluster"])
def test_help_works_without_importing_torch_or_ray(module):
    code = (f"import runpy, sys\nsys.argv = ['{module}', '--help']\ntry:\n    runpy.run_module('{module}', "
            f"run_name='__main__')\nexcept SystemExit as e:\n    print('exit', e.code)\n"
            f"print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert "usage:" in proc.stdout and proc.stdout.split()[-3:] == ["exit", "0", "[]"], proc.stdout[-500:] + proc.stderr


@pytest.mark.parametrize("module", ["adc_dist.train.launch", "adc_dist.tune.driver", "adc_dist.compare.driver"])
def test_help_examples_are_commands_the_parser_takes(module):
    """The --help examples, copied into a shell, run: a continued line keeps its backslash (a
    plain docstring once joined them into one line with a run of spaces), and every
    ``python -m <this command>`` example parses with the command's own flags."""
    import importlib
    import shlex

    mod = importlib.import_module(module)
    parser = mod.build_parser()
    epilog = parser.epilog
    command = f"python -m {parser.prog.split()[-1]}"
    assert all(not re.search(r"\S {3,}--", line) for line in epilog.splitlines()), epilog
    examples = [line.split("#")[0].strip() for line in epilog.replace("\\\n", " ").splitlines()
                if command + " " in line or line.strip() == command]
    examples = [e for e in examples if "..." not in e]  # "... --set d=100": a fragment, not a command
    assert len(examples) >= 3, epilog
    for example in examples:
        argv = shlex.split(example.split(command, 1)[1])
        parser.parse_args(argv)  # an unknown flag or bad value raises


def test_train_help_says_what_every_config_field_means():
    """``python -m adc_dist.train --help`` shows each field's comment from config.py beside its
    default (it once showed only "default: 128"); a new field without a comment fails here."""
    from adc_dist.cli.field_help import field_comments
    from adc_dist.config import FIELD_NAMES
    from adc_dist.train.launch import build_parser

    meaning = field_comments()
    assert [n for n in FIELD_NAMES if n not in meaning] == []
    assert meaning["d"] == "embedding size (paper: 100)"
    assert meaning["zero_init"].startswith("S_k and Q_k start at zero")  # the comment block above the field
    assert meaning["user_repr"].endswith("with a learned per-domain, per-dimension gate g_k in (0, 2)")
    help_text = " ".join(build_parser().format_help().split())
    assert "--d V embedding size (paper: 100) (default: 128)" in help_text
    assert "--cuda_graphs [V], --cuda-graphs [V] replay each step from a CUDA graph" in help_text
