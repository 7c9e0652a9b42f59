"""Check one file of ``cluster/``: what kind it is, then the checks for that kind."""

from __future__ import annotations

from pathlib import Path

from adc_dist.inputs import files as inputs
from adc_dist.cluster.access import RAY_KINDS, check_policy_beside
from adc_dist.cluster.exposure import scan_text
from adc_dist.cluster.problems import Problem, Report
from adc_dist.cluster.yamldoc import load_documents

YAML_SUFFIXES = (".yaml", ".yml")


def kind_of(data: object) -> str:
    """"kubernetes", "launcher", "runtime_env" or "unknown"."""
    from adc_dist.cluster.kuberay import is_runtime_env

    if isinstance(data, dict) and "apiVersion" in data and "kind" in data:
        return "kubernetes"
    if is_runtime_env(data):
        return "runtime_env"
    if isinstance(data, dict) and ({"provider", "available_node_types", "cluster_name"} & set(data)):
        return "launcher"
    return "unknown"


def check_file(path: str | Path) -> list[Problem]:
    """Every problem of one file. Raises AdcError when it is missing or not YAML."""
    from adc_dist.cluster.kuberay import check_manifest, check_runtime_env
    from adc_dist.cluster.launcher import check_launcher

    p = Path(path)
    name = str(path)
    text_report = Report(name)
    text = inputs.read_bytes(p, "cluster file").decode("utf-8", errors="replace")
    scan_text(text, text_report, placeholders=p.suffix in YAML_SUFFIXES)
    if p.suffix not in YAML_SUFFIXES:  # README, Dockerfile: the secrets scan only
        return text_report.problems
    docs = load_documents(p)
    problems = list(text_report.problems)
    if not docs:
        r = Report(name)
        r.error((), "the file holds no YAML document")
        return problems + r.problems
    for i, doc in enumerate(docs):
        report = Report(name, doc.lines, prefix=(f"document {i + 1}",) if len(docs) > 1 else ())
        kind = kind_of(doc.data)
        if kind == "launcher" and len(docs) == 1:
            check_launcher(doc, report)
        elif kind == "kubernetes":
            check_manifest(doc, report)
            if doc.data.get("kind") in RAY_KINDS:
                check_policy_beside([d.data for d in docs], p.parent, report)
        elif kind == "runtime_env":
            # Its GPUs are unknown here: do not demand a CUDA torch, but do demand a pinned one.
            check_runtime_env(doc.data, 0, report, ())
        else:
            report.error((), "neither a Ray cluster launcher file (cluster_name, provider, "
                             "available_node_types), a Kubernetes manifest (apiVersion, kind) nor a "
                             "Ray runtime env (working_dir, pip, env_vars, ...)",
                         "see cluster/README.md for the two kinds of file")
        problems += report.problems
    return problems
