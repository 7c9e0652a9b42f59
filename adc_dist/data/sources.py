"""Where the raw data files come from: the data root, the cache, or a pinned public URL.

The data root is laid out like ``../shared/data``: ``<root>/<dataset folder>/<file>``.
A file is looked up in the data root, then in the download cache
(``<cache>/data/<folder>/<file>``); if it is in neither, it is downloaded from the
pinned commit of its public GitHub repository (or from ``$ADC_DATA_MIRROR``, a base URL
laid out like the data root), verified against the sha256 embedded below and moved into
the download cache atomically. Every file is checked against its sha256 on every use,
so a truncated or edited file never silently feeds a split.

Only regular files are read (a named pipe would block the checksum forever, a device never
ends), and a download may follow redirects only within the host it was sent to and may not
exceed the size of the pinned file (:data:`SIZES`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from adc_dist.errors import AdcError
from adc_dist.inputs.files import file_kind, one_line, open_regular

DATA_ROOT_ENV = "ADC_DATA_ROOT"
CACHE_DIR_ENV = "ADC_CACHE_DIR"
MIRROR_ENV = "ADC_DATA_MIRROR"
DOWNLOAD_TIMEOUT_S = 60  # per network operation
MIN_DOWNLOAD_RATE = 32 * 1024  # bytes/s: a slower server (a trickle that resets every timeout) is given up


@dataclass(frozen=True)
class Dataset:
    """One dataset folder: its public source and the sha256 of each file the readers use.

    ``prefix`` + a file's path inside the folder = its path in ``repo`` at ``commit``.
    """

    folder: str
    repo: str
    commit: str
    prefix: str
    sha256: Mapping[str, str]

    def size(self, rel: str) -> int:
        """Bytes of the pinned file ``rel``: a download may not exceed it."""
        return SIZES[f"{self.folder}/{rel}"]

    def url(self, rel: str) -> str:
        mirror = os.environ.get(MIRROR_ENV)
        if mirror:
            return f"{mirror.rstrip('/')}/{self.folder}/{rel}"
        return f"https://raw.githubusercontent.com/{self.repo}/{self.commit}/{self.prefix}{rel}"


# Checksums copied from each folder's SHA256SUMS in ../shared/data (only the files that the
# readers use), so that the package verifies downloads without ../shared being present.
DATASETS: dict[str, Dataset] = {d.folder: d for d in [
    Dataset("amazon4_cdtf", "rainmilk/cdtf-witf", "f20dbf8f22f84e2a730a4e879802451c979225ec", "data/", {
        "demo_amazon.mat": "b634557e4f9f892e9706a10bee1466d9ddbed67ef3a33001b4d2e78d8f2a0cc7",
    }),
    Dataset("amazon4_lscd", "sysulawliet/LSCD", "8776cf88964be3651dce85ed4d06a35e1070fe17", "", {
        "amazon_data.mat": "4a58f9478a99dd838010f854010c7f0c26dd04401940eaa666d4f7084d4e0420",
    }),
    Dataset("douban_gadtcdr", "fengzhu1/GA-DTCDR", "11a1dc6fda5148c8b1ce412ed4e2f0c4f124e2d0", "Data/", {
        "douban_book/ratings.dat": "cc1c191fabe2e05e95cd6dbe7be19d13ed3e1b27b80be2050e4f6b4e40945ddd",
        "douban_music/ratings.dat": "40944be25f79e6cf80ab9acf0dca8f4b9b9fe2724a068702294608883ad46775",
    }),
    Dataset("neucdcf_amazon_music_movie", "mvijaikumar/NeuCDCF", "49801afbba8433701d02ebaaa48dd6f670b2e3f7",
             "data/amazon/music_movie/sparse/100/fold1/", {
        "music_movie.trainfull.rating": "eea593cbec040ce9f0c597333313e5947e23289014bb30e6caba8fc71b9f8892",
        "music.test.rating": "28694286cddb8329df6a24982285ea9ce105a60fd9821c5748a50323b9e5c168",
    }),
    Dataset("disencdr_amazon", "cjx96/DisenCDR", "404726ca435dff50cc2219f034557cc7ce1ed1c3", "dataset/", {
        "sport_cloth/train.txt": "45c517a6fc7721f168411b69eb3f6e6ef896bbe06f599f6f7b4a5844ff925629",
        "sport_cloth/test_original.txt": "79c4f4ca9e6a694652df32c8eabc73f6b6e62719f9579e89a44210ccb0c2d460",
        "cloth_sport/train.txt": "3e039ec9baff975cb47722c4704f7d2103c2bbf2a3c30ed2d264e17b69d4fd0a",
        "cloth_sport/test_original.txt": "1e35975cd187d2d69a52cd6ae14f1ce8845ad0cba897ca65481e74c3ca487ff2",
        "phone_electronic/train.txt": "a439eb3fdf4d08e58da1d86e1f711cf0acf59f28944d347ad4b3fb9454df54f9",
        "phone_electronic/test_original.txt": "9e7f12e47f649c721bbe4e45e49d59e3b4cf4aecea0f2f45ac007fa188077b65",
        "electronic_phone/train.txt": "cb09610ab143478097937c235c4932fe39b5c664d434dd5abba3c5eb5d75f028",
        "electronic_phone/test_original.txt": "b513255035eb30808e9cc396b180f48df7e6bbd6726ed7415c00f0aab78ba565",
        "sport_phone/train.txt": "c55f3f576465795163f45cdb6df9484626dfbb12799393a7d06e4401cfcb6f3a",
        "sport_phone/test_original.txt": "78cd3e7fa755fc0c7ffe10ab61a20f3626ed81b099dfc633b08e59cf83dcc535",
        "phone_sport/train.txt": "d38cd0da5379bbec03a19cc3eb95a8b52caeeb179dfb515ba2d894b1e193572d",
        "phone_sport/test_original.txt": "17894bfdd8daecda579ca2f454b4a1282187efc52705b731dd16893c44a0abdb",
        "electronic_cloth/train.txt": "fbccec759f2acfec35927c07a1a4bd911f75106de34d6b21e7d7a8a7ffc68e81",
        "electronic_cloth/test_original.txt": "1db273571bb0e59f7d595c682d4074e9f976bcaf2fe21e15c4623bc16bc14686",
        "cloth_electronic/train.txt": "678124e0dbf8d162041f8b656bd5e89ee2a678df2c85812f94fd7c0bd2062f6f",
        "cloth_electronic/test_original.txt": "ab4c404114d7d641edfa1f5759ec1aae9b0cc5eb55c4d5ea61437c43c96b1800",
    }),
    Dataset("cdrib_amazon", "cjx96/CDRIB", "bd9894565ce06e9ab187f8a52ba03919aaee5e13", "dataset/", {
        "game_video/new_reindex.txt": "903a16e00683483f99c6cb20c78540064229b7e2104fbe8c8c2f72de38930d3c",
        "video_game/new_reindex.txt": "2fcf6d78234a1046c465640270505acdf7f5f9486795625a697430cf51d15b37",
        "cloth_sport/new_reindex.txt": "565fe87b26daad46b6250c42a21e9234d89432a5114820f64673a93f259b3459",
        "sport_cloth/new_reindex.txt": "7f90899f81cb738ab55042ec232ab0f0792f5abde066bdaaa25cf0af364f6654",
    }),
    Dataset("amazon_books_movies_dense", "RaghavPu/wasserstein-cdr-embeddings",
             "675d048d46a90402b3c0fd6af9cb11cf6d44947c", "data/Amazon-Dense-Subset/", {
        "Amazon-Books-Dense.inter": "24c23dfca8e273fcc73a8ee0eb2ba32b05364b4aeb759618ab098fd65a0fd553",
        "Amazon-Movies-Dense.inter": "708e9027df12cec25043d0f0134f6bef5d2a0388ab6ce37e33c1acc177f393e4",
    }),
]}


# Sizes in bytes of the pinned files (``stat -c %s`` of each file in ../shared/data): the cap of
# a download, so a wrong or hostile server cannot fill the disk before the checksum fails.
SIZES: dict[str, int] = {
    "amazon4_cdtf/demo_amazon.mat": 1110510,
    "amazon4_lscd/amazon_data.mat": 3211137,
    "douban_gadtcdr/douban_book/ratings.dat": 1116081,
    "douban_gadtcdr/douban_music/ratings.dat": 811063,
    "neucdcf_amazon_music_movie/music_movie.trainfull.rating": 3111889,
    "neucdcf_amazon_music_movie/music.test.rating": 258585,
    "disencdr_amazon/sport_cloth/train.txt": 1150235,
    "disencdr_amazon/sport_cloth/test_original.txt": 124070,
    "disencdr_amazon/cloth_sport/train.txt": 1097669,
    "disencdr_amazon/cloth_sport/test_original.txt": 124110,
    "disencdr_amazon/phone_electronic/train.txt": 609415,
    "disencdr_amazon/phone_electronic/test_original.txt": 40318,
    "disencdr_amazon/electronic_phone/train.txt": 1424620,
    "disencdr_amazon/electronic_phone/test_original.txt": 41498,
    "disencdr_amazon/sport_phone/train.txt": 612708,
    "disencdr_amazon/sport_phone/test_original.txt": 61239,
    "disencdr_amazon/phone_sport/train.txt": 510647,
    "disencdr_amazon/phone_sport/test_original.txt": 60073,
    "disencdr_amazon/electronic_cloth/train.txt": 2711201,
    "disencdr_amazon/electronic_cloth/test_original.txt": 206892,
    "disencdr_amazon/cloth_electronic/train.txt": 1569278,
    "disencdr_amazon/cloth_electronic/test_original.txt": 204562,
    "cdrib_amazon/game_video/new_reindex.txt": 2019780,
    "cdrib_amazon/video_game/new_reindex.txt": 2008997,
    "cdrib_amazon/cloth_sport/new_reindex.txt": 2551011,
    "cdrib_amazon/sport_cloth/new_reindex.txt": 2197342,
    "amazon_books_movies_dense/Amazon-Books-Dense.inter": 1134791,
    "amazon_books_movies_dense/Amazon-Movies-Dense.inter": 2023014,
}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$ADC_CACHE_DIR``, else ``~/.cache/adc_dist``."""
    chosen = cache_dir or os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "adc_dist"
    return Path(chosen).expanduser()


