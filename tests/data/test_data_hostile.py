"""Hostile and unusual data inputs, all made here at run time: named pipes, devices and looping
links instead of files (refused at once, never a hang), a byte-order mark (dropped), string ids
(mapped to dense ids, the mapping saved beside the split), users with no possible negative and
more negatives than a domain has (refused with one line). Nothing is left in the cache."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adc_dist.data import load_task, prepare
from adc_dist.data.cache import read_ids
from adc_dist.data.sampling import check_negatives
from adc_dist.errors import AdcError

from data_test_helpers import leftovers

REPO = Path(__file__).resolve().parents[2]
ROWS = [("0", "0", "book", "5"), ("0", "1", "music", "4"), ("1", "1", "book", "3"), ("1", "0", "music", "2"),
        ("2", "2", "book", "4"), ("2", "2", "music", "1")]


def write_csv(path: Path, rows, header=("user", "item", "domain", "rating"), sep=",", bom=False) -> Path:
    text = "\n".join(sep.join(r) for r in [header, *rows]) + "\n"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def one_line_error(fn, *needles: str) -> str:
    with pytest.raises(AdcError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and len(f"error: {msg}") <= 300, msg
    for n in needles:
        assert n in msg, msg
    return msg


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adc_dist.data", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})


# ----------------------------------------------------------------------------- not regular files
@pytest.mark.timeout(60)
def test_a_named_pipe_given_as_a_csv_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "shop.csv")  # nobody writes: reading it would block forever
    cache = tmp_path / "cache"
    one_line_error(lambda: load_task("file:shop.csv", data_root=tmp_path, cache_dir=cache), "named pipe")
    r = cli("prepare", "file:shop.csv", "--data-root", str(tmp_path), "--cache-dir", str(cache))
    assert r.returncode == 2 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1, r.stderr
    assert "named pipe" in r.stderr and leftovers(cache) == []


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["fifo", "device", "loop", "folder"])
def test_a_registered_file_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    target = tmp_path / "root" / "amazon4_cdtf" / "demo_amazon.mat"
    target.parent.mkdir(parents=True)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")  # never ends: a checksum over it would run forever
    elif kind == "loop":
        target.symlink_to(target)
    else:
        target.mkdir()
    words = {"fifo": "named pipe", "device": "character device", "loop": "loops", "folder": "folder"}[kind]
    cache = tmp_path / "cache"
    one_line_error(lambda: load_task("amazon-book-music", data_root=tmp_path / "root", cache_dir=cache), words)
    assert leftovers(cache) == []


def test_a_data_root_that_links_to_itself_gives_one_line(tmp_path):
    root = tmp_path / "root"
    root.symlink_to(root)
    one_line_error(lambda: load_task("amazon-book-music", data_root=root, cache_dir=tmp_path / "c"),
                   "the data root", "loops")
    r = cli("prepare", "amazon-book-music", "--data-root", str(root), "--cache-dir", str(tmp_path / "c"))
    assert r.returncode == 2 and len(r.stderr.splitlines()) == 1 and "loops" in r.stderr, r.stderr
    # a loop further down, on the way to a user's file
    real = tmp_path / "real"
    real.mkdir()
    (real / "sub").symlink_to(real / "sub")
    one_line_error(lambda: load_task("file:sub/x.csv", data_root=real, cache_dir=tmp_path / "c"), "loops")
    assert leftovers(tmp_path / "c") == []


def test_a_data_root_that_is_a_file_gives_one_line(tmp_path):
    (tmp_path / "root").write_text("not a folder")
    one_line_error(lambda: load_task("amazon-book-music", data_root=tmp_path / "root", cache_dir=tmp_path / "c"),
                   "is not a folder")


# ----------------------------------------------------------------------------- byte-order mark
@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_a_byte_order_mark_is_dropped(tmp_path, suffix, sep):
    write_csv(tmp_path / f"plain{suffix}", ROWS, sep=sep)
    write_csv(tmp_path / f"bom{suffix}", ROWS, sep=sep, bom=True)
    a = load_task(f"file:plain{suffix}", data_root=tmp_path, cache_dir=tmp_path / "cache")
    b = load_task(f"file:bom{suffix}", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert a.domains == b.domains == ("book", "music") and a.n_users == b.n_users == 3
    for s in ("train", "valid", "test"):
        for x, y in zip(a.split(s), b.split(s)):
            assert np.array_equal(x.users, y.users) and np.array_equal(x.items, y.items)


def test_a_byte_order_mark_in_recbole_files_is_dropped(tmp_path):
    folder = tmp_path / "rb"
    folder.mkdir()
    for name in ("Books", "Movies"):
        (folder / f"{name}.inter").write_bytes(b"\xef\xbb\xbfuser_id:token\titem_id:token\nu1\ti1\nu2\ti2\n")
    t = load_task("file:rb", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert t.domains == ("books", "movies") and t.n_users == 2


# ----------------------------------------------------------------------------- string ids
def joined_back(p) -> set[tuple[str, str, str]]:
    """Every (user id, item id, domain) of the split, in the file's own ids, through the ids file."""
    ids = read_ids(p.path)
    users = ids[ids.kind == "user"].set_index("index")["id"]
    out = set()
    for k, d in enumerate(p.task.domains):
        items = ids[(ids.kind == "item") & (ids.domain == d)].set_index("index")["id"]
        for split in ("train", "valid", "test"):
            inter = p.task.split(split)[k]
            out |= {(users[u], items[i], d) for u, i in zip(inter.users, inter.items)}
    return out


