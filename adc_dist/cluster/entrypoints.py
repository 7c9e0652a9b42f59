"""Check the commands a cluster file runs: ``python -m adc_dist.train|tune ...`` and
``ray job submit ... -- <entrypoint>``.

Every ``--flag`` must be one the real command-line parser accepts (the parsers are
imported, not copied, so this cannot drift from the CLIs), train config values must
have the field's type, and the whole train config must validate.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from adc_dist.errors import AdcError

MODULES = {"adc_dist.train": "adc_dist.train", "adc_dist.tune": "adc_dist.tune",
           "adc-train": "adc_dist.train", "adc-tune": "adc_dist.tune"}
# Where each command's ``build_parser`` lives (the command's package runs it from __main__).
PARSERS = {"adc_dist.train": "adc_dist.train.launch", "adc_dist.tune": "adc_dist.tune.driver"}
_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")"}


@dataclass
class Invocation:
    """One run of an adc_dist CLI found in a command string."""

    module: str  # "adc_dist.train" or "adc_dist.tune"
    argv: list[str]
    submit_argv: list[str] | None = None  # the `ray job submit` options before `--`, if any
    values: dict[str, Any] = field(default_factory=dict)  # dest -> value, after parsing

    def get(self, dest: str, default: Any = None) -> Any:
        v = self.values.get(dest)
        return default if v is None else v


def _tokens(command: str) -> list[str]:
    lex = shlex.shlex(command, posix=True, punctuation_chars=";&|()")
    lex.whitespace_split = True
    lex.commenters = ""
    try:
        return list(lex)
    except ValueError as e:  # unbalanced quotes
        raise AdcError(f"cannot split the command {command!r}: {e}") from None


def find_invocations(command: str) -> list[Invocation]:
    """Every ``python -m adc_dist.train|tune`` (or ``adc-train``/``adc-tune``) in ``command``."""
    toks = _tokens(command)
    found = []
    for i, tok in enumerate(toks):
        module = None
        if tok in ("-m",) and i + 1 < len(toks) and toks[i + 1] in MODULES and i > 0 \
                and toks[i - 1].split("/")[-1].startswith("python"):
            module, start = MODULES[toks[i + 1]], i + 2
        elif tok in ("adc-train", "adc-tune"):
            module, start = MODULES[tok], i + 1
        if module is None:
            continue
        end = next((j for j in range(start, len(toks)) if toks[j] in _SEPARATORS), len(toks))
        submit = _submit_argv(toks[:i])
        found.append(Invocation(module, toks[start:end], submit))
    return found


def _submit_argv(before: list[str]) -> list[str] | None:
    """The options of a ``ray job submit ... --`` that precedes the entrypoint, if any."""
    for j in range(len(before) - 2):
        if before[j].split("/")[-1] == "ray" and before[j + 1:j + 3] == ["job", "submit"]:
            rest = before[j + 3:]
            return rest[:rest.index("--")] if "--" in rest else rest
    return None


# --- the real parsers ---------------------------------------------------------------------------
@lru_cache(maxsize=None)
def parser_of(module: str) -> argparse.ArgumentParser | None:
    """The CLI's own ``build_parser()``; None when the module does not exist (yet)."""
    target = PARSERS.get(module, module)
    try:
        mod = importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name and target.startswith(e.name):
            return None
        raise
    build = getattr(mod, "build_parser", None)
    return build() if callable(build) else None


@lru_cache(maxsize=None)
def submit_options() -> dict[str, bool]:
    """``ray job submit``'s options -> whether each takes a value (from Ray's own click command)."""
    from ray.dashboard.modules.job import cli

    out = {}
    for p in cli.submit.params:
        for opt in getattr(p, "opts", []):
            if opt.startswith("-"):
                out[opt] = not getattr(p, "is_flag", False)
    return out


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {opt: a for a in parser._actions for opt in a.option_strings}  # noqa: SLF001