def data_root(root: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None) -> Path:
    """The data root: ``root``, else ``$ADC_DATA_ROOT``, else the download cache ``<cache>/data``."""
    chosen = root or os.environ.get(DATA_ROOT_ENV)
    path = Path(chosen).expanduser() if chosen else cache_root(cache_dir) / "data"
    try:
        path.resolve()  # Python 3.11 raises RuntimeError on a symlink loop, 3.13 OSError
    except (RuntimeError, OSError):
        raise AdcError(f"the data root {path} is a symbolic link that loops (it points back at itself); "
                       f"point --data-root / ${DATA_ROOT_ENV} at a folder") from None
    if path.exists() and not path.is_dir():
        raise AdcError(f"the data root {path} is not a folder; point --data-root / ${DATA_ROOT_ENV} at a folder "
                       f"laid out like shared/data")
    return path


def sha256_file(path: Path) -> str:
    """The sha256 of a regular file (a pipe, a device or a symlink loop raise AdcError, never block)."""
    h = hashlib.sha256()
    with open_regular(path, "data file") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _present(path: Path) -> bool:
    """Whether ``path`` is there to be read: False when missing; AdcError when something other
    than a regular file is there (a named pipe, a device, a folder, a looping link), which would
    otherwise be skipped silently and the file downloaded over it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise AdcError(f"{path} is a symbolic link that loops (it points back at itself)") from None
        if e.errno == errno.ENOTDIR:
            return False
        raise AdcError(f"{path} cannot be read ({e.strerror})") from None
    if not os.path.isfile(path):
        raise AdcError(f"{path} is {file_kind(mode)}, not a regular file; put the data file itself there")
    return True


def fetch(folder: str, rel: str, *, root: Path, cache_dir: Path) -> tuple[Path, str]:
    """A verified local copy of ``<folder>/<rel>``: (path, sha256).

    Looks in ``root``, then in ``<cache_dir>/data``, then downloads into the latter.
    Raises :class:`AdcError` on a checksum mismatch or a failed download.
    """
    ds = DATASETS[folder]
    want = ds.sha256[rel]
    for candidate in (root / folder / rel, cache_dir / "data" / folder / rel):
        if _present(candidate):
            got = sha256_file(candidate)
            if got != want:
                raise AdcError(
                    f"{candidate}: checksum mismatch (sha256 {got[:16]}..., expected {want[:16]}..., the file "
                    f"at {ds.repo}@{ds.commit[:12]}); restore the original file, or delete it to download a copy")
            return candidate, got
    dest = cache_dir / "data" / folder / rel
    url = ds.url(rel)
    try:
        download(url, dest, want, ds.size(rel))
    except urllib.error.URLError as e:  # also HTTPError; offline machines land here
        reason = f"HTTP {e.code} {e.reason}" if isinstance(e, urllib.error.HTTPError) else e.reason
        # The fix first, the cause last: the line is cut at 300 characters, and long paths exist.
        raise AdcError(one_line(
            f"{folder}/{rel} is missing: put the file (sha256 {want[:16]}...) at {root / folder / rel} or point "
            f"--data-root / ${DATA_ROOT_ENV} at a copy of shared/data "
            f"(download failed: {str(reason)[:60]}; {url})")) from None
    except OSError as e:  # socket timeouts, connection resets, a full disk
        raise AdcError(one_line(f"{folder}/{rel} could not be downloaded to {dest}: put the file (sha256 "
                                f"{want[:16]}...) at {root / folder / rel} "
                                f"(download failed: {str(e)[:60]}; {url})")) from None
    return dest, want


class _SameHostRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to the scheme, host and port the download was sent to: the pinned
    host (or the mirror) is what the checksum's provenance names, and a redirect elsewhere is
    either a misconfiguration or someone steering the download."""

    def __init__(self, origin: str):
        self.origin = origin

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 - urllib's signature
        target = urllib.parse.urljoin(req.full_url, newurl)
        if _origin(target) != self.origin:
            raise AdcError(f"downloading {self.origin}: the server redirects to {target[:120]}, another host; "
                           f"only redirects within {self.origin} are followed (nothing was written)")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or {'http': 80, 'https': 443}.get(parts.scheme)}"


