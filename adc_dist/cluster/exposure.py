"""Secrets and public exposure: what must never be in a file of ``cluster/``.

The text scan runs on every file (YAML, README, anything): credentials that look real, and
address ranges that open a port to the whole internet. Placeholders (CHANGE_ME) are reported
as warnings, so ``check --strict`` refuses a file that is not ready for ``ray up``.
"""

from __future__ import annotations

import re

from adc_dist.cluster.problems import Report

PLACEHOLDER = "CHANGE_ME"

SECRET_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret access key", re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{20,}")),
    ("a private key", re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")),
    ("a GCP service-account key", re.compile(r"\"private_key(?:_id)?\"\s*:")),
    ("a GitHub token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b")),
    ("a Slack token", re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}")),
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("a Ray auth token", re.compile(r"(?i)RAY_AUTH_TOKEN\s*[:=]\s*['\"]?[A-Za-z0-9_\-]{16,}")),
]
# key: value assignments whose key says secret and whose value is a literal (not $VAR, not a
# reference, not a placeholder).
GENERIC_SECRET = re.compile(
    r"(?i)\b(?P<key>[\w.-]*(?:password|passwd|secret|api[_-]?key|access[_-]?key|private[_-]?key|token))"
    r"\s*[:=]\s*['\"]?(?P<value>[^\s'\"#,}]{8,})")
EXPOSURE_PATTERNS: list[tuple[str, re.Pattern[str]]] = [
    ("opens an address range to the whole internet (0.0.0.0/0)", re.compile(r"\b0\.0\.0\.0/0\b")),
    ("opens an address range to the whole internet (::/0)", re.compile(r"(?<![\w:])::/0\b")),
]


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _is_reference(value: str) -> bool:
    return (value.startswith(("$", "<", "{{")) or PLACEHOLDER in value or value.lower() in
            ("disabled", "enabled", "required", "optional", "true", "false", "none", "null")
            or value.endswith(("Ref", "Ref:")) or "/" in value and not re.search(r"[A-Za-z0-9+/]{30,}", value))


def scan_text(text: str, report: Report, *, placeholders: bool = True) -> None:
    """Secrets and internet-wide address ranges anywhere in ``text``; placeholders (outside
    comments) as warnings when ``placeholders``."""
    for what, pat in SECRET_PATTERNS:
        for m in pat.finditer(text):
            report.error((), f"looks like {what}: secrets never go into cluster files",
                         "remove it (and rotate it); nodes get credentials from instance roles / "
                         "workload identity, `ray up` from your environment", line=_line_of(text, m.start()))
    for m in GENERIC_SECRET.finditer(text):
        if not _is_reference(m.group("value")):
            report.error((), f"{m.group('key')} is set to a literal value: secrets never go into cluster files",
                         "read it from the environment or a Kubernetes Secret created outside the repo",
                         line=_line_of(text, m.start()))
    for what, pat in EXPOSURE_PATTERNS:
        for m in pat.finditer(text):
            report.error((), what, "keep the dashboard and job API private: `ray dashboard FILE` or "
                                   "`kubectl port-forward` reach them", line=_line_of(text, m.start()))
    if not placeholders:
        return
    lines = [i for i, line in enumerate(text.splitlines(), 1)
             if PLACEHOLDER in line.split("#", 1)[0]]
    if lines:
        report.warning((), f"placeholder {PLACEHOLDER} still on line(s) {', '.join(map(str, lines))}",
                       "replace it before launching (see cluster/README.md); `check --strict` refuses it",
                       line=lines[0])
