"""python -m adc_dist.data: list, describe (the paper's Book-Music numbers), prepare, and bad
input as one line on stderr with exit status 2."""

from __future__ import annotations

import subprocess
import sys

from adc_dist.data.__main__ import run


def test_list_shows_every_task(capsys):
    run(["list"])
    out = capsys.readouterr().out
    for name in ("amazon-book-music", "amazon-dvd-video", "amazon-all4", "douban-book-music",
                 "amazon-music-movie", "disencdr-sport-cloth", "cdrib-game-video", "amazon-books-movies-dense"):
        assert name in out


def test_describe_book_music(capsys, shared, book_music_cache):
    run(["describe", "amazon-book-music", "--data-root", str(shared), "--cache-dir", str(book_music_cache)])
    out = capsys.readouterr().out
    book = next(line.split() for line in out.splitlines() if line.split()[:1] == ["book"])
    music = next(line.split() for line in out.splitlines() if line.split()[:1] == ["music"])
    assert book[1:4] == ["2,170", "6,000", "145,043"] and book[4] == "0.01114"
    assert music[1:4] == ["2,062", "5,000", "77,280"] and music[4] == "0.00750"
    assert "book-music: 1,737" in out
    assert "users 2,495" in out
    assert "book: 5,087 of 6,000 items in 1,386 groups (largest 22)" in out


def test_prepare_reports_built_then_cached(capsys, shared, tmp_path):
    argv = ["prepare", "amazon-dvd-video,amazon-music-dvd", "--data-root", str(shared), "--cache-dir", str(tmp_path),
            "--seed", "3"]
    run(argv)
    first = capsys.readouterr().out
    run(argv)
    second = capsys.readouterr().out
    assert first.count(": built in") == 2 and second.count(": cached in") == 2
    assert "seed3-" in first and "2 task(s) ready" in second


def test_bad_input_exits_2_with_one_line(tmp_path):
    (tmp_path / "bad.csv").write_text("user,item,domain\n0,-1,a\n")
    proc = subprocess.run([sys.executable, "-m", "adc_dist.data", "describe", "file:bad.csv", "--data-root",
                           str(tmp_path), "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "bad.csv, line 2: item id is negative" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "cache").exists()