def check_submit(argv: list[str]) -> list[tuple[str, str]]:
    """Problems with the options of a ``ray job submit`` (unknown options, with suggestions)."""
    known = submit_options()
    problems = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        name = tok.split("=", 1)[0]
        if tok.startswith("-"):
            if name not in known:
                close = difflib.get_close_matches(name, list(known), n=2)
                problems.append((f"`ray job submit` has no option {name}",
                                 f"use {' or '.join(close)}" if close else "see `ray job submit --help`"))
            elif known[name] and "=" not in tok:
                i += 1
        i += 1
    return problems


class NotCheckable(Exception):
    """The CLI is not importable here: its flags cannot be checked (a warning, not an error)."""


def check_invocation(inv: Invocation) -> list[tuple[str, str]]:
    """Problems (message, fix) with one invocation; fills ``inv.values`` as the CLI would parse it.

    Raises NotCheckable when the CLI's module cannot be imported here.
    """
    problems: list[tuple[str, str]] = []
    parser = parser_of(inv.module)
    if parser is None:
        raise NotCheckable(f"{inv.module} is not importable here, so its flags were not checked")
    options = _options(parser)
    prog = f"python -m {inv.module}"
    for tok in inv.argv:
        if tok.startswith("--") and tok.split("=", 1)[0] not in options:
            name = tok.split("=", 1)[0]
            close = difflib.get_close_matches(name, list(options), n=3, cutoff=0.6)
            problems.append((f"{prog} has no flag {name}",
                             f"did you mean {', '.join(close)}?" if close else f"see `{prog} --help`"))
    if problems and any("has no flag" in m for m, _ in problems):
        return problems
    try:
        ns, extra = _parse_quietly(parser, inv.argv)
    except _ParseError as e:
        return problems + [(f"{prog} rejects these arguments: {e}", f"see `{prog} --help`")]
    if extra:
        problems.append((f"{prog} does not take {' '.join(extra)!r}",
                         "config values are given as --key value"))
    inv.values = vars(ns)
    if inv.module == "adc_dist.train":
        problems += _check_train_values(ns)
    return problems


class _ParseError(Exception):
    pass


class _QuietParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse's hook
        raise _ParseError(message)


def _parse_quietly(parser: argparse.ArgumentParser, argv: list[str]):
    """parse_known_args without argparse printing usage and exiting."""
    original = parser.error
    parser.error = _QuietParser.error.__get__(parser)  # type: ignore[method-assign]
    try:
        return parser.parse_known_args(argv)
    finally:
        parser.error = original  # type: ignore[method-assign]


def _check_train_values(ns: argparse.Namespace) -> list[tuple[str, str]]:
    """Each config value has its field's type, and the whole config validates."""
    from adc_dist.config import FIELD_NAMES, coerce, from_mapping

    values: dict[str, Any] = {}
    problems = []
    for name in FIELD_NAMES:
        v = getattr(ns, f"cfg_{name}", None)
        if v is None:
            continue
        try:
            values[name] = coerce(name, v)
        except AdcError as e:
            problems.append((str(e), f"give --{name} a value of the right type"))
    if problems or getattr(ns, "config", None):
        return problems  # a --config file is the user's, not in this file: skip the whole check
    try:
        from_mapping(values, where="the command line")
    except AdcError as e:
        problems.append((str(e).replace(":\n  ", ": ").replace("\n  ", "; "), "fix the flag values"))
    return problems


def train_config(inv: Invocation):
    """The TrainConfig an ``adc_dist.train`` invocation runs with (without --config), or None."""
    from adc_dist.config import FIELD_NAMES, coerce, from_mapping

    if inv.module != "adc_dist.train" or inv.values.get("config"):
        return None
    try:
        return from_mapping({n: coerce(n, inv.values[f"cfg_{n}"]) for n in FIELD_NAMES
                             if inv.values.get(f"cfg_{n}") is not None})
    except AdcError:
        return None
