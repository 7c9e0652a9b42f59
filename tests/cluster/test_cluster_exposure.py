"""The job API is not reachable unauthenticated: every shipped cluster file runs Ray's token
authentication with the dashboard off the network (and KubeRay pods behind a NetworkPolicy),
and `cluster check` flags a copy that exposes it. Broken copies are made here, at run time,
in a copy of the folder (so a manifest's sibling NetworkPolicy is seen or removed on purpose);
hostile files (binary, wrong types, absurd sizes) give one line or a named error, never a
traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from adc_dist.cluster import check_file

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
LAUNCHERS = ["aws-gpu.yaml", "aws-cpu.yaml", "gcp-gpu.yaml"]
RAY_MANIFESTS = ["kuberay/raycluster-gpu.yaml", "kuberay/rayjob-train.yaml", "kuberay/rayjob-sweep.yaml"]


def errors(path: Path) -> list[str]:
    return [p.format() for p in check_file(path) if p.severity == "error"]


def copy_folder(tmp_path: Path) -> Path:
    dest = tmp_path / "cluster"
    shutil.copytree(CLUSTER, dest)
    return dest


def edited(tmp_path: Path, name: str, old: str, new: str) -> Path:
    folder = copy_folder(tmp_path)
    path = folder / name
    text = path.read_text()
    assert old in text, f"{old!r} is no longer in cluster/{name}: update the case"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_files_run_token_auth_with_the_dashboard_on_loopback(name):
    data = yaml.safe_load((CLUSTER / name).read_text())
    head, workers = " ".join(data["head_start_ray_commands"]), " ".join(data["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token" in head and "RAY_AUTH_MODE=token" in workers
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    assert data["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}


@pytest.mark.parametrize("name", RAY_MANIFESTS)
def test_kuberay_manifests_use_token_auth_and_a_network_policy_covers_them(name):
    doc = yaml.safe_load((CLUSTER / name).read_text())
    spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
    assert spec["authOptions"] == {"mode": "token"}
    assert "disabled" not in (CLUSTER / name).read_text()
    policy = yaml.safe_load((CLUSTER / "kuberay" / "networkpolicy.yaml").read_text())
    assert policy["spec"]["podSelector"] == {"matchLabels": {"ray.io/is-ray-node": "yes"}}
    assert errors(CLUSTER / name) == []


EXPOSED = [
    ("aws-gpu.yaml", "auth switched off", "RAY_AUTH_MODE=token\n    ray start --head",
     "RAY_AUTH_MODE=disabled\n    ray start --head", "RAY_AUTH_MODE=disabled switches Ray's token authentication off"),
    ("aws-gpu.yaml", "head without the token mode", "RAY_AUTH_MODE=token\n    ray start --head",
     "ray start --head", "runs without RAY_AUTH_MODE=token"),
    ("aws-cpu.yaml", "workers without the token mode", "RAY_AUTH_MODE=token\n    ray start --address",
     "ray start --address", "the workers start without RAY_AUTH_MODE=token"),
    ("gcp-gpu.yaml", "dashboard on every interface", "--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0",
     "--dashboard-host=0.0.0.0 puts the dashboard and job API on every interface"),
    ("gcp-gpu.yaml", "dashboard on every IPv6 interface", "--dashboard-host=127.0.0.1", "--dashboard-host ::",
     "--dashboard-host=:: puts"),
    ("aws-cpu.yaml", "token not shipped", 'file_mounts: {"~/.ray/auth_token": "~/.ray/auth_token"}',
     "file_mounts: {}", "nothing puts the token on them"),
    ("aws-gpu.yaml", "auth off through docker", "    - --ulimit nofile=65536:65536\n",
     "    - --ulimit nofile=65536:65536\n    - -e RAY_AUTH_MODE=disabled\n", "docker.run_options"),
    ("kuberay/raycluster-gpu.yaml", "no authOptions", "  authOptions:\n    mode: token\n", "",
     "no token authentication"),
    ("kuberay/rayjob-train.yaml", "authOptions disabled", "      mode: token\n", "      mode: disabled\n",
     "token authentication is switched off"),
    ("kuberay/rayjob-sweep.yaml", "RAY_AUTH_MODE=disabled in a container",
     "            - name: ray-head\n              image: rayproject/ray:2.60.0-py311\n",
     "            - name: ray-head\n              image: rayproject/ray:2.60.0-py311\n"
     "              env: [{name: RAY_AUTH_MODE, value: disabled}]\n", "token authentication is switched off"),
    ("kuberay/raycluster-gpu.yaml", "authOptions not a mapping", "  authOptions:\n    mode: token\n",
     "  authOptions: token\n", "authOptions: must be a mapping"),
    ("kuberay/networkpolicy.yaml", "policy open to every namespace",
     "          podSelector:\n            matchLabels:\n              app.kubernetes.io/name: kuberay-operator\n", "",
     "admits traffic from everywhere"),
    ("kuberay/networkpolicy.yaml", "policy open to the internet", "    - from:\n        - podSelector:\n",
     "    - from:\n        - ipBlock: {cidr: 0.0.0.0/0}\n        - podSelector:\n", "whole internet"),
    ("kuberay/networkpolicy.yaml", "rule without from", "    - from:\n        - namespaceSelector: {}\n",
     "    - ports: [{port: 8265}]\n    - from:\n        - namespaceSelector: {}\n", "admits traffic from everywhere"),
]


@pytest.mark.parametrize("name, what, old, new, expected", EXPOSED, ids=[f"{c[0]}: {c[1]}" for c in EXPOSED])
def test_cluster_check_flags_a_file_that_exposes_the_job_api(tmp_path, name, what, old, new, expected):
    path = edited(tmp_path, name, old, new)
    found = errors(path)
    assert any(expected in e for e in found), f"{what}: no message says {expected!r}; got:\n" + "\n".join(found)


@pytest.mark.parametrize("name", RAY_MANIFESTS)
def test_a_kuberay_manifest_without_its_network_policy_is_flagged(tmp_path, name):
    folder = copy_folder(tmp_path)
    (folder / "kuberay" / "networkpolicy.yaml").unlink()
    assert any("no NetworkPolicy beside this manifest" in e for e in errors(folder / name))
    # a policy that admits everyone does not count either
    (folder / "kuberay" / "open.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open}\n"
        "spec:\n  podSelector: {}\n  ingress: [{}]\n")
    assert any("no NetworkPolicy beside this manifest" in e for e in errors(folder / name))


ABSURD = [
    ("aws-gpu.yaml", "max_workers: 10\n", "max_workers: 100000000\n",
     "max_workers 100,000,000 is above the limit of 1,000"),
    ("aws-gpu.yaml", "    max_workers: 8\n", "    max_workers: 5000\n", "max_workers 5,000 is above the limit"),
    ("aws-cpu.yaml", "resources: {CPU: 8}", "resources: {CPU: 100000}", "CPU: 100,000 is above the limit of 1,024"),
    ("kuberay/raycluster-gpu.yaml", "maxReplicas: 8", "maxReplicas: 100000000", "maxReplicas 100,000,000 is above"),
    ("aws-gpu.yaml", "  cache_stopped_nodes: false\n",
     "  cache_stopped_nodes: false\n  security_group:\n    GroupName: adc\n    IpPermissions: [just-a-string, 7]\n",
     "each rule must be a mapping"),
    ("aws-gpu.yaml", "  cache_stopped_nodes: false\n",
     "  cache_stopped_nodes: false\n  security_group:\n    GroupName: adc\n    IpPermissions: {FromPort: 22}\n",
     "IpPermissions: must be a list"),
    ("aws-gpu.yaml", "  cache_stopped_nodes: false\n",
     "  cache_stopped_nodes: false\n  security_group:\n    GroupName: adc\n    IpPermissions:\n"
     "      - {FromPort: 22, ToPort: 22, IpProtocol: tcp, IpRanges: [x, {CidrIp: 10.0.0.0/8}]}\n", None),
]


@pytest.mark.parametrize("name, old, new, expected", ABSURD)
def test_absurd_sizes_and_wrong_types_are_named_not_a_traceback(tmp_path, name, old, new, expected):
    path = edited(tmp_path, name, old, new)
    found = errors(path)  # must not raise
    if expected is not None:
        assert any(expected in e for e in found), "\n".join(found)


@pytest.mark.parametrize("content", [bytes(range(256)) * 8, b"\x89PNG\r\n\x1a\n" + bytes(100), b"\xff\xfe\x00k"])
def test_a_binary_cluster_file_is_one_line_and_exit_2(tmp_path, content):
    path = tmp_path / "cluster.yaml"
    path.write_bytes(content)
    r = subprocess.run([sys.executable, "-m", "adc_dist.cluster", "check", str(path)], capture_output=True,
                       text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and len(lines[0]) <= 300, r.stderr
    assert str(path) in lines[0] and r.stdout == ""
