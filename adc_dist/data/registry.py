"""The task registry: a task is a dataset plus a list of K >= 2 of its domains.

Registered tasks read the real datasets of ``../shared/data`` (see each folder's
PROVENANCE.md). ``file:<path>`` names a task on the user's own data under the data
root: a CSV / TSV / Parquet file with user, item, domain[, rating] columns (every domain
in it), or a folder of RecBole ``.inter`` files (one domain per file, named by the file
stem). ``synthetic:<users>x<domains>[:<seed>]`` names a generated task of any size
(``adc_dist.data.synthetic``).
"""

from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Mapping

import pandas as pd

from adc_dist.data import synthetic
from adc_dist.data.readers import amazon_mat, lscd_mat, neucdcf, recbole, table, triples
from adc_dist.data.sources import DATASETS, Dataset, inside_root
from adc_dist.errors import AdcError

FILE_PREFIX = "file:"
AMAZON4 = ("book", "music", "dvd", "video")
_TITLE = {"book": "Book", "music": "Music", "dvd": "DVD", "video": "Video"}
SIX: tuple[str, ...] = tuple(f"amazon-{a}-{b}" for a, b in itertools.combinations(AMAZON4, 2))


@dataclass(frozen=True)
class TaskSpec:
    """What a task reads and which of its domains it keeps.

    ``source`` is a registered :class:`Dataset` or the absolute folder of a user's files;
    ``files`` are paths inside it; ``read({file: local Path})`` returns the canonical table
    of the dataset; ``domains`` is None for user data (every domain in the file).
    """

    name: str
    source: Dataset | Path
    files: tuple[str, ...]
    read: Callable[[Mapping[str, Path]], pd.DataFrame]
    domains: tuple[str, ...] | None
    about: str
    version: str | None = None  # a generated task's generator version (part of the cache key)


def _triples(name: str, folder: str, files_of: dict[str, list[str]], about: str) -> TaskSpec:
    """A task on headerless user/item/rating files; ``files_of[domain]`` lists its files."""
    domain_of = {f: d for d, fs in files_of.items() for f in fs}
    return TaskSpec(name, DATASETS[folder], tuple(domain_of), partial(triples.read, domain_of=domain_of),
                    tuple(files_of), about)


def _registered() -> dict[str, TaskSpec]:
    specs = []
    for a, b in itertools.combinations(AMAZON4, 2):
        specs.append(TaskSpec(f"amazon-{a}-{b}", DATASETS["amazon4_cdtf"], ("demo_amazon.mat",), amazon_mat.read,
                              (a, b), f"ADC paper task: Amazon (SNAP 2006) {_TITLE[a]}-{_TITLE[b]}, 1-5 ratings"))
    specs.append(TaskSpec("amazon-all4", DATASETS["amazon4_cdtf"], ("demo_amazon.mat",), amazon_mat.read, AMAZON4,
                          "Amazon (SNAP 2006) Book, Music, DVD, Video at once (K = 4)"))
    specs.append(TaskSpec("lscd-all4", DATASETS["amazon4_lscd"], ("amazon_data.mat",), lscd_mat.read,
                          lscd_mat.DOMAINS, "LSCD's four unlabelled Amazon media domains d1-d4 (K = 4), 1-5 ratings"))
    specs.append(_triples("douban-book-music", "douban_gadtcdr",
                          {"book": ["douban_book/ratings.dat"], "music": ["douban_music/ratings.dat"]},
                          "Douban Book-Music (GA-DTCDR), 1-5 ratings"))
    specs.append(TaskSpec("amazon-music-movie", DATASETS["neucdcf_amazon_music_movie"],
                          ("music_movie.trainfull.rating", "music.test.rating"), neucdcf.read, neucdcf.DOMAINS,
                          "Amazon Music-Movies (NeuCDCF), 1-5 ratings"))
    for a, b in [("sport", "cloth"), ("phone", "electronic"), ("sport", "phone"), ("electronic", "cloth")]:
        specs.append(_triples(f"disencdr-{a}-{b}", "disencdr_amazon",
                              {a: [f"{a}_{b}/train.txt", f"{a}_{b}/test_original.txt"],
                               b: [f"{b}_{a}/train.txt", f"{b}_{a}/test_original.txt"]},
                              f"Amazon 2014 {a.title()}-{b.title()} (DisenCDR), implicit, all users shared"))
    for a, b, what in [("game", "video", "Toys&Games-Video Games"), ("cloth", "sport", "Clothing-Sports")]:
        specs.append(_triples(f"cdrib-{a}-{b}", "cdrib_amazon",
                              {a: [f"{a}_{b}/new_reindex.txt"], b: [f"{b}_{a}/new_reindex.txt"]},
                              f"Amazon 2014 {what} (CDRIB), implicit, partially shared users"))
    dense = {"Amazon-Books-Dense.inter": "book", "Amazon-Movies-Dense.inter": "movie"}
    specs.append(TaskSpec("amazon-books-movies-dense", DATASETS["amazon_books_movies_dense"], tuple(dense),
                          partial(recbole.read, domain_of=dense), ("book", "movie"),
                          "Amazon 2018 Books-Movies&TV dense subset, 1-5 ratings (duplicates averaged)"))
    return {s.name: s for s in specs}


