"""Downloads against loopback HTTP servers (127.0.0.1 only): redirects are followed within the
host the download was sent to and refused to any other, and no more bytes are accepted than the
pinned file has (announced or sent). A refused download writes nothing."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest

from adc_dist.data import load_task
from adc_dist.data.sources import DATASETS, MIRROR_ENV, SIZES
from adc_dist.errors import AdcError

from data_test_helpers import leftovers

REL = "amazon4_cdtf/demo_amazon.mat"


class Server:
    """A loopback server whose GET answers come from ``route(path) -> (status, headers, body)``."""

    def __init__(self, route):
        self.paths: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.paths.append(self.path)
                status, headers, body = route(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    for part in body if isinstance(body, list) else [body]:
                        if part is None:
                            time.sleep(0.2)  # a trickle: a pause between small parts
                        else:
                            self.wfile.write(part)
                            self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: expected
                    pass

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers():
    made = []

    def start(route) -> Server:
        made.append(Server(route))
        return made[-1]

    yield start
    for s in made:
        s.close()


def file_bytes(shared: Path) -> bytes:
    return (shared / REL).read_bytes()


def load(tmp_path: Path):
    return load_task("amazon-book-music", data_root=tmp_path / "empty", cache_dir=tmp_path / "cache")


def test_the_embedded_sizes_are_the_shared_files_sizes(shared):
    for ds in DATASETS.values():
        for rel in ds.sha256:
            assert ds.size(rel) == (shared / ds.folder / rel).stat().st_size, f"{ds.folder}/{rel}"
    assert len(SIZES) == sum(len(ds.sha256) for ds in DATASETS.values())


def test_a_redirect_within_the_same_host_is_followed(shared, servers, tmp_path, monkeypatch):
    data = file_bytes(shared)

    def route(path):
        if path == f"/{REL}":
            return 302, {"Location": f"/moved/{REL}"}, b""
        return 200, {"Content-Length": str(len(data))}, data

    monkeypatch.setenv(MIRROR_ENV, servers(route).url)
    t = load(tmp_path)
    assert t.n_users == 2495 and (tmp_path / "cache" / "data" / REL).read_bytes() == data


def test_a_redirect_to_another_host_is_refused_and_nothing_is_written(shared, servers, tmp_path, monkeypatch):
    data = file_bytes(shared)
    elsewhere = servers(lambda path: (200, {}, data))  # would serve the right file: still refused
    first = servers(lambda path: (302, {"Location": f"{elsewhere.url}/{REL}"}, b""))
    monkeypatch.setenv(MIRROR_ENV, first.url)
    with pytest.raises(AdcError, match="redirects to .*another host") as e:
        load(tmp_path)
    assert "\n" not in str(e.value) and len(f"error: {e.value}") <= 300
    assert elsewhere.paths == [] and first.paths == [f"/{REL}"]
    assert leftovers(tmp_path / "cache") == []


def test_a_download_larger_than_the_pinned_file_is_cut_off(shared, servers, tmp_path, monkeypatch):
    data = file_bytes(shared)
    # no Content-Length: the size is found while reading, the rest is never written
    monkeypatch.setenv(MIRROR_ENV, servers(lambda path: (200, {"Connection": "close"}, data + b"\0" * 3_000_000)).url)
    with pytest.raises(AdcError, match=f"sent more than the {len(data):,} bytes of the pinned file") as e:
        load(tmp_path)
    assert "\n" not in str(e.value) and len(f"error: {e.value}") <= 300
    assert leftovers(tmp_path / "cache") == []


def test_an_announced_size_above_the_pinned_one_is_refused_before_reading(servers, tmp_path, monkeypatch):
    big = 10**12  # a terabyte announced; the server never sends it
    monkeypatch.setenv(MIRROR_ENV, servers(lambda path: (200, {"Content-Length": str(big)}, b"x" * 1000)).url)
    with pytest.raises(AdcError, match=f"announces {big:,} bytes"):
        load(tmp_path)
    assert leftovers(tmp_path / "cache") == []


def test_a_trickling_server_is_given_up_by_the_overall_deadline(servers, tmp_path, monkeypatch):
    import adc_dist.data.sources as sources

    # scaled down: 1 s plus the pinned size at a rate that would take ~1 s more
    monkeypatch.setattr(sources, "DOWNLOAD_TIMEOUT_S", 1)
    monkeypatch.setattr(sources, "MIN_DOWNLOAD_RATE", SIZES[REL])
    trickle = [b"x" * 100, None] * 40  # 100 bytes per 0.2 s: each read returns, no socket timeout
    monkeypatch.setenv(MIRROR_ENV, servers(lambda path: (200, {"Connection": "close"}, trickle)).url)
    t0 = time.monotonic()
    with pytest.raises(AdcError, match="slower than"):
        load(tmp_path)
    assert time.monotonic() - t0 < 6 and leftovers(tmp_path / "cache") == []
