"""The one safe YAML loader behind configs, search spaces and cluster files: every hostile or
broken file (made here, at run time) is refused with one short line, by all three entry points,
and the command-line tools exit 2 with that line and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adc_dist.inputs import files as inputs
from adc_dist.cluster.yamldoc import load_documents
from adc_dist.config import load_yaml as load_config
from adc_dist.errors import AdcError
from adc_dist.tune.search_space import load_space

REPO = Path(__file__).resolve().parents[2]
LOADERS = {"config": load_config, "space": load_space, "cluster": load_documents}

# A "billion laughs" file of about 600 bytes: 9 levels of 9 aliases each (9**9 leaves).
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))


def bad_files() -> dict[str, bytes]:
    """name -> content of each bad YAML file (built here: nothing malicious is committed)."""
    return {
        "binary": bytes(range(256)) * 4,
        "png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
        "latin1": "d: caf\xe9\n".encode("latin-1"),
        "control_char": b"d: \x07\n",
        "alias_bomb": BOMB.encode(),
        "recursive_alias": b"a: &a [1, *a]\n",
        "deep_flow": b"[" * 5000 + b"]" * 5000,
        "deep_block": "".join("  " * i + f"k{i}:\n" for i in range(300)).encode(),
        "unclosed": b"search: {gamma: [0, 1\n",
        "tab_indent": b"a:\n\t- 1\n",
        "python_tag": b"!!python/object/apply:os.system ['echo pwned']\n",
        "huge_int": b"d: " + b"9" * 5000 + b"\n",
        "bad_date": b"when: 2024-13-45\n",
        "two_docs": b"a: 1\n---\nb: 2\n",
        "oversize": b"# padding\n" * 120_000,
        "duplicate_anchor_bomb": b"a: &a [" + b"x," * 300 + b"]\n" + b"".join(b"k%d: *a\n" % i for i in range(400)),
    }


def assert_one_line(message: str) -> None:
    line = f"error: {message}"
    assert "\n" not in line and len(line) <= 300, (len(line), line[:400])


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize("name", sorted(bad_files()))
def test_every_yaml_entry_point_refuses_a_bad_file_with_one_short_line(tmp_path, loader, name):
    if loader == "cluster" and name == "two_docs":
        pytest.skip("several documents are normal in a Kubernetes manifest")
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(bad_files()[name])
    with pytest.raises(AdcError) as e:
        LOADERS[loader](path)
    assert_one_line(str(e.value))
    assert str(path) in str(e.value)


def test_the_alias_bomb_is_refused_for_its_expanded_size_not_its_bytes(tmp_path):
    assert len(BOMB) < 700
    p = tmp_path / "bomb.yaml"
    p.write_text(BOMB)
    with pytest.raises(AdcError, match="aliases are expanded|aliases"):
        inputs.load_yaml(p)
    # A few honest aliases (anchors shared by node types, as cluster files do) still load.
    p.write_text("base: &b {cpu: 4}\nhead: *b\nworker: *b\n")
    assert inputs.load_yaml(p) == {"base": {"cpu": 4}, "head": {"cpu": 4}, "worker": {"cpu": 4}}


def test_nesting_up_to_the_limit_loads_and_one_level_more_is_refused(tmp_path):
    p = tmp_path / "deep.yaml"
    depth = inputs.MAX_YAML_DEPTH
    p.write_text("[" * (depth - 1) + "1" + "]" * (depth - 1))  # depth - 1 lists + the scalar
    assert inputs.load_yaml(p) is not None
    p.write_text("[" * depth + "1" + "]" * depth)
    with pytest.raises(AdcError, match=f"nested deeper than {depth} levels"):
        inputs.load_yaml(p)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_named_pipe_a_device_a_folder_and_a_link_loop_are_refused_without_blocking(tmp_path, loader):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # nobody writes to it: an open() in blocking mode would wait forever
    loop = tmp_path / "loop.yaml"
    loop.symlink_to(loop)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    for path, words in [(fifo, "named pipe"), (Path("/dev/zero"), "character device"),
                        (folder, "folder"), (loop, "loops")]:
        with pytest.raises(AdcError, match=words) as e:
            LOADERS[loader](path)
        assert_one_line(str(e.value))


def test_a_utf8_byte_order_mark_is_dropped(tmp_path):
    p = tmp_path / "bom.yaml"
    p.write_bytes(b"\xef\xbb\xbfepochs: 3\nlr: 0.01\n")
    assert load_config(p) == {"epochs": 3, "lr": 0.01}


def test_config_values_that_are_not_finite_or_absurd_are_refused_with_the_limit_named(tmp_path):
    from adc_dist.config import LIMITS, from_mapping

    for values, needle in [({"lr": float("inf")}, "lr must be a finite number"),
                           ({"gamma": float("nan")}, "gamma must be a finite number"),
                           ({"negatives": 100_000}, f"above the limit of {LIMITS['negatives']:,}"),
                           ({"num_hidden_layers": 10**9}, "num_hidden_layers=1,000,000,000 is above the limit"),
                           ({"epochs": 10**12}, "epochs"),
                           ({"topk": [10, 10**9], "early_stop_metric": "ndcg@10"}, "topk values must be <="),
                           ({"static_weights": [1.0, float("inf")], "balancer": "static"}, "static_weights"),
                           ({"early_stop_metric": "ndcg@" + "9" * 5000}, "early_stop_metric"),
                           ({"topk": [float("inf")]}, "config key 'topk' expects a list of int"),
                           ({"task": {"a": 1}}, "config key 'task' expects str"),
                           ({"topk": list(range(1, 500))}, "the limit is 64")]:
        with pytest.raises(AdcError, match=needle) as e:
            from_mapping(values)
        assert len(str(e.value)) < 600  # a multi-problem config may list several lines (issue-12 joins them)


def run_module(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=REPO)


def test_the_cluster_command_prints_one_line_and_exits_2_for_a_bomb_and_a_pipe(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB)
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    for path in (bomb, fifo):
        r = run_module("adc_dist.cluster", "check", str(path))
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 300, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml", "pipe.yaml"]  # nothing left behind


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_hostile_file_name_still_gives_one_line(tmp_path, loader):
    path = tmp_path / ("ünï\ncødé " + "x" * 200 + ".yaml")  # a newline and a long unicode name
    path.write_text(BOMB)
    with pytest.raises(AdcError) as e:
        LOADERS[loader](path)
    assert_one_line(str(e.value))
