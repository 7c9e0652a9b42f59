"""What each config field means, for ``--help``: read from the comments in config.py.

The comments beside ``TrainConfig``'s fields are where their meaning is written and kept up
to date; a second copy for ``--help`` would drift. A field's text is its own line's comment,
else the comment lines right above it (a section rule, ``# --- ...``, is not part of it).
Read with ``tokenize`` (no import of anything heavy: ``--help`` must stay fast).
"""

from __future__ import annotations

import io
import re
import tokenize
from functools import lru_cache
from pathlib import Path

CONFIG = Path(__file__).resolve().parent.parent / "config.py"
_FIELD = re.compile(r"^    (\w+): [^=]+=")  # "    name: type = default" inside the dataclass


@lru_cache(maxsize=1)
def field_comments(path: Path = CONFIG) -> dict[str, str]:
    """{field name: its comment} for the fields of ``class TrainConfig`` that have one."""
    source = path.read_text()
    comments: dict[int, str] = {}  # line number -> comment text
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    lines = source.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("class TrainConfig"))
    out: dict[str, str] = {}
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line and not line.startswith(" "):  # the class ended
            break
        m = _FIELD.match(line)
        if not m:
            continue
        number = i + 1
        if number in comments:
            out[m.group(1)] = comments[number]
            continue
        above: list[str] = []
        j = number - 1
        while j in comments and lines[j - 1].lstrip().startswith("#") and not comments[j].startswith("---"):
            above.insert(0, comments[j])
            j -= 1
        if above:
            out[m.group(1)] = " ".join(above)
    return out
