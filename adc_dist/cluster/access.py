"""Who can reach a cluster's job API: the checks that keep it off the network.

The dashboard's job API (8265) runs any code it is sent, and so do the Ray client port (10001)
and the GCS (6379). A cluster is safe when every request needs Ray's token (token
authentication, Ray >= 2.52) *and* the ports are reachable only from where they must be:

- launcher files (``ray up``): RAY_AUTH_MODE=token on the head and every worker, the token shipped
  to the nodes (``file_mounts``), nothing switching it off, the dashboard bound to the head's
  loopback (``ray dashboard FILE`` tunnels to the head's ``localhost:8265``; a binding to the
  private address would break that tunnel, one to 0.0.0.0 opens it to the VPC), and no
  security-group rule open to the internet;
- KubeRay manifests: ``authOptions: {mode: token}`` (KubeRay >= 1.5.1 makes the token Secret and
  sets RAY_AUTH_MODE / RAY_AUTH_TOKEN in every Ray container), no RAY_AUTH_MODE=disabled, and a
  NetworkPolicy beside them (same file or same folder) that admits to the Ray pods only other
  Ray pods and the KubeRay operator. ``kubectl port-forward`` is not subject to it: that is the
  way in for people, through the API server and their kubeconfig.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from adc_dist.cluster.problems import Report
from adc_dist.inputs.files import short

TOKEN_MODE = re.compile(r"\bRAY_AUTH_MODE\s*=\s*['\"]?token\b")
DISABLED_MODE = re.compile(r"\bRAY_AUTH_MODE\s*=\s*['\"]?(disabled|none|off|false|0)\b", re.I)
ALL_INTERFACES = ("0.0.0.0", "::", "[::]", "*", "0")
TOKEN_FILE = ".ray/auth_token"


def check_auth(data: dict[str, Any], report: Report) -> None:
    """The job API (8265), the client port and the GCS accept only requests carrying Ray's token:
    RAY_AUTH_MODE=token on the head and every worker, the token shipped to the nodes, nothing
    switching it off, and the dashboard bound to the head's loopback (``ray dashboard FILE``
    tunnels to the head's localhost:8265), never to every interface."""
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    for key in keys:
        for cmd in commands(data.get(key)):
            if DISABLED_MODE.search(cmd):
                report.error((key,), "RAY_AUTH_MODE=disabled switches Ray's token authentication off: anything "
                             "that reaches the job API or the GCS can run code on the cluster",
                             "use RAY_AUTH_MODE=token (see cluster/README.md)")
    docker = data.get("docker") if isinstance(data.get("docker"), dict) else {}
    for key in ("run_options", "head_run_options", "worker_run_options"):
        if any(DISABLED_MODE.search(o) for o in commands(docker.get(key))):
            report.error(("docker", key), "RAY_AUTH_MODE=disabled switches Ray's token authentication off",
                         "remove it; the start commands set RAY_AUTH_MODE=token")
    fix = ("prefix `ray start` with RAY_AUTH_MODE=token and ship the token: file_mounts: "
           '{"~/.ray/auth_token": "~/.ray/auth_token"} (make it once: ray get-auth-token --generate)')
    head = " ".join(commands(data.get("head_start_ray_commands")))
    workers = " ".join(commands(data.get("worker_start_ray_commands")))
    if "head_start_ray_commands" not in data:
        report.error(("head_start_ray_commands",), "not set: Ray's default starts the head without "
                     "RAY_AUTH_MODE=token, so the job API may accept unauthenticated requests", fix)
    elif not TOKEN_MODE.search(head):
        report.error(("head_start_ray_commands",), "`ray start --head` runs without RAY_AUTH_MODE=token: the "
                     "job API (8265) accepts unauthenticated requests from anything that reaches it", fix)
    if "worker_start_ray_commands" not in data or not TOKEN_MODE.search(workers):
        report.error(("worker_start_ray_commands",), "the workers start without RAY_AUTH_MODE=token; every "
                     "node of a cluster must use the same mode", "prefix their `ray start` with RAY_AUTH_MODE=token")
    m = re.search(r"--dashboard-host(?:=|\s+)['\"]?([^\s'\";]+)", head)
    if m and m.group(1) in ALL_INTERFACES:
        report.error(("head_start_ray_commands",), f"--dashboard-host={m.group(1)} puts the dashboard and job API "
                     "on every interface of the head, reachable from the whole network",
                     "--dashboard-host=127.0.0.1: `ray dashboard FILE` reaches it through an SSH tunnel")
    if TOKEN_MODE.search(head):
        mounts = data.get("file_mounts") if isinstance(data.get("file_mounts"), dict) else {}
        shipped = any(isinstance(k, str) and k.rstrip("/").endswith(TOKEN_FILE) for k in mounts) or \
            re.search(r"RAY_AUTH_TOKEN(_PATH)?\s*=", head)
        if not shipped:
            report.error(("file_mounts",), "the nodes start with RAY_AUTH_MODE=token but nothing puts the token on "
                         "them, so `ray start` fails", 'file_mounts: {"~/.ray/auth_token": "~/.ray/auth_token"}')


