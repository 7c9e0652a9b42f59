"""Every file in cluster/ passes the offline checks, and a broken copy of each fails them
with a message that names the file, the line, the place in the document and the fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from adc_dist.cluster import check_file
from adc_dist.cluster.__main__ import main as cluster_main
from adc_dist.errors import AdcError

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
FILES = sorted(p.relative_to(CLUSTER).as_posix() for p in CLUSTER.rglob("*") if p.is_file())
PLACEHOLDER_BUCKET = "s3://CHANGE_ME-adc-bucket/adc_dist"


def errors(path: Path) -> list[str]:
    return [p.format() for p in check_file(path) if p.severity == "error"]


def test_the_folder_has_the_launcher_files_the_kuberay_manifests_and_the_readme():
    for name in ("aws-gpu.yaml", "gcp-gpu.yaml", "aws-cpu.yaml", "README.md", "kuberay/raycluster-gpu.yaml",
                 "kuberay/rayjob-train.yaml", "kuberay/rayjob-train-sharded.yaml", "kuberay/rayjob-sweep.yaml"):
        assert name in FILES, f"cluster/{name} is missing"


@pytest.mark.parametrize("name", FILES)
def test_every_file_in_cluster_passes_the_offline_checks(name):
    assert errors(CLUSTER / name) == []


def test_no_file_in_cluster_holds_a_secret_or_opens_the_dashboard_to_the_internet():
    from adc_dist.cluster.exposure import scan_text
    from adc_dist.cluster.problems import Report

    for name in FILES:
        text = (CLUSTER / name).read_text()
        report = Report(name)
        scan_text(text, report, placeholders=False)
        assert report.problems == [], [p.format() for p in report.problems]
        if name.endswith(".yaml"):
            for exposed in ("LoadBalancer", "NodePort", "kind: Ingress", "hostNetwork", "hostPort",
                            "enableIngress: true", "CidrIp"):
                assert exposed not in text, f"cluster/{name} mentions {exposed}"
    for name in ("kuberay/raycluster-gpu.yaml", "kuberay/rayjob-train.yaml", "kuberay/rayjob-train-sharded.yaml",
                 "kuberay/rayjob-sweep.yaml"):
        assert "serviceType: ClusterIP" in (CLUSTER / name).read_text()


# (file, what breaks, old text, new text, what the message must say). Each case replaces the
# first `old` (which must be there: a changed file fails loudly here, not silently).
APPEND = "\0append"  # `old` meaning: add `new` at the end of the file
BROKEN = [
    ("aws-gpu.yaml", "typo in a key", "idle_timeout_minutes: 10", "idle_timout_minutes: 10",
     "unknown key 'idle_timout_minutes'"),
    ("aws-gpu.yaml", "the typo's suggestion", "idle_timeout_minutes: 10", "idle_timout_minutes: 10",
     "did you mean 'idle_timeout_minutes'"),
    ("aws-gpu.yaml", "min > max", "    min_workers: 0\n    max_workers: 8", "    min_workers: 9\n    max_workers: 8",
     "min_workers 9 > max_workers 8"),
    ("aws-gpu.yaml", "half a GPU per node", "resources: {CPU: 4, GPU: 1}", "resources: {CPU: 4, GPU: 0.5}",
     "resources.GPU: must be a whole number, got 0.5"),
    ("aws-gpu.yaml", "GPU count off the instance type", "resources: {CPU: 48, GPU: 4}",
     "resources: {CPU: 48, GPU: 2}", "GPU: 2 but the instance type has 4"),
    ("aws-gpu.yaml", "missing head type", "head_node_type: head", "head_node_type: ray.head.default",
     "'ray.head.default' is not one of available_node_types"),
    ("aws-gpu.yaml", "image of another Ray", "image: rayproject/ray:2.60.0-py311-gpu",
     "image: rayproject/ray:2.9.3-py311-gpu", "runs Ray 2.9.3, but this project pins Ray"),
    ("aws-gpu.yaml", "unknown train flag", "--num_workers 4", "--num-wrkers 4",
     "python -m adc_dist.train has no flag --num-wrkers"),
    ("aws-gpu.yaml", "more GPU workers than GPUs", "--num_workers 4", "--num_workers 64", "needs 64 GPUs"),
    ("aws-gpu.yaml", "an access key", APPEND, "# aws_access_key_id: AKIAIOSFODNN7EXAMPLE\n",
     "looks like an AWS access key id"),
    ("aws-gpu.yaml", "dashboard open to the internet", "  cache_stopped_nodes: false\n",
     "  cache_stopped_nodes: false\n  security_group:\n    GroupName: adc\n    IpPermissions:\n"
     "      - {FromPort: 8265, ToPort: 8265, IpProtocol: tcp, IpRanges: [{CidrIp: 0.0.0.0/0}]}\n",
     "opens ports 8265-8265 to the whole internet"),
    ("aws-gpu.yaml", "CPU torch on GPU nodes", "whl/cu128", "whl/cpu", "installs the CPU build of torch"),
    ("aws-gpu.yaml", "adc_dist never installed",
     '  - pip install --no-cache-dir "adc_dist @ https://github.com/CHANGE_ME/adc_dist/archive/refs/tags/'
     'v0.1.0.tar.gz"\n', "", "never installs adc_dist"),
    ("aws-gpu.yaml", "no autoscaler", "    --autoscaling-config=~/ray_bootstrap_config.yaml\n", "",
     "no autoscaler would run"),
    ("aws-gpu.yaml", "results on a local path", f"--storage_path {PLACEHOLDER_BUCKET}/runs",
     "--storage_path runs", "--storage_path runs is a local path"),
    ("aws-gpu.yaml", "Ray's own validation", "  container_name: ray_container\n", "",
     "Ray's own validate_config rejects the file"),
    ("aws-gpu.yaml", "credentials mounted", 'file_mounts: {"~/.ray/auth_token"',
     'file_mounts: {"~/.aws": "~/.aws", "~/.ray/auth_token"', "credentials do not belong on the cluster"),
    ("aws-gpu.yaml", "autoscaler without boto3", '  - pip install --no-cache-dir "boto3>=1.34,<2"\n', "",
     "the head runs the autoscaler, which needs boto3"),
    ("gcp-gpu.yaml", "autoscaler without the GCP client",
     '  - pip install --no-cache-dir "google-api-python-client>=2,<3"\n', "",
     "which needs google-api-python-client"),
    ("gcp-gpu.yaml", "GPU VM without TERMINATE",
     "      scheduling: {onHostMaintenance: TERMINATE, automaticRestart: true}\n", "",
     "must set onHostMaintenance: TERMINATE"),
    ("gcp-gpu.yaml", "S3 storage on GCP", "storage: gs://", "storage: s3://", "reach gs://"),
    ("gcp-gpu.yaml", "accelerators off the machine type", "acceleratorType: nvidia-l4\n          acceleratorCount: 1",
     "acceleratorType: nvidia-l4\n          acceleratorCount: 2", "has 1 GPU(s), guestAccelerators asks for 2"),
    ("gcp-gpu.yaml", "GPU node without a GPU resource", "resources: {CPU: 8, GPU: 1}", "resources: {CPU: 8}",
     "no GPU count"),
    ("gcp-gpu.yaml", "fractional GPUs for a data-parallel trial", "--gpus-per-worker 0.25",
     "--gpus-per-worker 0.25 --num-workers 2", "takes a whole GPU"),
    ("aws-cpu.yaml", "GPU trials on a CPU cluster", "--tasks amazon-book-music",
     "--tasks amazon-book-music --gpus-per-worker 0.5", "on a cluster without GPUs"),
    ("aws-cpu.yaml", "--set of an unknown key", "--tasks amazon-book-music",
     "--tasks amazon-book-music --set epoch=1", "unknown config key 'epoch'"),
    ("aws-cpu.yaml", "search space that is not there", "tune_spaces/smoke.yaml", "tune_spaces/smoke2.yaml",
     "no such file in this repo"),
    ("aws-cpu.yaml", "unknown task", "--tasks amazon-book-music", "--tasks amazon-book-musik", "unknown task"),
    ("aws-cpu.yaml", "train value of the wrong type", "--epochs 3", "--epochs three", "expects int"),
    ("aws-cpu.yaml", "negative max_workers", "max_workers: 2\n", "max_workers: -1\n", "must be >= 0"),
    ("kuberay/raycluster-gpu.yaml", "old apiVersion", "apiVersion: ray.io/v1", "apiVersion: ray.io/v1alpha1",
     "KubeRay 1.x serves ray.io/v1"),
    ("kuberay/raycluster-gpu.yaml", "misspelt GPU resource", "limits: {cpu: \"8\", memory: 32Gi, nvidia.com/gpu: 1}",
     "limits: {cpu: \"8\", memory: 32Gi, nvidia.com/gpus: 1}", "'nvidia.com/gpus' is not a GPU resource name"),
    ("kuberay/raycluster-gpu.yaml", "half a GPU per pod", "limits: {cpu: \"8\", memory: 32Gi, nvidia.com/gpu: 1}",
     "limits: {cpu: \"8\", memory: 32Gi, nvidia.com/gpu: \"0.5\"}", "must be a whole number of GPUs"),
    ("kuberay/raycluster-gpu.yaml", "GPU request != limit", "requests: {cpu: \"8\", memory: 32Gi, nvidia.com/gpu: 1}",
     "requests: {cpu: \"8\", memory: 32Gi, nvidia.com/gpu: 2}", "differs from its limit"),
    ("kuberay/raycluster-gpu.yaml", "LoadBalancer head", "serviceType: ClusterIP", "serviceType: LoadBalancer",
     "exposes the dashboard and job API"),
    ("kuberay/raycluster-gpu.yaml", "non-string rayStartParams", 'num-cpus: "0"', "num-cpus: 0",
     "is not a string"),
    ("kuberay/raycluster-gpu.yaml", "rayVersion of another Ray", 'rayVersion: "2.60.0"', 'rayVersion: "2.46.0"',
     "2.46.0 but this project pins Ray"),
    ("kuberay/raycluster-gpu.yaml", "minReplicas > maxReplicas", "minReplicas: 0", "minReplicas: 9",
     "minReplicas 9 > maxReplicas 8"),
    ("kuberay/raycluster-gpu.yaml", "misspelt field", "  workerGroupSpecs:", "  workerGroupSpec:",
     "unknown field 'workerGroupSpec'"),
    ("kuberay/raycluster-gpu.yaml", "unpinned image", "image: rayproject/ray:2.60.0-py311-gpu",
     "image: rayproject/ray:latest-gpu", "is not pinned"),
    ("kuberay/raycluster-gpu.yaml", "literal secret in env", "            - name: ray-worker\n",
     "            - name: ray-worker\n              env: [{name: AWS_SECRET_ACCESS_KEY, value: notarealvalue}]\n",
     "is given as a literal value"),
    ("kuberay/raycluster-gpu.yaml", "hostNetwork", "        serviceAccountName: adc-dist-ray\n",
     "        serviceAccountName: adc-dist-ray\n        hostNetwork: true\n", "hostNetwork puts Ray's ports"),
    ("kuberay/rayjob-train.yaml", "unknown train flag", "--use_gpu", "--use-gpus",
     "python -m adc_dist.train has no flag --use-gpus"),
    ("kuberay/rayjob-train.yaml", "more workers than GPUs", "--num_workers 4", "--num_workers 6", "needs 6 GPUs"),
    ("kuberay/rayjob-train.yaml", "working_dir archive Ray cannot unpack", "tags/v0.1.0.zip", "tags/v0.1.0.rar",
     "Ray rejects this runtime env"),
    ("kuberay/rayjob-train.yaml", "misspelt RayJob field", "shutdownAfterJobFinishes:", "shutdownAfterJobFinish:",
     "did you mean 'shutdownAfterJobFinishes'"),
    ("kuberay/rayjob-train.yaml", "torch not pinned", "        - torch==2.13.0+cu128\n", "", "does not pin torch"),
    ("kuberay/rayjob-train.yaml", "CPU torch on a GPU cluster", "torch==2.13.0+cu128", "torch==2.13.0+cpu",
     "installs the CPU build of torch"),
    ("kuberay/rayjob-train.yaml", "results on a local path", f"--storage_path {PLACEHOLDER_BUCKET}/runs",
     "--storage_path runs", "is a local path"),
    ("kuberay/rayjob-train-sharded.yaml", "unknown sharding", "x4 --embedding_sharding row_wise",
     "x4 --embedding_sharding rowwise", "embedding_sharding must be one of"),
    ("kuberay/rayjob-train-sharded.yaml", "more workers than GPUs", "--num_workers 8", "--num_workers 9",
     "needs 9 GPUs"),
    ("kuberay/rayjob-sweep.yaml", "relative space without a working_dir",
     "    working_dir: https://github.com/CHANGE_ME/adc_dist/archive/refs/tags/v0.1.0.zip\n", "",
     "has no working directory"),
    ("kuberay/rayjob-sweep.yaml", "unknown submission mode", "  shutdownAfterJobFinishes: true\n",
     "  shutdownAfterJobFinishes: true\n  submissionMode: K8sJob\n", "is not a submission mode"),
    ("kuberay/rayjob-sweep.yaml", "unknown tune flag", "--gpus-per-worker", "--gpu-per-worker",
     "python -m adc_dist.tune has no flag --gpu-per-worker"),
    ("kuberay/rayjob-sweep.yaml", "no entrypoint", "  entrypoint: >-\n", "  entrypont: >-\n",
     "entrypoint: missing"),
    ("kuberay/runtime-env-gpu.yaml", "misspelt pip field", "  packages:", "  pakages:",
     "Ray rejects this runtime env"),
    ("kuberay/runtime-env-gpu.yaml", "adc_dist not pinned", "archive/refs/tags/v0.1.0.tar.gz", "archive/main.tar.gz",
     "without a pinned version"),
    ("kuberay/networkpolicy.yaml", "a rule open to every pod", "    - from:\n        - podSelector:\n",
     "    - from:\n        - podSelector: {}\n        - podSelector:\n", "admits traffic from everywhere"),
    ("kuberay/serviceaccount.yaml", "a Secret beside it", APPEND,
     "---\napiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {password: hunter2hunter2}\n",
     "a Secret in the repository"),
    ("kuberay/serviceaccount.yaml", "invalid name", "name: adc-dist-ray", "name: ADC_Dist_Ray",
     "not a valid Kubernetes name"),
    ("README.md", "a token in the docs", APPEND, "\nexport GH_TOKEN=ghp_0123456789abcdefghijABCDEFGHIJ0123456789\n",
     "looks like a GitHub token"),
    ("README.md", "an open address range in the docs", APPEND, "\nOpen 8265 to 0.0.0.0/0 for convenience.\n",
     "to the whole internet"),
]


def test_every_file_in_cluster_has_a_broken_copy_case():
    assert sorted({case[0] for case in BROKEN}) == FILES


@pytest.mark.parametrize("name, what, old, new, expected", BROKEN, ids=[f"{c[0]}: {c[1]}" for c in BROKEN])
def test_a_broken_copy_fails_with_a_readable_message(tmp_path, name, what, old, new, expected):
    text = (CLUSTER / name).read_text()
    if old == APPEND:
        broken = text + new
    else:
        assert old in text, f"the case {what!r} no longer applies to cluster/{name}: update it"
        broken = text.replace(old, new, 1)
    copy = tmp_path / name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(broken)
    found = errors(copy)
    assert found, f"broken copy ({what}) passed the checks"
    hits = [e for e in found if expected in e]
    assert hits, f"no message says {expected!r}; got:\n" + "\n".join(found)
    # Readable: it starts with the file and a line number, and says what to do where it can.
    assert hits[0].startswith(f"{copy}:") and hits[0].split(":")[1].isdigit(), hits[0]


def test_cli_exit_codes_clean_broken_strict_and_missing(tmp_path, capsys):
    assert cluster_main(["check", str(CLUSTER)]) == 0
    assert "0 error(s)" in capsys.readouterr().out
    # The shipped files still hold CHANGE_ME: --strict (the check before `ray up`) refuses them.
    assert cluster_main(["check", "--strict", str(CLUSTER / "aws-gpu.yaml")]) == 1
    assert "placeholder CHANGE_ME" in capsys.readouterr().out
    broken = tmp_path / "aws-gpu.yaml"
    broken.write_text((CLUSTER / "aws-gpu.yaml").read_text().replace("GPU: 1}", "GPU: 0.5}"))
    assert cluster_main(["check", "-q", str(broken)]) == 1
    out = capsys.readouterr().out
    assert "resources.GPU: must be a whole number, got 0.5" in out and "fix:" in out


def test_python_dash_m_prints_one_line_and_exits_2_for_a_missing_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "adc_dist.cluster", "check", str(tmp_path / "nope.yaml")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope.yaml'}: no such file or directory"]


def test_a_file_that_is_not_yaml_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: [unclosed\n")
    with pytest.raises(AdcError, match="not valid YAML"):  # run_cli prints it as one line, exit 2
        check_file(bad)


@pytest.mark.parametrize("command, module, flags", [
    ("ray job submit --address http://127.0.0.1:8265 --working-dir . -- python -m adc_dist.train --d 16",
     "adc_dist.train", ["--d", "16"]),
    ("cd /srv && /opt/conda/bin/python3 -m adc_dist.tune --space=tune_spaces/smoke.yaml; echo done",
     "adc_dist.tune", ["--space=tune_spaces/smoke.yaml"]),
    ("adc-train --num-workers=2 --use_gpu", "adc_dist.train", ["--num-workers=2", "--use_gpu"]),
])
def test_entrypoints_are_found_in_submit_wrappers_shell_lines_and_console_scripts(command, module, flags):
    from adc_dist.cluster.entrypoints import check_invocation, find_invocations

    (inv,) = find_invocations(command)
    assert (inv.module, inv.argv) == (module, flags)
    assert check_invocation(inv) == []  # both flag spellings and --flag=value are what the CLIs accept


def _paths(node, prefix=()):
    if prefix:
        yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, value in items:
        yield from _paths(value, prefix + (key,))


def test_the_checker_reports_values_of_the_wrong_type_instead_of_crashing(tmp_path):
    """A user's file may hold anything anywhere: every check must cope (seeded, ~100 cases)."""
    import copy
    import random

    import yaml

    rng = random.Random(0)
    junk = [None, "x", -1, 0.5, [], {}, [1, "a"], {"a": None}, True]
    for name in [f for f in FILES if f.endswith(".yaml")]:
        docs = list(yaml.safe_load_all((CLUSTER / name).read_text()))
        for _ in range(12):
            mutated = copy.deepcopy(docs)
            doc = rng.choice(mutated)
            path = rng.choice(list(_paths(doc)))
            parent = doc
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = rng.choice(junk)
            copy_path = tmp_path / Path(name).name
            copy_path.write_text(yaml.safe_dump_all(mutated))
            try:
                check_file(copy_path)
            except AdcError:
                pass  # e.g. the document became empty: one clear message, exit 2
