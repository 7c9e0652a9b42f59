"""One command-line grammar for train, tune, compare, report, data and cluster.

- Every long flag is accepted as ``--dash-case`` and ``--under_score``: ``add_argument``
  registers the other spelling itself.
- A bad flag or value is one ``AdcError`` line (``error: ...``, exit 2), not argparse's
  usage dump; an unknown flag names the closest known ones.
No heavy imports: ``--help`` and flag errors must come back in well under two seconds.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Any, Iterable, Sequence

from adc_dist.errors import AdcError


def spellings(flag: str) -> list[str]:
    """``--num-workers`` -> [``--num-workers``, ``--num_workers``] (the given one first)."""
    if not flag.startswith("--"):
        return [flag]
    body = flag[2:]
    out = [flag]
    for other in (body.replace("_", "-"), body.replace("-", "_")):
        if other != body and f"--{other}" not in out:
            out.append(f"--{other}")
    return out


def suggest(word: str, known: Iterable[str]) -> str:
    """"; did you mean --x?" for the close matches of ``word`` among ``known`` (both spellings)."""
    names = sorted(set(known))
    norm = {n.lstrip("-").replace("-", "_"): n for n in names}
    close = difflib.get_close_matches(word.lstrip("-").replace("-", "_"), list(norm), n=3, cutoff=0.6)
    return f"; did you mean {', '.join(norm[c] for c in close)}?" if close else ""


class Parser(argparse.ArgumentParser):
    """argparse with both spellings of every flag and one-line errors with suggestions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # a prefix is a typo, not a flag
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def add_argument(self, *names: str, **kwargs: Any) -> argparse.Action:
        return super().add_argument(*_both(names), **kwargs)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> argparse._ArgumentGroup:
        group = super().add_argument_group(*args, **kwargs)
        plain = group.add_argument
        group.add_argument = lambda *names, **kw: plain(*_both(names), **kw)  # type: ignore[method-assign]
        return group

    def long_flags(self) -> list[str]:
        """Every long flag, the subcommands' included (their unknown words come back here)."""
        out = [s for a in self._actions for s in a.option_strings if s.startswith("--")]
        for a in self._actions:
            if isinstance(a, argparse._SubParsersAction):
                out += [f for sub in a.choices.values() if isinstance(sub, Parser) for f in sub.long_flags()]
        return out

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> argparse.Namespace:  # type: ignore[override]
        ns, extra = self.parse_known_args(args, namespace)
        if extra:
            self.unknown(extra)
        return ns

    def unknown(self, extra: Sequence[str]) -> None:
        """Raise one line for the first unexpected word, naming close flags."""
        word = next((e for e in extra if e.startswith("-")), extra[0])
        if not word.startswith("-"):
            raise AdcError(f"{self.prog}: unexpected argument {word!r} (see {self.prog} --help)")
        flag = word.split("=", 1)[0]
        hint = suggest(flag, self.long_flags()) or f"; see {self.prog} --help"
        raise AdcError(f"{self.prog}: unknown flag {flag}{hint}")

    def error(self, message: str) -> Any:  # argparse's exit(2) with a usage dump -> one line
        raise AdcError(f"{self.prog}: {message} (see {self.prog} --help)")


def _both(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        out += [s for s in spellings(n) if s not in out]
    return out