def check_security_group(data: dict[str, Any], report: Report) -> None:
    sg = data.get("provider", {}).get("security_group") if isinstance(data.get("provider"), dict) else None
    rules = sg.get("IpPermissions", []) if isinstance(sg, dict) else []
    path = ("provider", "security_group", "IpPermissions")
    if not isinstance(rules, list):
        report.error(path, f"must be a list of rules (mappings), got {short(rules)}")
        return
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            report.error(path + (i,), f"each rule must be a mapping (FromPort, ToPort, IpRanges, ...), "
                                      f"got {short(rule)}")
            continue
        ranges = [r.get("CidrIp") for r in _mappings(rule.get("IpRanges"))] + \
                 [r.get("CidrIpv6") for r in _mappings(rule.get("Ipv6Ranges"))]
        if any(r in ("0.0.0.0/0", "::/0") for r in ranges):
            report.error(("provider", "security_group", "IpPermissions", i),
                         f"opens ports {rule.get('FromPort')}-{rule.get('ToPort')} to the whole internet",
                         "reach the dashboard and job API through `ray dashboard FILE` (an SSH tunnel) instead")


def commands(value: Any) -> list[str]:
    """The string entries of a command list (anything else: the schema reports it)."""
    return [c for c in value if isinstance(c, str)] if isinstance(value, list) else []


def _mappings(value: Any) -> list[dict[str, Any]]:
    """The mapping entries of a list (anything else: the schema reports it)."""
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# ----------------------------------------------------------------------------- Kubernetes
AUTH_OPTIONS = {"mode", "secretName", "enableK8sTokenAuth"}
RAY_POD_LABEL = ("ray.io/is-ray-node", "yes")  # the label KubeRay gives every pod of every Ray cluster
RAY_KINDS = ("RayCluster", "RayJob", "RayService")


def env_auth_mode(env: Any) -> str | None:
    """The literal RAY_AUTH_MODE of a container's env list, if set."""
    for e in _mappings(env):
        if e.get("name") == "RAY_AUTH_MODE" and isinstance(e.get("value"), str):
            return e["value"].strip().lower()
    return None


def check_cluster_auth(spec: dict[str, Any], container_modes: list[str | None], report: Report, path: tuple) -> None:
    """A RayCluster spec asks for token auth: authOptions (KubeRay >= 1.5.1), or RAY_AUTH_MODE=token
    set by hand in every Ray container (with the token from a Secret), and nothing disables it."""
    auth = spec.get("authOptions")
    mode = None
    if auth is not None and not isinstance(auth, dict):
        report.error(path + ("authOptions",), f"must be a mapping such as {{mode: token}}, got {short(auth)}")
    elif isinstance(auth, dict):
        for key in auth:
            if key not in AUTH_OPTIONS:
                report.error(path + ("authOptions", key), f"unknown field {short(key)} in authOptions",
                             f"allowed: {', '.join(sorted(AUTH_OPTIONS))}")
        mode = auth.get("mode")
        if mode not in (None, "token", "disabled"):
            report.error(path + ("authOptions", "mode"), f"{short(mode)} is not an auth mode", "mode: token")
    if mode == "disabled" or "disabled" in container_modes:
        report.error(path + (("authOptions", "mode") if mode == "disabled" else ()),
                     "token authentication is switched off: any pod that reaches the head (job API 8265, "
                     "client 10001, GCS 6379) can run code on the cluster", "authOptions: {mode: token}")
    elif mode != "token" and not (isinstance(auth, dict) and auth.get("enableK8sTokenAuth") is True) \
            and not (container_modes and all(m == "token" for m in container_modes)):
        report.error(path, "no token authentication: any pod that reaches the head (job API 8265, client "
                           "10001, GCS 6379) can run code on the cluster",
                     "add authOptions: {mode: token} (KubeRay >= 1.5.1 creates the token Secret)")