TASKS: dict[str, TaskSpec] = _registered()


def _unknown(name: str) -> AdcError:
    close = difflib.get_close_matches(name, [*TASKS, "six", "all"], n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return AdcError(f"unknown task {name!r}{hint} (`python -m adc_dist.data list` shows the tasks; "
                    f"{FILE_PREFIX}<path> reads your own data, {synthetic.PREFIX}<users>x<domains> generates one)")


def resolve_tasks(spec: str) -> list[str]:
    """Task names from ``"six"`` (the six paper tasks), ``"all"`` (every registered task) or a
    comma-separated list (``file:`` names pass through); unknown names raise AdcError."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part == "six":
            names += SIX
        elif part == "all":
            names += TASKS
        elif part in TASKS or part.startswith(FILE_PREFIX):
            names.append(part)
        elif part.startswith(synthetic.PREFIX):
            synthetic.parse(part)  # a malformed spec fails here, before any work
            names.append(part)
        elif part:
            raise _unknown(part)
    if not names:
        raise AdcError(f"no task in {spec!r}; name tasks, 'six' or 'all'")
    return list(dict.fromkeys(names))


def get_task(name: str, root: Path) -> TaskSpec:
    """The spec of a registered task or of a ``file:<path>`` task under the data root ``root``."""
    if name in TASKS:
        return TASKS[name]
    if name.startswith(synthetic.PREFIX):
        users, k, seed = synthetic.parse(name)
        return TaskSpec(name, Path(name), (), partial(synthetic.read, users=users, domains=k, seed=seed),
                        tuple(f"s{j}" for j in range(k)), f"generated: {users:,} users, {k} domains, seed {seed}",
                        version=synthetic.VERSION)
    if not name.startswith(FILE_PREFIX):
        raise _unknown(name)
    path = inside_root(name[len(FILE_PREFIX):], root)
    if path.is_dir():
        inters = sorted(path.glob("*.inter"))
        if len(inters) < 2:
            raise AdcError(f"{path}: a folder task needs at least two RecBole .inter files (one per domain), "
                           f"found {len(inters)}")
        domain_of = {p.name: p.stem.lower() for p in inters}
        return TaskSpec(name, path, tuple(domain_of), partial(recbole.read, domain_of=domain_of), None,
                        f"RecBole .inter files in {path}")
    if path.suffix.lower() == ".inter":
        raise AdcError(f"{path}: one .inter file holds one domain; put one .inter file per domain in a folder "
                       f"and name the task {FILE_PREFIX}<folder>")
    if path.suffix.lower() not in table.SUFFIXES:
        raise AdcError(f"{path}: unsupported file type {path.suffix!r}; use {', '.join(table.SUFFIXES)} "
                       f"or a folder of .inter files")
    return TaskSpec(name, path.parent, (path.name,), table.read, None, f"interaction table {path}")
