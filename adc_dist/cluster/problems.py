"""A problem found in a cluster file, and how it is printed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

Path = tuple  # keys and list indices from the document root, e.g. ("spec", "workerGroupSpecs", 0)


def render_path(path: Sequence[Any]) -> str:
    """``("a", "b", 0, "c")`` -> ``a.b[0].c``; the empty path is ``(document)``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file. ``severity`` is "error" or "warning"."""

    file: str
    path: Path
    message: str
    fix: str = ""
    line: int | None = None
    severity: str = "error"

    def format(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        at = f"{render_path(self.path)}: " if self.path or not self.line else ""
        head = f"{where}: {self.severity}: {at}{self.message}"
        return head + (f"\n    fix: {self.fix}" if self.fix else "")


class Report:
    """Collects the problems of one file; ``lines`` maps a path to its line in the file."""

    def __init__(self, file: str, lines: dict[Path, int] | None = None, prefix: Path = ()):
        self.file = file
        self.lines = lines or {}
        self.prefix = prefix  # the document's index in a multi-document file, if any
        self.problems: list[Problem] = []

    def _line(self, path: Path) -> int | None:
        path = tuple(path)
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = path[:-1]

    def error(self, path: Sequence[Any], message: str, fix: str = "", *, line: int | None = None) -> None:
        self._add(path, message, fix, "error", line)

    def warning(self, path: Sequence[Any], message: str, fix: str = "", *, line: int | None = None) -> None:
        self._add(path, message, fix, "warning", line)

    def _add(self, path: Sequence[Any], message: str, fix: str, severity: str, line: int | None) -> None:
        path = tuple(path)
        problem = Problem(self.file, self.prefix + path, message, fix, line or self._line(path), severity)
        if problem not in self.problems:
            self.problems.append(problem)