def download(url: str, dest: Path, sha256: str, max_bytes: int) -> None:
    """Stream ``url`` into ``dest`` via a temporary file in the same folder, check its sha256,
    then ``os.replace`` it into place (atomic: a concurrent reader sees no file or the whole file).

    Redirects are followed within the URL's own host only; more than ``max_bytes`` (the pinned
    file's size, announced or sent) stops the download. Either raises AdcError and writes nothing.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    opener = urllib.request.build_opener(_SameHostRedirects(_origin(url)))
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.sha256()
        got = 0
        deadline = time.monotonic() + DOWNLOAD_TIMEOUT_S + max_bytes / MIN_DOWNLOAD_RATE
        with os.fdopen(fd, "wb") as out, opener.open(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            announced = resp.headers.get("Content-Length")
            if announced is not None and announced.strip().isdigit() and int(announced) > max_bytes:
                raise AdcError(f"{url}: the server announces {int(announced):,} bytes, but the pinned file has "
                               f"{max_bytes:,}; the download was refused, {dest} was not written")
            # read1: returns what has arrived, so the deadline is checked even against a trickle
            for block in iter(lambda: resp.read1(1 << 16), b""):
                if time.monotonic() > deadline:
                    raise AdcError(f"{url}: the download is slower than {MIN_DOWNLOAD_RATE // 1024} KiB/s and was "
                                   f"given up; {dest} was not written")
                got += len(block)
                if got > max_bytes:
                    raise AdcError(f"{url}: the server sent more than the {max_bytes:,} bytes of the pinned file; "
                                   f"the download was discarded, {dest} was not written")
                h.update(block)
                out.write(block)
        if h.hexdigest() != sha256:
            raise AdcError(f"{url}: checksum mismatch (sha256 {h.hexdigest()[:16]}..., expected {sha256[:16]}...); "
                           f"the download was discarded, {dest} was not written")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def inside_root(path: str, root: Path) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, if it lies inside ``root``.

    User data must live under the data root, so that a task name cannot read arbitrary
    files (``file:../../etc/passwd``) and so that the same name means the same file on
    every node of a cluster that shares the data root.
    """
    try:
        resolved = (root / path).resolve()
        inside = resolved.is_relative_to(root.resolve())
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        raise AdcError(f"{path}: a symbolic link on the way loops (it points back at itself), "
                       f"resolved against the data root {root}") from None
    if not inside:
        raise AdcError(f"{path}: the data path is outside the data root {root}; "
                       f"move the file under the data root or set --data-root / ${DATA_ROOT_ENV}")
    if not resolved.exists():
        raise AdcError(f"{resolved}: no such file or folder (resolved against the data root {root})")
    if not resolved.is_dir():
        _present(resolved)  # a pipe or a device named as data: refused here, before any reader opens it
    return resolved
