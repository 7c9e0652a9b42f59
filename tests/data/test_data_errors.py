"""Bad input: one AdcError naming the file and the problem, and nothing left in the cache."""

from __future__ import annotations

import pytest

from adc_dist.data import load_task, resolve_tasks
from adc_dist.errors import AdcError

from data_test_helpers import leftovers

GOOD = ["user,item,domain,rating", "0,0,book,5", "0,1,music,4", "1,1,book,3", "1,0,music,2"]


@pytest.mark.parametrize("lines, problem", [
    (GOOD[:2] + ["0,1,music,4,extra"] + GOOD[3:], r"mine.csv: malformed rows .*line 3"),
    (GOOD + ["2,,book,5"], r"mine.csv, line 6: item id is missing or not an integer"),
    (GOOD + ["2.5,1,book,5"], r"mine.csv, line 6: user id is missing or not an integer"),
    (GOOD + ["-3,1,book,5"], r"mine.csv, line 6: user id is negative"),
    (GOOD + ["2,1,book,nan"], r"mine.csv, line 6: rating is missing, NaN or not a number"),
    (GOOD + ["2,1,book"], r"mine.csv, line 6: rating is missing"),
    (GOOD + ["2,1,,5"], r"mine.csv, line 6: domain token is missing"),
    (["user,item,rating", "0,0,5"], r"mine.csv: missing column\(s\) domain"),
    (["user,item,domain", "0,0,book", "1,0,music"], r"mine.csv.*no overlapping users between domain\(s\) book and music"),
    (["user,item,domain", "0,0,book", "1,0,book"], r"mine.csv: a cross-domain task needs at least two domains"),
    (["user,item,domain"], r"mine.csv: no data rows"),
])
def test_bad_user_table(tmp_path, lines, problem):
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    cache = tmp_path / "cache"
    with pytest.raises(AdcError, match=problem):
        load_task("file:mine.csv", data_root=tmp_path, cache_dir=cache)
    assert leftovers(cache) == []


def test_good_user_table_loads(tmp_path):
    (tmp_path / "mine.csv").write_text("\n".join(GOOD) + "\n")
    t = load_task("file:mine.csv", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert t.name == "file:mine.csv" and t.domains == ("book", "music") and t.n_users == 2


def test_empty_domain_after_min_rating(tmp_path):
    (tmp_path / "mine.csv").write_text("\n".join(GOOD) + "\n")
    with pytest.raises(AdcError, match=r"mine.csv: domain 'music' is empty: no interactions with rating >= 5"):
        load_task("file:mine.csv", data_root=tmp_path, cache_dir=tmp_path / "cache", min_rating=5)
    assert leftovers(tmp_path / "cache") == []


def test_empty_inter_file_is_an_empty_domain(tmp_path):
    folder = tmp_path / "recbole"
    folder.mkdir()
    (folder / "Books.inter").write_text("user_id:token\titem_id:token\nu1\ti1\n")
    (folder / "Movies.inter").write_text("user_id:token\titem_id:token\n")
    with pytest.raises(AdcError, match=r"Movies.inter: no data rows"):
        load_task("file:recbole", data_root=tmp_path, cache_dir=tmp_path / "cache")


def test_inter_folder_task(tmp_path):
    folder = tmp_path / "recbole"
    folder.mkdir()
    (folder / "Books.inter").write_text("user_id:token\titem_id:token\nu1\ti1\nu2\ti2\n")
    (folder / "Movies.inter").write_text("user_id:token\titem_id:token\trating:float\nu1\tm1\t4\n")
    t = load_task("file:recbole", data_root=tmp_path, cache_dir=tmp_path / "cache")
    assert t.domains == ("books", "movies") and t.n_users == 2 and t.n_items == (2, 1)


def test_missing_user_file(tmp_path):
    with pytest.raises(AdcError, match=r"nope.csv: no such file"):
        load_task("file:nope.csv", data_root=tmp_path, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("path", ["../outside.csv", "/etc/passwd", "sub/../../outside.csv"])
def test_data_path_outside_the_data_root(tmp_path, path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.csv").write_text("\n".join(GOOD) + "\n")
    with pytest.raises(AdcError, match="outside the data root"):
        load_task(f"file:{path}", data_root=root, cache_dir=tmp_path / "cache")


def test_symlink_out_of_the_data_root_is_outside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside.csv").write_text("\n".join(GOOD) + "\n")
    (root / "link.csv").symlink_to(tmp_path / "outside.csv")
    with pytest.raises(AdcError, match="outside the data root"):
        load_task("file:link.csv", data_root=root, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize("name, problem", [
    ("mine.inter", "one .inter file holds one domain"),
    ("mine.json", "unsupported file type '.json'"),
])
def test_unsupported_user_files(tmp_path, name, problem):
    (tmp_path / name).write_text("{}")
    with pytest.raises(AdcError, match=problem):
        load_task(f"file:{name}", data_root=tmp_path, cache_dir=tmp_path / "cache")


def test_unknown_task_suggests_close_names(tmp_path):
    with pytest.raises(AdcError, match=r"unknown task 'amazon-bok-music'; did you mean amazon-book-music"):
        load_task("amazon-bok-music", data_root=tmp_path, cache_dir=tmp_path / "cache")
    with pytest.raises(AdcError, match=r"did you mean six"):
        resolve_tasks("amazon-dvd-video,sx")
    assert leftovers(tmp_path / "cache") == []


def test_resolve_tasks():
    six = resolve_tasks("six")
    assert six == ["amazon-book-music", "amazon-book-dvd", "amazon-book-video", "amazon-music-dvd",
                   "amazon-music-video", "amazon-dvd-video"]
    assert resolve_tasks("amazon-dvd-video, six")[:2] == ["amazon-dvd-video", "amazon-book-music"]
    assert len(resolve_tasks("six,six")) == 6
    every = resolve_tasks("all")
    assert set(six) < set(every) and {"amazon-all4", "douban-book-music", "cdrib-game-video"} <= set(every)
    assert resolve_tasks("file:x.csv") == ["file:x.csv"]
    with pytest.raises(AdcError, match="no task"):
        resolve_tasks(" , ")
