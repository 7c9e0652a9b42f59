"""The README's table of config fields says what `TrainConfig` does: every field, its default.

The table is where a newcomer reads the defaults before a run; it once kept `negatives` (5)
and `l2` (1e-3) for months after the defaults moved to 20 and 3e-3, and never listed
`eval_users`. The default shown is the text in parentheses after a field's name up to the
first space, `;` or `:` (``(5e-3, Adam)`` shows 5e-3); a field without parentheses shows
no default and must be one whose default is "not set" (None or False).
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from adc_dist.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
FIELD = re.compile(r"`(\w+)`(?: \(([^)]*)\))?")


def readme_table() -> list[tuple[str, str | None]]:
    """(field, shown default or None) for every field the README's config table names."""
    text = (REPO / "README.md").read_text()
    table = text.split("| group | fields (default) |", 1)[1].split("\n\n", 1)[0]
    return [(name, shown if shown else None) for name, shown in FIELD.findall(table)]


def shown_default(text: str) -> str:
    return re.split(r"[ ;:]", text, maxsplit=1)[0].rstrip(",")


def same(shown: str, default) -> bool:
    if isinstance(default, bool):
        return shown == str(default).lower()
    if default is None:
        return shown == "none"
    if isinstance(default, list):
        return shown == ",".join(str(x) for x in default)
    if isinstance(default, (int, float)):
        return float(shown) == float(default)
    return shown.removeprefix("./") == default


def test_the_readme_table_names_every_config_field_once():
    names = [name for name, _ in readme_table()]
    fields = [f.name for f in dataclasses.fields(TrainConfig)]
    assert sorted(names) == sorted(fields), (
        f"missing from the README: {sorted(set(fields) - set(names))}; "
        f"not fields: {sorted(set(names) - set(fields))}; twice: {sorted({n for n in names if names.count(n) > 1})}")


def test_the_readme_table_shows_the_config_defaults():
    defaults = TrainConfig()
    wrong = []
    for name, shown in readme_table():
        default = getattr(defaults, name)
        if shown is None:
            ok = default is None or default is False
        else:
            ok = same(shown_default(shown), default)
        if not ok:
            wrong.append(f"{name}: README {shown!r}, TrainConfig {default!r}")
    assert not wrong, wrong


def test_the_check_reads_defaults_as_written():
    # the parsing itself, on the shapes the table uses
    assert shown_default("5e-3, Adam") == "5e-3" and same("5e-3", 0.005)
    assert shown_default("none; `paper`: the model") == "none" and same("none", None)
    assert shown_default("true: S_k and Q_k start at zero") == "true" and same("true", True)
    assert same(shown_default("./runs; ~/adc_dist/runs in a Ray job"), "runs")
    assert same("5,10,20,50", [5, 10, 20, 50]) and not same("5,10,20", [5, 10, 20, 50])
    assert not same(shown_default("5"), 20)
