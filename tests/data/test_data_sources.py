"""The data root and the download path, against a loopback HTTP server serving
../shared/data (never the internet): download, checksum mismatch, offline message."""

from __future__ import annotations

import functools
import http.server
import shutil
import socket
import threading
from pathlib import Path

import pytest

from adc_dist.data import load_task, prepare, stats
from adc_dist.data.sources import DATASETS, MIRROR_ENV, Dataset, data_root
from adc_dist.errors import AdcError

from data_test_helpers import leftovers


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def serve():
    """serve(folder) -> base URL of a loopback HTTP server for ``folder``."""
    servers = []

    def start(folder: Path) -> str:
        handler = functools.partial(_Quiet, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"  # nothing listens once closed


def test_embedded_checksums_match_the_shared_sha256sums(shared):
    for ds in DATASETS.values():
        sums = dict(line.split()[::-1] for line in (shared / ds.folder / "SHA256SUMS").read_text().splitlines())
        for rel, sha in ds.sha256.items():
            assert sums[f"./{rel}"] == sha, f"{ds.folder}/{rel}"


def test_default_urls_are_pinned_raw_github_commits(monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    assert DATASETS["amazon4_cdtf"].url("demo_amazon.mat") == (
        "https://raw.githubusercontent.com/rainmilk/cdtf-witf/f20dbf8f22f84e2a730a4e879802451c979225ec/"
        "data/demo_amazon.mat")
    assert DATASETS["disencdr_amazon"].url("sport_cloth/train.txt").endswith(
        "cjx96/DisenCDR/404726ca435dff50cc2219f034557cc7ce1ed1c3/dataset/sport_cloth/train.txt")


def test_default_data_root_is_the_download_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("ADC_DATA_ROOT", raising=False)
    monkeypatch.setenv("ADC_CACHE_DIR", str(tmp_path))
    assert data_root() == tmp_path / "data"
    monkeypatch.setenv("ADC_DATA_ROOT", "/somewhere")
    assert data_root() == Path("/somewhere") and data_root("/given") == Path("/given")


def test_missing_file_is_downloaded_verified_and_cached(shared, serve, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, serve(shared))
    monkeypatch.delenv("ADC_DATA_ROOT", raising=False)  # data root = the download cache
    t = load_task("amazon-book-music", cache_dir=tmp_path)
    assert stats.overlaps(t) == {("book", "music"): 1737}
    got = tmp_path / "data" / "amazon4_cdtf" / "demo_amazon.mat"
    assert got.read_bytes() == (shared / "amazon4_cdtf" / "demo_amazon.mat").read_bytes()
    assert not list(got.parent.glob(".*part"))
    # an empty data root given explicitly: the file is found in the download cache
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())
    assert not prepare("amazon-book-music", data_root=tmp_path / "empty", cache_dir=tmp_path).built


def test_download_with_wrong_checksum_is_discarded(shared, serve, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror" / "douban_gadtcdr"
    shutil.copytree(shared / "douban_gadtcdr", mirror)
    bad = mirror / "douban_music" / "ratings.dat"
    bad.chmod(0o644)
    bad.write_bytes(bad.read_bytes().replace(b"\t5", b"\t4", 1))
    monkeypatch.setenv(MIRROR_ENV, serve(tmp_path / "mirror"))
    cache = tmp_path / "cache"
    with pytest.raises(AdcError, match=r"douban_music/ratings.dat: checksum mismatch .*was not written"):
        load_task("douban-book-music", data_root=tmp_path / "empty", cache_dir=cache)
    # the good file (book) was kept, the bad one left nothing behind, no split was written
    assert [p.relative_to(cache).as_posix() for p in leftovers(cache)] == ["data/douban_gadtcdr/douban_book/ratings.dat"]


def test_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, closed_port_url())
    root = tmp_path / "root"
    with pytest.raises(AdcError) as e:
        load_task("amazon-dvd-video", data_root=root, cache_dir=tmp_path / "cache")
    msg = str(e.value)
    assert "amazon4_cdtf/demo_amazon.mat is missing" in msg
    assert f"at {root / 'amazon4_cdtf' / 'demo_amazon.mat'}" in msg and "b634557e" in msg
    assert leftovers(tmp_path / "cache") == []


def test_http_error_is_reported(serve, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, serve(tmp_path))  # serves an empty folder: 404
    with pytest.raises(AdcError, match="404"):
        load_task("amazon-dvd-video", data_root=tmp_path / "root", cache_dir=tmp_path / "cache")


def test_local_file_with_wrong_checksum_is_refused(shared, tmp_path):
    root = tmp_path / "root"
    (root / "amazon4_cdtf").mkdir(parents=True)
    data = (shared / "amazon4_cdtf" / "demo_amazon.mat").read_bytes()
    (root / "amazon4_cdtf" / "demo_amazon.mat").write_bytes(data[:-10])  # truncated
    with pytest.raises(AdcError, match=r"demo_amazon.mat: checksum mismatch"):
        load_task("amazon-book-music", data_root=root, cache_dir=tmp_path / "cache")
    assert leftovers(tmp_path / "cache") == []


def test_mirror_url_layout(monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9/data")
    ds = Dataset("f", "o/r", "c" * 40, "p/", {})
    assert ds.url("a/b.txt") == "http://127.0.0.1:9/data/f/a/b.txt"
