"""The seeded split and its Parquet cache on the real data: the paper's numbers, no leakage,
the protocol's sizes, determinism, cache reuse, metadata, min_rating, atomic writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from adc_dist.data import SIX, load_task, prepare, stats
from adc_dist.data.task_data import SPLITS
from adc_dist.errors import AdcError

from data_test_helpers import leftovers


def test_book_music_has_the_provenance_numbers(book_music):
    rows = {r["domain"]: (r["users"], r["items"], r["interactions"]) for r in stats.domain_stats(book_music)}
    assert rows == {"book": (2170, 6000, 145043), "music": (2062, 5000, 77280)}
    assert stats.overlaps(book_music) == {("book", "music"): 1737}
    assert book_music.n_users == 2170 + 2062 - 1737  # every user of either domain, densely
    assert book_music.domains == ("book", "music") and book_music.n_items == (6000, 5000)


def test_all_six_paper_tasks_load_with_their_overlaps(shared, tmp_path):
    want = {"amazon-book-music": 1737, "amazon-book-dvd": 2165, "amazon-book-video": 2164,
            "amazon-music-dvd": 2058, "amazon-music-video": 2058, "amazon-dvd-video": 2498}
    assert list(SIX) == list(want)
    got = {name: list(stats.overlaps(load_task(name, data_root=shared, cache_dir=tmp_path)).values())[0]
           for name in SIX}
    assert got == want


def test_all4_has_four_domains(shared, tmp_path):
    t = load_task("amazon-all4", data_root=shared, cache_dir=tmp_path)
    assert t.domains == ("book", "music", "dvd", "video") and t.n_users == 2505
    assert len(stats.overlaps(t)) == 6


def pairs(t, split, k) -> np.ndarray:
    inter = t.split(split)[k]
    return inter.users * t.n_items[k] + inter.items


def test_splits_are_disjoint_and_follow_the_protocol(book_music):
    t = book_music
    for k in range(t.num_domains):
        keys = {s: pairs(t, s, k) for s in SPLITS}
        everything = np.concatenate(list(keys.values()))
        assert len(np.unique(everything)) == len(everything)  # no (user, item) in two splits
        n = {s: np.bincount(t.split(s)[k].users, minlength=t.n_users) for s in SPLITS}
        total = n["train"] + n["valid"] + n["test"]
        few = (total > 0) & (total < 3)
        assert (n["valid"][few] == 0).all() and (n["test"][few] == 0).all()  # train-only
        many = total >= 3
        m = total[many]
        assert np.array_equal(n["test"][many], np.maximum(1, np.floor(0.2 * m + 0.5)))
        assert np.array_equal(n["valid"][many], np.maximum(1, np.floor(0.1 * m + 0.5)))
        assert (n["train"][total > 0] >= 1).all()
        for s in SPLITS:  # arrays of the contract: int64, sorted by (user, item)
            inter = t.split(s)[k]
            assert inter.users.dtype == np.int64 and inter.items.dtype == np.int64
            assert (np.diff(keys[s]) > 0).all()


def test_same_seed_same_split_and_cache_reused(shared, tmp_path, book_music, book_music_cache):
    fresh = prepare("amazon-book-music", data_root=shared, cache_dir=tmp_path)
    assert fresh.built
    for s in SPLITS:
        for k in range(2):
            assert np.array_equal(pairs(fresh.task, s, k), pairs(book_music, s, k))
    mtime = fresh.path.stat().st_mtime_ns
    again = prepare("amazon-book-music", data_root=shared, cache_dir=tmp_path)
    assert not again.built and again.path == fresh.path and fresh.path.stat().st_mtime_ns == mtime


def test_another_seed_gives_another_split_of_the_same_data(shared, book_music_cache, book_music):
    other = prepare("amazon-book-music", data_root=shared, cache_dir=book_music_cache, seed=1)
    assert other.built and other.path.name.startswith("seed1-")
    for k in range(2):
        assert not np.array_equal(pairs(other.task, "test", k), pairs(book_music, "test", k))
        union = lambda t: np.sort(np.concatenate([pairs(t, s, k) for s in SPLITS]))  # noqa: E731
        assert np.array_equal(union(other.task), union(book_music))


def test_a_domain_is_split_identically_in_every_task(shared, tmp_path, book_music):
    book_dvd = load_task("amazon-book-dvd", data_root=shared, cache_dir=tmp_path)

    def book_test(t):
        # user ids differ between tasks; the rank among Book's users does not
        users = stats.domain_users(t, 0)
        inter = t.test[0]
        return np.searchsorted(users, inter.users) * t.n_items[0] + inter.items

    assert np.array_equal(np.sort(book_test(book_dvd)), np.sort(book_test(book_music)))


def test_cache_metadata_records_provenance(book_music, book_music_cache, shared):
    meta = book_music.meta
    sums = dict(line.split()[::-1] for line in (shared / "amazon4_cdtf" / "SHA256SUMS").read_text().splitlines())
    assert meta["sources"] == {"demo_amazon.mat": sums["./demo_amazon.mat"]}
    assert meta["seed"] == 0 and meta["min_rating"] is None and meta["protocol"]["test"] == 0.2
    assert meta["counts"]["book"] == {"users": 2170, "items": 6000, "interactions": 145043,
                                      **{s: len(book_music.split(s)[0]) for s in SPLITS}}
    (path,) = (book_music_cache / "splits" / "amazon-book-music").glob("seed0-*.parquet")
    stored = pq.read_table(path)
    assert json.loads(stored.schema.metadata[b"adc_dist"]) == dict(meta)
    assert stored.column_names == ["user", "item", "domain", "rating", "split"]


def test_min_rating_keeps_only_high_ratings(shared, tmp_path, book_music):
    p = prepare("amazon-book-music", data_root=shared, cache_dir=tmp_path, min_rating=4)
    assert p.path.name.startswith("seed0-min4-")
    ratings = pq.read_table(p.path, columns=["rating"]).column("rating").to_numpy()
    assert ratings.min() >= 4
    assert p.task.meta["counts"]["book"]["interactions"] == 35332 + 81488  # the 4- and 5-star ratings


def test_loading_a_cached_split_is_fast(shared, book_music_cache, book_music):
    t0 = time.perf_counter()
    load_task("amazon-book-music", data_root=shared, cache_dir=book_music_cache)
    assert time.perf_counter() - t0 < 1.0


def test_damaged_cache_file_is_rebuilt(shared, tmp_path):
    p = prepare("amazon-dvd-video", data_root=shared, cache_dir=tmp_path)
    p.path.write_bytes(b"not parquet")
    again = prepare("amazon-dvd-video", data_root=shared, cache_dir=tmp_path)
    assert again.built and again.path == p.path
    assert np.array_equal(pairs(again.task, "test", 1), pairs(p.task, "test", 1))


def test_failed_write_leaves_no_partial_cache(shared, tmp_path, monkeypatch):
    import adc_dist.data.cache as cache

    def broken(table, where):
        open(where, "wb").write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(cache.pq, "write_table", broken)
    with pytest.raises(OSError):
        prepare("amazon-dvd-video", data_root=shared, cache_dir=tmp_path)
    assert leftovers(tmp_path / "splits") == []


def test_concurrent_preparers_write_one_valid_file(shared, tmp_path):
    import adc_dist.data.cache as cache

    code = ("import sys; from adc_dist.data import prepare; "
            "print(prepare('amazon-music-video', data_root=sys.argv[1], cache_dir=sys.argv[2]).path)")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(shared), str(tmp_path)], stdout=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(set(outs)) == 1
    split = type(tmp_path)(outs[0])
    assert sorted(leftovers(tmp_path / "splits")) == sorted([split, cache.ids_file(split)])  # no temporary files
    t = load_task("amazon-music-video", data_root=shared, cache_dir=tmp_path)
    assert t.meta["counts"]["music"]["interactions"] == 77280


def test_bad_seed_is_an_error(shared, tmp_path):
    with pytest.raises(AdcError, match="seed"):
        load_task("amazon-book-music", data_root=shared, cache_dir=tmp_path, seed=-1)
    assert os.listdir(tmp_path) == []


def test_mirrored_items_are_found_on_the_real_book_data(book_music):
    # Book of the SNAP 2006 crawl lists every edition of a book with the same reviews:
    # most items share their exact set of users with another item (docs/data.md).
    book, music = stats.mirror_stats(book_music, 0), stats.mirror_stats(book_music, 1)
    assert book["mirrored_items"] == 5087 and book["groups"] == 1386 and book["largest"] == 22
    assert 0.7 < book["test_with_train_mirror"] < 0.85
    assert music["mirrored_items"] == 1425 and 0.2 < music["test_with_train_mirror"] < 0.35


def test_mirror_groups_and_the_share_of_test_pairs_with_a_train_mirror():
    from adc_dist.data.task_data import Interactions, TaskData

    def inter(pairs):
        u, i = zip(*pairs)
        return (Interactions(np.array(u, dtype=np.int64), np.array(i, dtype=np.int64)),)

    # items 0 and 1 have the users {0, 1}; item 2 {0, 1, 2}; item 3 only user 2 (too few to count)
    train = inter([(0, 0), (1, 1), (0, 2), (1, 2), (2, 3)])
    valid = inter([(2, 2)])
    test = inter([(0, 1), (1, 0)])  # user 0's test item 1 mirrors its train item 0; user 1 the other way round
    t = TaskData("toy", ("a",), 3, (5,), train, valid, test, {})
    g = stats.mirror_groups(t, 0)
    assert g[0] == g[1] and len({g[0], g[2], g[3], g[4]}) == 4
    m = stats.mirror_stats(t, 0)
    assert m == {"mirrored_items": 2, "groups": 1, "largest": 2, "test_with_train_mirror": 1.0}
