"""Reading files a user (or someone else) hands us: regular files only, bounded sizes, and the
one safe YAML loader used for configs, search spaces and cluster files.

Why a module of its own: every reader of untrusted input needs the same three guards, and each
one missed has cost a hang or a runaway message before:
- only *regular* files: ``open()`` on a named pipe blocks until someone writes to it (forever,
  for a pipe nobody writes), and a device such as ``/dev/zero`` never ends. Files are opened
  non-blocking and checked with ``fstat`` on the open descriptor, so a path swapped between a
  check and the open cannot slip through;
- bounded sizes: a config is kilobytes; a 2 GB "config" is a mistake, refused before reading;
- YAML's own traps: aliases expand exponentially (a 600-byte "billion laughs" file becomes
  millions of nodes for anything that walks it, and an 8 MB error message), nesting deeper
  than Python's recursion limit crashes the composer, and binary or non-UTF-8 bytes give
  multi-line parser errors. :func:`load_yaml` refuses all of these with one short line.

Messages are one line of at most :data:`MAX_MESSAGE` characters (:func:`one_line`), and values
quoted in them go through :func:`short`.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

from adc_dist.errors import AdcError

MAX_MESSAGE = 293  # characters of one message: with run_cli's "error: " a line of at most 300
MAX_YAML_BYTES = 1 << 20  # 1 MiB: the largest config / space / cluster file here is 8 KB
MAX_YAML_DEPTH = 40  # nesting of mappings and lists (cluster files need about 12)
MAX_YAML_ALIASES = 200  # '*name' references in one file
MAX_YAML_NODES = 100_000  # nodes once every alias is expanded (what a walker of the data visits)

_KINDS = [(stat.S_ISFIFO, "a named pipe"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")]


def short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: values quoted in messages stay short."""
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line (newlines and runs of blanks collapsed), at most ``limit`` chars."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def show(path: str | os.PathLike, limit: int = 120) -> str:
    """A path for a message: control characters escaped, the middle of a very long one elided,
    so that the reason after it still fits on the line."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(path))
    return text if len(text) <= limit else text[: limit // 2 - 2] + "..." + text[-(limit // 2 - 1):]


def _err(message: str) -> AdcError:
    """An AdcError of one line: paths may hold newlines or be long (a hostile file name)."""
    return AdcError(one_line(message))


def file_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words ("a named pipe", ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _os_error(path: Path, what: str, e: OSError) -> AdcError:
    if e.errno == errno.ENOENT:
        return _err(f"{what} {show(path)} does not exist")
    if e.errno == errno.ELOOP:
        return _err(f"{what} {show(path)} is a symbolic link that loops (it points back at itself)")
    if e.errno in (errno.EACCES, errno.EPERM):
        return _err(f"{what} {show(path)} cannot be read (permission denied)")
    return _err(f"{what} {show(path)} cannot be read ({e.strerror or e})")


def open_regular(path: str | os.PathLike, what: str = "file"):
    """``path`` opened for binary reading, if it is a regular file (symlinks followed).

    Raises AdcError for a missing file, a symlink loop, a named pipe, a device, a socket or a
    folder, without blocking: the open is non-blocking and the check is ``fstat`` on the
    descriptor that is then read.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise _err(f"{what} {show(p)} is a folder, not a file") from None
        raise _os_error(p, what, e) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _err(f"{what} {show(p)} is {file_kind(mode)}, not a regular file; give the path of a file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file: plain blocking reads from here on
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, what: str = "file", limit: int = MAX_YAML_BYTES) -> bytes:
    """The bytes of the regular file ``path``, refused (not read) above ``limit`` bytes."""
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        data = f.read(limit + 1)
    if size > limit or len(data) > limit:
        raise _err(f"{what} {show(path)} is {max(size, len(data)):,} bytes; the limit is {limit:,} "
                       f"(a {what} is a few kilobytes: is this the right file?)")
    return data


