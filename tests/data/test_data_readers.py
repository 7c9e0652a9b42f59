"""Every reader on the real data: the counts of each dataset's PROVENANCE.md, canonical dtypes
and dense ids; the generic CSV / TSV / Parquet and RecBole .inter readers on small files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from adc_dist.data.canonical import domain_codes
from adc_dist.data.readers import recbole, table
from adc_dist.data.registry import TASKS


def read_task_table(shared: Path, name: str) -> pd.DataFrame:
    """The reader's canonical table of a registered task's dataset (no split, no cache)."""
    spec = TASKS[name]
    return spec.read({rel: shared / spec.source.folder / rel for rel in spec.files})


def domain_counts(t: pd.DataFrame) -> dict[str, tuple[int, int, int]]:
    """{domain: (users, items, interactions)}."""
    k = domain_codes(t)
    return {d: (len(np.unique(t.user.to_numpy()[k == j])), len(np.unique(t.item.to_numpy()[k == j])),
                int((k == j).sum())) for j, d in enumerate(t.domain.cat.categories)}


def overlap(t: pd.DataFrame, a: str, b: str) -> int:
    users = lambda d: t.user[t.domain == d].unique()  # noqa: E731
    return len(np.intersect1d(users(a), users(b)))


def assert_canonical(t: pd.DataFrame) -> None:
    assert list(t.columns) == ["user", "item", "domain", "rating"]
    assert t.user.dtype == np.int64 and t.item.dtype == np.int64 and t.rating.dtype == np.float32
    assert isinstance(t.domain.dtype, pd.CategoricalDtype)
    assert all(d == d.lower() for d in t.domain.cat.categories)
    # users dense over the whole table, items dense per domain, one row per (user, item, domain)
    assert np.array_equal(np.unique(t.user), np.arange(t.user.max() + 1))
    for _, g in t.groupby("domain", observed=True):
        assert np.array_equal(np.unique(g.item), np.arange(g.item.max() + 1))
    assert not t.duplicated(["user", "item", "domain"]).any()
    assert np.isfinite(t.rating).all()


def test_amazon4_cdtf_matches_provenance(shared):
    t = read_task_table(shared, "amazon-all4")
    assert_canonical(t)
    assert domain_counts(t) == {"book": (2170, 6000, 145043), "music": (2062, 5000, 77280),
                                "dvd": (2499, 3000, 92915), "video": (2498, 3000, 87776)}
    assert t.user.max() + 1 == 2505
    ratings = t.rating[t.domain == "book"].value_counts().sort_index()
    assert ratings.tolist() == [5544, 6714, 15965, 35332, 81488]
    assert [overlap(t, "book", "music"), overlap(t, "dvd", "video")] == [1737, 2498]


def test_amazon4_lscd_has_four_unlabelled_domains(shared):
    t = read_task_table(shared, "lscd-all4")
    assert_canonical(t)
    assert domain_counts(t) == {"d1": (12671, 2541, 85865), "d2": (12671, 778, 28680),
                                "d3": (12671, 7346, 85400), "d4": (12671, 8270, 188507)}


def test_douban_book_music(shared):
    t = read_task_table(shared, "douban-book-music")
    assert_canonical(t)
    assert domain_counts(t) == {"book": (2110, 6777, 96041), "music": (1672, 5567, 69709)}
    assert overlap(t, "book", "music") == 1566


def test_neucdcf_music_movie_global_items_become_dense_per_domain(shared):
    t = read_task_table(shared, "amazon-music-movie")
    assert_canonical(t)
    assert domain_counts(t) == {"music": (2091, 4538, 91766), "movie": (2098, 5241, 131617)}
    assert overlap(t, "music", "movie") == 2071


@pytest.mark.parametrize("name, a, b", [
    ("disencdr-sport-cloth", (9928, 32310, 102540), (9928, 41303, 97757)),
    ("disencdr-phone-electronic", (3325, 18462, 53732), (3325, 39463, 118879)),
    ("disencdr-sport-phone", (4998, 22101, 55556), (4998, 14618, 47444)),
    ("disencdr-electronic-cloth", (15761, 53309, 226626), (15761, 51865, 136844)),
], ids=["sport-cloth", "phone-electronic", "sport-phone", "electronic-cloth"])
def test_disencdr_pairs_train_plus_test_original(shared, name, a, b):
    t = read_task_table(shared, name)
    assert_canonical(t)
    assert list(domain_counts(t).values()) == [a, b]
    assert (t.rating == 1.0).all()  # implicit data


@pytest.mark.parametrize("name, a, b, common", [
    ("cdrib-game-video", (25025, 12319, 157721), (19457, 8751, 158984), 2179),
    ("cdrib-cloth-sport", (41829, 17943, 194121), (27328, 12655, 170426), 9828),
], ids=["game-video", "cloth-sport"])
def test_cdrib_pairs_keep_single_domain_users(shared, name, a, b, common):
    t = read_task_table(shared, name)
    assert_canonical(t)
    assert list(domain_counts(t).values()) == [a, b]
    assert overlap(t, *TASKS[name].domains) == common


def test_books_movies_dense_duplicates_are_averaged(shared):
    t = read_task_table(shared, "amazon-books-movies-dense")
    assert_canonical(t)
    assert domain_counts(t) == {"book": (1426, 723, 31504), "movie": (1381, 1338, 62084)}
    assert overlap(t, "book", "movie") == 1329
    folder = shared / "amazon_books_movies_dense"
    raw = pd.read_csv(folder / "Amazon-Books-Dense.inter", sep="\t", dtype=str)
    raw["rating"] = raw.rating.astype(float)
    mean = raw.groupby(["user_id", "item_id"]).rating.mean()
    # the dense ids keep the sorted order of the raw tokens (users over both files): compare pair by pair
    movies = pd.read_csv(folder / "Amazon-Movies-Dense.inter", sep="\t", dtype=str)
    users, items = np.unique(np.r_[raw.user_id, movies.user_id]), np.unique(raw.item_id)
    book = t[t.domain == "book"]
    got = pd.Series(book.rating.to_numpy(), index=pd.MultiIndex.from_arrays(
        [users[book.user.to_numpy()], items[book.item.to_numpy()]]))
    assert np.allclose(got.sort_index().to_numpy(), mean.sort_index().to_numpy(), atol=1e-6)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_generic_table_reader(tmp_path, suffix):
    rows = pd.DataFrame({"user": [10, 10, 7, 7, 7, 3], "item": [5, 9, 5, 5, 2, 100],
                         "domain": ["Book", "book", "book", "book", "MUSIC", "music"],
                         "rating": [5.0, 4.0, 2.0, 4.0, 1.0, 3.0], "timestamp": range(6)})
    path = tmp_path / f"mine{suffix}"
    if suffix == ".parquet":
        rows.to_parquet(path)
    else:
        rows.to_csv(path, sep="," if suffix == ".csv" else "\t", index=False)
    t = table.read({path.name: path})
    assert_canonical(t)
    assert list(t.domain.cat.categories) == ["book", "music"]
    # users 3, 7, 10 -> 0, 1, 2; book items 5, 9 -> 0, 1; music items 2, 100 -> 0, 1
    assert t[["user", "item", "domain"]].astype({"domain": str}).values.tolist() == [
        [1, 0, "book"], [2, 0, "book"], [2, 1, "book"], [0, 1, "music"], [1, 0, "music"]]
    assert t.rating.tolist() == [3.0, 5.0, 4.0, 3.0, 1.0]  # (7, 5) twice: mean of 2 and 4


def test_generic_table_without_rating_is_implicit(tmp_path):
    path = write_lines(tmp_path / "x.csv", ["user,item,domain", "0,0,a", "1,0,b"])
    assert (table.read({"x.csv": path}).rating == 1.0).all()


def test_recbole_inter_files_one_domain_each(tmp_path):
    a = write_lines(tmp_path / "Books.inter", ["user_id:token\titem_id:token\trating:float\ttimestamp:float",
                                               "A2X\t0001\t5.0\t1", "B7Q\t0002\t3\t2"])
    b = write_lines(tmp_path / "Movies.inter", ["user_id:token\titem_id:token", "A2X\tm1", "Z9\tm2"])
    t = recbole.read({"Books.inter": a, "Movies.inter": b}, domain_of={"Books.inter": "books",
                                                                        "Movies.inter": "movies"})
    assert_canonical(t)
    # tokens sort: A2X, B7Q, Z9 -> 0, 1, 2; the same token is the same user across files
    assert t[["user", "item"]].values.tolist() == [[0, 0], [1, 1], [0, 0], [2, 1]]
    assert t.rating.tolist() == [5.0, 3.0, 1.0, 1.0]