def string_rows() -> list[tuple[str, str, str, str]]:
    rng = np.random.default_rng(0)
    users = ["alice", "bob", "ünïcødé", "ユーザー", "7", "u7", "12345678901234567890123"]
    rows = []
    for u in users:
        for d, prefix in (("book", "B000"), ("music", "M-")):
            for i in rng.choice(12, size=5, replace=False):
                rows.append((u, f"{prefix}{i}", d, str(int(rng.integers(1, 6)))))
    return rows


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet"])
def test_string_ids_are_mapped_and_the_mapping_saved_beside_the_split(tmp_path, fmt):
    rows = string_rows()
    if fmt == "parquet":
        pd.DataFrame(rows, columns=["user", "item", "domain", "rating"]).astype({"rating": float}).to_parquet(
            tmp_path / "shop.parquet")
    else:
        write_csv(tmp_path / f"shop.{fmt}", rows, sep="," if fmt == "csv" else "\t")
    p = prepare(f"file:shop.{fmt}", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert p.task.n_users == 7 and p.ids_path.is_file() and p.task.meta["ids_file"] == p.ids_path.name
    assert joined_back(p) == {(u, i, d) for u, i, d, _ in rows}  # "7" and "u7" stay two users
    # the cached split is reused and its ids still join
    again = prepare(f"file:shop.{fmt}", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert not again.built and joined_back(again) == joined_back(p)


def test_integer_ids_are_saved_too_and_survive_min_rating(tmp_path):
    rows = [(str(100 + u), str(50 + i), d, str(1 + (u + i) % 5)) for u in range(6) for i in range(6)
            for d in ("book", "music")]
    write_csv(tmp_path / "ints.csv", rows)
    p = prepare("file:ints.csv", data_root=tmp_path, cache_dir=tmp_path / "cache", min_rating=3)
    assert joined_back(p) == {(u, i, d) for u, i, d, r in rows if int(r) >= 3}


# ----------------------------------------------------------------------------- negatives
def test_a_user_with_every_item_of_a_domain_is_a_clear_error(tmp_path, monkeypatch):
    # music has 2 items and user 0 rated both: 2 items are too few to split, so both are train
    rows = [("0", "0", "book", "5"), ("0", "1", "book", "4"), ("0", "2", "book", "3"), ("1", "0", "book", "4"),
            ("0", "0", "music", "5"), ("0", "1", "music", "5"), ("1", "0", "music", "3")]
    write_csv(tmp_path / "full.csv", rows)
    task = load_task("file:full.csv", data_root=tmp_path, cache_dir=tmp_path / "cache")
    one_line_error(lambda: check_negatives(task, 1), "1 user(s)", "every one of the 2 items of domain 'music'")
    from adc_dist.config import TrainConfig
    from adc_dist.train.loop import prepare_task

    cfg = TrainConfig(task="file:full.csv", data_root=str(tmp_path), negatives=1)
    monkeypatch.setenv("ADC_CACHE_DIR", str(tmp_path / "cache"))
    one_line_error(lambda: prepare_task(cfg), "no negative item exists")


def test_more_negatives_than_a_domain_can_give_is_refused(book_music):
    check_negatives(book_music, 5)  # the paper's rho
    one_line_error(lambda: check_negatives(book_music, 5000), "negatives=5,000", "'music'", "5,000 item(s)",
                   "at most 4,999")
    from adc_dist.config import from_mapping

    with pytest.raises(AdcError, match="negatives=100,000 is above the limit of 1,000"):
        from_mapping({"negatives": 100_000})


# ----------------------------------------------------------------------------- neighbours
@pytest.mark.parametrize("content, needles", [
    (b"", ["no data rows"]),
    (b"\xef\xbb\xbf", ["no data rows"]),
    (b"user,item,domain\n", ["no data rows"]),
    (b"user,user,item,domain\n1,1,1,a\n", ["names column 'user' twice"]),
    (b"user,item,domain\n1,1.5,book\n2,1,music\n", ["item id is missing or not an integer"]),
    (b"user,item,domain\n1,-1,book\n2,1,music\n", ["item id is negative"]),
    (b"user,item,domain,rating\n1,1,book,inf\n", ["rating is missing, NaN or not a number"]),
    (b"user,item,domain\n1,1,book\n\xff\xfe,1,music\n", ["malformed rows"]),
    (b"\x00\x01\x02" * 100, ["binary content"]),
    (b"user,item,domain\n" + b"x" * 5000 + b",1,book\n", ["at least two domains"]),
    (b"user,item,domain\n" + b"".join(b"1,1,d%d\n" % i for i in range(100)), ["100 domains; the limit is 64"]),
    (b"user,item,domain\n1,1,b\xc3\xbccher\n1,1,m\xc3\xbasica\n2,2,b\xc3\xbccher\n" + b"PAR1" * 3,
     ["domain token is missing"]),
])
def test_neighbours_of_bad_tables_give_one_line(tmp_path, content, needles):
    (tmp_path / "t.csv").write_bytes(content)
    one_line_error(lambda: load_task("file:t.csv", data_root=tmp_path, cache_dir=tmp_path / "cache"), *needles)
    assert leftovers(tmp_path / "cache") == []