def decode_text(data: bytes, path: str | os.PathLike, what: str = "file") -> str:
    """``data`` as UTF-8 text (a byte-order mark dropped); binary content is refused."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        raise _err(f"{what} {show(path)} is binary, not text (a NUL byte at offset {nul})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _err(f"{what} {show(path)} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def read_text(path: str | os.PathLike, what: str = "file", limit: int = MAX_YAML_BYTES) -> str:
    """A regular file of at most ``limit`` bytes as UTF-8 text (see :func:`decode_text`)."""
    return decode_text(read_bytes(path, what, limit), path, what)


# --------------------------------------------------------------------------- YAML
class _LimitedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader (no Python objects) with a depth and an alias budget while composing."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _Refused(f"more than {MAX_YAML_ALIASES} aliases (*name references)")
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _Refused(f"nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    """A limit of :class:`_LimitedLoader` was hit (turned into an AdcError by the caller)."""


def _expanded_size(root: yaml.Node) -> int:
    """Nodes of ``root`` with every alias expanded (shared nodes counted each time they are
    reached), computed without expanding: memoised per node. Raises _Refused on a cycle."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    # Iterative post-order walk: no recursion, whatever the shape.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            active.discard(key)
            sizes[key] = min(1 + sum(sizes[id(c)] for c in children), MAX_YAML_NODES + 1)
            continue
        if key in sizes:
            continue
        if key in active:
            raise _Refused("an alias refers to the collection that contains it (a recursive structure)")
        active.add(key)
        stack.append((node, True))
        for c in children:
            if id(c) in active:
                raise _Refused("an alias refers to the collection that contains it (a recursive structure)")
            if id(c) not in sizes:
                stack.append((c, False))
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _yaml_error(e: yaml.YAMLError) -> str:
    """A PyYAML error as one short phrase with its line and column (PyYAML's own text spans
    several lines and quotes the offending input)."""
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or type(e).__name__
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    if isinstance(e, yaml.reader.ReaderError):
        problem = f"unacceptable character #x{e.character:04x}" if isinstance(e.character, int) else e.reason
        where = f" (byte {e.position})"
    return one_line(f"{problem}{where}", 160)


def compose_documents(text: str, where: str) -> list[yaml.Node]:
    """The composed (not yet constructed) documents of ``text``, within the limits."""
    loader = None
    try:
        loader = _LimitedLoader(text)  # the reader checks the characters here already
        nodes = []
        while loader.check_node():
            node = loader.get_node()
            if node is not None and _expanded_size(node) > MAX_YAML_NODES:
                raise _Refused(f"more than {MAX_YAML_NODES:,} values once its aliases are expanded")
            nodes.append(node)
        return nodes
    except _Refused as e:
        raise _err(f"{where} is refused: {e}") from None
    except yaml.YAMLError as e:
        raise _err(f"{where} is not valid YAML: {_yaml_error(e)}") from None
    except RecursionError:  # pragma: no cover - the depth limit comes first
        raise _err(f"{where} is refused: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def construct(node: yaml.Node | None, where: str) -> Any:
    """The Python value of one composed document (safe types only)."""
    if node is None:
        return None
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _err(f"{where} is not valid YAML: {_yaml_error(e)}") from None
    except (ValueError, OverflowError, TypeError) as e:
        # e.g. an integer of more than 4,300 digits, a timestamp such as 2024-13-45
        raise _err(f"{where} holds a value YAML cannot read ({e})") from None
    finally:
        loader.dispose()


def load_yaml_text(text: str, where: str) -> Any:
    """The single document in ``text`` (None when empty), within the limits."""
    nodes = compose_documents(text, where)
    if len(nodes) > 1:
        raise _err(f"{where} holds {len(nodes)} YAML documents ('---' separated); expected one")
    return construct(nodes[0], where) if nodes else None


def load_yaml(path: str | os.PathLike, what: str = "YAML file", limit: int = MAX_YAML_BYTES) -> Any:
    """The single YAML document of the regular file ``path`` (None when empty).

    Refused with one AdcError line: a missing or non-regular file, more than ``limit`` bytes,
    binary or non-UTF-8 content, invalid YAML, nesting deeper than :data:`MAX_YAML_DEPTH`,
    more than :data:`MAX_YAML_ALIASES` aliases or :data:`MAX_YAML_NODES` expanded values,
    a recursive alias, several documents, Python-object tags.
    """
    text = read_text(path, what, limit)
    return load_yaml_text(text, f"{what} {show(path)}")