def _peer_admits_all(peer: Any) -> bool:
    """Whether one ``from`` entry admits every source (or every pod of a namespace or cluster)."""
    if not isinstance(peer, dict):
        return False
    block = peer.get("ipBlock")
    if isinstance(block, dict) and block.get("cidr") in ("0.0.0.0/0", "::/0"):
        return True
    pods, namespaces = peer.get("podSelector"), peer.get("namespaceSelector")

    def empty(sel: Any) -> bool:  # a selector that selects everything
        return isinstance(sel, dict) and not sel.get("matchLabels") and not sel.get("matchExpressions")

    if namespaces is not None and empty(namespaces) and (pods is None or empty(pods)):
        return True  # every pod of every namespace
    return pods is not None and empty(pods) and namespaces is None  # every pod of the namespace


def check_network_policy(data: dict[str, Any], report: Report) -> None:
    """A NetworkPolicy of this folder: it must select pods and admit no one-and-all."""
    spec = data.get("spec")
    if not isinstance(spec, dict):
        report.error(("spec",), "a NetworkPolicy needs a spec (podSelector, policyTypes, ingress)")
        return
    if not isinstance(spec.get("podSelector"), dict):
        report.error(("spec", "podSelector"), "missing: the policy selects no pods",
                     f'podSelector: {{matchLabels: {{{RAY_POD_LABEL[0]}: "{RAY_POD_LABEL[1]}"}}}}')
    rules = spec.get("ingress", [])
    if not isinstance(rules, list):
        report.error(("spec", "ingress"), f"must be a list of rules, got {short(rules)}")
        return
    for i, rule in enumerate(rules):
        peers = rule.get("from") if isinstance(rule, dict) else None
        if not isinstance(rule, dict) or not peers or any(_peer_admits_all(p) for p in (peers or [])):
            report.error(("spec", "ingress", i), "this rule admits traffic from everywhere (no `from`, an "
                         "empty selector, or 0.0.0.0/0): the Ray ports are open to every pod",
                         f'admit pods labelled {RAY_POD_LABEL[0]}: "{RAY_POD_LABEL[1]}" and the KubeRay operator')


def protects_ray_pods(data: Any) -> bool:
    """Whether a document is a NetworkPolicy that limits ingress to the Ray pods."""
    if not isinstance(data, dict) or data.get("kind") != "NetworkPolicy" or not isinstance(data.get("spec"), dict):
        return False
    spec = data["spec"]
    selector = spec.get("podSelector")
    types = spec.get("policyTypes", ["Ingress"])
    if not isinstance(selector, dict) or not isinstance(types, list) or "Ingress" not in types:
        return False
    labels = selector.get("matchLabels") if isinstance(selector.get("matchLabels"), dict) else {}
    selects = (not labels and not selector.get("matchExpressions")) or labels.get(RAY_POD_LABEL[0]) == RAY_POD_LABEL[1]
    rules = spec.get("ingress", [])
    open_rule = not isinstance(rules, list) or any(
        not isinstance(r, dict) or not r.get("from") or any(_peer_admits_all(p) for p in r.get("from") or [])
        for r in rules)
    return selects and not open_rule


def check_policy_beside(docs: Iterable[Any], folder: Path, report: Report) -> None:
    """A Ray resource needs a NetworkPolicy protecting the Ray pods in its own file or folder."""
    from adc_dist.cluster.yamldoc import load_documents
    from adc_dist.errors import AdcError

    if any(protects_ray_pods(d) for d in docs):
        return
    for sibling in sorted(folder.glob("*.y*ml")):
        try:
            if any(protects_ray_pods(d.data) for d in load_documents(sibling)):
                return
        except AdcError:  # that file gets its own error when it is checked
            continue
    report.error(("kind",), "no NetworkPolicy beside this manifest limits who reaches the Ray pods: every pod "
                 "in the Kubernetes cluster can reach the head's job API (8265), client (10001) and GCS (6379)",
                 "add one (cluster/kuberay/networkpolicy.yaml) that admits only Ray pods and the KubeRay operator")
