"""Check Kubernetes manifests offline: KubeRay ``RayCluster`` / ``RayJob`` (``ray.io/v1``) and
the plain resources beside them.

No API server is reachable here, so this checks what the KubeRay CRDs and the kubelet would
reject or silently get wrong: required fields and misspelt ones, ``rayStartParams`` values
that are not strings, GPU resource names and whole-number GPU counts, requests != limits for
GPUs, rayVersion and image tags against the pinned Ray, services and ingresses that would
expose the dashboard, and the entrypoints against the real CLIs.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from adc_dist.inputs import files as inputs
from adc_dist.cluster import pins
from adc_dist.cluster.access import RAY_KINDS, check_cluster_auth, check_network_policy, env_auth_mode
from adc_dist.cluster.jobs import ClusterShape, check_command
from adc_dist.cluster.problems import Report
from adc_dist.cluster.yamldoc import Document
from adc_dist.errors import AdcError

CLUSTER_SPEC = {"headGroupSpec", "workerGroupSpecs", "rayVersion", "enableInTreeAutoscaling",
                "autoscalerOptions", "headServiceAnnotations", "suspend", "managedBy",
                "gcsFaultToleranceOptions", "upgradeStrategy", "authOptions"}
HEAD_GROUP = {"serviceType", "headService", "enableIngress", "rayStartParams", "template", "resources",
              "labels"}
WORKER_GROUP = {"groupName", "replicas", "minReplicas", "maxReplicas", "numOfHosts", "rayStartParams",
                "template", "scaleStrategy", "idleTimeoutSeconds", "suspend", "resources", "labels"}
AUTOSCALER_OPTIONS = {"resources", "image", "imagePullPolicy", "env", "envFrom", "volumeMounts",
                      "securityContext", "idleTimeoutSeconds", "upscalingMode", "version"}
JOB_SPEC = {"activeDeadlineSeconds", "backoffLimit", "rayClusterSpec", "submitterPodTemplate", "metadata",
            "clusterSelector", "submitterConfig", "managedBy", "deletionStrategy", "entrypoint",
            "runtimeEnvYAML", "jobId", "submissionMode", "entrypointResources", "entrypointNumCpus",
            "entrypointNumGpus", "ttlSecondsAfterFinished", "shutdownAfterJobFinishes", "suspend",
            "schedule"}
SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
RUNTIME_ENV_KEYS = {"working_dir", "py_modules", "pip", "uv", "conda", "env_vars", "container",
                    "image_uri", "excludes", "config", "nsight", "py_executable", "java_jars",
                    "worker_process_setup_hook", "mpi"}
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu")
QUANTITY = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(\d+(\.\d*)?|\.\d+)))?$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_PODS = 1_000  # replicas of a worker group: far above this project's 8, an extra zero is an error
SECRET_ENV = re.compile(r"(?i)(secret|token|password|passwd|access_key|api_key|private_key|credential)")


@dataclass
class PodFacts:
    gpus: int = 0  # GPUs per pod
    image: str | None = None
    auth_mode: str | None = None  # RAY_AUTH_MODE set by hand in the Ray container's env


def _unknown_keys(obj: dict[str, Any], allowed: set[str], report: Report, path: tuple, what: str) -> None:
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            report.error(path + (key,), f"unknown field {key!r} in {what}",
                         f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(sorted(allowed))}")


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _check_resources(res: Any, report: Report, path: tuple) -> int:
    """Container resources: names, quantities, whole GPUs, GPU requests == limits. Returns GPUs."""
    if not isinstance(res, dict):
        return 0
    gpus = 0
    for part in ("limits", "requests"):
        block = res.get(part)
        if not isinstance(block, dict):
            continue
        for name, qty in block.items():
            p = path + (part, name)
            if "gpu" in str(name).lower() and name not in GPU_RESOURCES:
                report.error(p, f"{name!r} is not a GPU resource name the device plugin knows: the pod "
                                "would get no GPU (or never schedule)", "write nvidia.com/gpu")
                continue
            if name in GPU_RESOURCES:
                n = _int(qty)
                if n is None or n < 0:
                    report.error(p, f"{name} must be a whole number of GPUs, got {qty!r}",
                                 "Kubernetes hands out whole GPUs; share one among sweep trials with a "
                                 "fractional GPU per trial in the tune command instead")
                elif part == "limits":
                    gpus = n
            elif not QUANTITY.match(str(qty)):
                report.error(p, f"{qty!r} is not a Kubernetes quantity", 'e.g. cpu: "8", memory: 32Gi')
    limits = res.get("limits") if isinstance(res.get("limits"), dict) else {}
    requests = res.get("requests") if isinstance(res.get("requests"), dict) else {}
    for name in GPU_RESOURCES:
        if name in requests and name not in limits:
            report.error(path + ("limits",), f"{name} is requested but has no limit: extended resources "
                                             "are set by limits", f"add {name} to limits")
        elif name in requests and _int(requests[name]) != _int(limits[name]):
            report.error(path + ("requests", name), f"{name} request {requests[name]!r} differs from its "
                         f"limit {limits[name]!r}: Kubernetes requires them equal", "make them equal")
    return gpus


def _check_image(image: Any, ray_version: str | None, report: Report, path: tuple) -> None:
    if not isinstance(image, str) or not image:
        report.error(path, "no image", f"image: rayproject/ray:{pins.ray_version()}-py311-gpu")
        return
    last = image.split("/")[-1]
    tag = last.split(":", 1)[1] if ":" in last else ""
    if "@sha256:" in image:
        return
    if not tag or tag.startswith(("latest", "nightly")):
        report.error(path, f"image {image!r} is not pinned", f"use rayproject/ray:{pins.ray_version()}-py311-gpu")
        return
    if image.split(":")[0].endswith(("rayproject/ray", "rayproject/ray-ml")):
        version = tag.split("-")[0]
        if ray_version and version != ray_version:
            report.error(path, f"image {image!r} runs Ray {version} but rayVersion is {ray_version}",
                         "make the image tag and rayVersion the same Ray release")
        elif pins.minor(version) != pins.minor(pins.ray_version()):
            report.error(path, f"image {image!r} runs Ray {version}; this project pins {pins.ray_version()}")
    else:
        report.warning(path, f"image {image!r} is not a rayproject image: its Ray version is not checked")


def _check_pod(template: Any, ray_version: str | None, report: Report, path: tuple, role: str) -> PodFacts:
    facts = PodFacts()
    spec = template.get("spec") if isinstance(template, dict) else None
    if not isinstance(spec, dict):
        report.error(path, f"the {role} needs a pod template with spec.containers", "see KubeRay's samples")
        return facts
    if spec.get("hostNetwork") is True:
        report.error(path + ("spec", "hostNetwork"), "hostNetwork puts Ray's ports (8265, 6379, ...) on the "
                     "node's own addresses", "remove hostNetwork")
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        report.error(path + ("spec", "containers"), f"the {role} has no containers")
        return facts
    for i, c in enumerate(containers):
        cp = path + ("spec", "containers", i)
        if not isinstance(c, dict):
            continue
        if not c.get("name"):
            report.error(cp, "container has no name")
        _check_image(c.get("image"), ray_version, report, cp + ("image",))
        if i == 0:
            facts.image = c.get("image")
            facts.gpus = _check_resources(c.get("resources"), report, cp + ("resources",))
            facts.auth_mode = env_auth_mode(c.get("env"))
        for j, port in enumerate(c.get("ports") if isinstance(c.get("ports"), list) else []):
            if isinstance(port, dict) and "hostPort" in port:
                report.error(cp + ("ports", j, "hostPort"), "hostPort exposes the port on the node's address",
                             "remove hostPort; use kubectl port-forward")
        for j, env in enumerate(c.get("env") if isinstance(c.get("env"), list) else []):
            if isinstance(env, dict) and SECRET_ENV.search(str(env.get("name", ""))) and "value" in env \
                    and env["value"] not in ("", None):
                report.error(cp + ("env", j, "value"), f"{env['name']} is given as a literal value",
                             "use valueFrom.secretKeyRef, or better workload identity (no key at all)")
    return facts


def _check_start_params(params: Any, report: Report, path: tuple) -> None:
    if params is None:
        return
    if not isinstance(params, dict):
        report.error(path, "rayStartParams must be a mapping of strings")
        return
    for key, value in params.items():
        if not isinstance(value, str):
            report.error(path + (key,), f"value {value!r} is not a string: the CRD types rayStartParams "
                         "as map[string]string, so the API server rejects the object", f'write {key}: "{value}"')


def check_cluster_spec(spec: Any, report: Report, path: tuple) -> ClusterShape | None:
    """A RayClusterSpec (of a RayCluster, or inline in a RayJob). Returns what jobs can count on."""
    if not isinstance(spec, dict):
        report.error(path, "must be a RayCluster spec (headGroupSpec, workerGroupSpecs, rayVersion)")
        return None
    _unknown_keys(spec, CLUSTER_SPEC, report, path, "the RayCluster spec")
    ray_version = spec.get("rayVersion")
    if ray_version is None:
        report.error(path + ("rayVersion",), "missing: KubeRay uses it to pick the job submitter's command",
                     f'rayVersion: "{pins.ray_version()}"')
    elif pins.minor(str(ray_version)) != pins.minor(pins.ray_version()):
        report.error(path + ("rayVersion",), f"{ray_version} but this project pins Ray {pins.ray_version()}",
                     f'rayVersion: "{pins.ray_version()}"')
    ray_version = str(ray_version) if ray_version is not None else None
    if isinstance(spec.get("autoscalerOptions"), dict):
        _unknown_keys(spec["autoscalerOptions"], AUTOSCALER_OPTIONS, report, path + ("autoscalerOptions",),
                      "autoscalerOptions")
    head = spec.get("headGroupSpec")
    total_gpus = 0
    modes: list[str | None] = []  # RAY_AUTH_MODE of each group's Ray container
    if not isinstance(head, dict):
        report.error(path + ("headGroupSpec",), "missing: a Ray cluster needs a head", "add headGroupSpec")
    else:
        hp = path + ("headGroupSpec",)
        _unknown_keys(head, HEAD_GROUP, report, hp, "headGroupSpec")
        if head.get("serviceType", "ClusterIP") != "ClusterIP":
            report.error(hp + ("serviceType",), f"{head['serviceType']} exposes the dashboard and job API "
                         "outside the cluster", "serviceType: ClusterIP, then kubectl port-forward")
        if head.get("enableIngress") is True:
            report.error(hp + ("enableIngress",), "an ingress exposes the dashboard and job API",
                         "enableIngress: false, then kubectl port-forward")
        svc = head.get("headService", {}).get("spec", {}) if isinstance(head.get("headService"), dict) else {}
        if isinstance(svc, dict) and svc.get("type") not in (None, "ClusterIP"):
            report.error(hp + ("headService", "spec", "type"), f"{svc.get('type')} exposes the head service",
                         "type: ClusterIP")
        _check_start_params(head.get("rayStartParams"), report, hp + ("rayStartParams",))
        facts = _check_pod(head.get("template"), ray_version, report, hp + ("template",), "head")
        total_gpus += facts.gpus
        modes.append(facts.auth_mode)
    groups = spec.get("workerGroupSpecs") or []
    if not isinstance(groups, list):
        report.error(path + ("workerGroupSpecs",), "must be a list of worker groups")
        groups = []
    names: set[str] = set()
    max_workers = 0
    per_node = total_gpus
    for i, g in enumerate(groups):
        gp = path + ("workerGroupSpecs", i)
        if not isinstance(g, dict):
            report.error(gp, "must be a mapping")
            continue
        _unknown_keys(g, WORKER_GROUP, report, gp, "a worker group")
        name = g.get("groupName")
        name = name if isinstance(name, str) or name is None else str(name)
        if not name:
            report.error(gp + ("groupName",), "missing", "groupName: gpu")
        elif name in names:
            report.error(gp + ("groupName",), f"groupName {name!r} is used twice")
        elif not DNS_NAME.match(str(name)):
            report.error(gp + ("groupName",), f"{name!r} is not a valid name (lower-case letters, digits, '-')")
        names.add(str(name))
        counts = {k: g.get(k) for k in ("minReplicas", "replicas", "maxReplicas")}
        for k, v in counts.items():
            if v is not None and (_int(v) is None or isinstance(v, str) or v < 0):
                report.error(gp + (k,), f"must be a whole number >= 0, got {v!r}")
                counts[k] = None
        lo, n, hi = counts["minReplicas"] or 0, counts["replicas"], counts["maxReplicas"]
        if hi is not None and lo > hi:
            report.error(gp + ("minReplicas",), f"minReplicas {lo} > maxReplicas {hi}",
                         "minReplicas must not exceed maxReplicas")
        if n is not None and (n < lo or (hi is not None and n > hi)):
            report.error(gp + ("replicas",), f"replicas {n} is outside [minReplicas {lo}, maxReplicas {hi}]")
        hosts = _int(g.get("numOfHosts", 1)) or 1
        _check_start_params(g.get("rayStartParams"), report, gp + ("rayStartParams",))
        facts = _check_pod(g.get("template"), ray_version, report, gp + ("template",), f"worker group {name}")
        modes.append(facts.auth_mode)
        for k, v in (("minReplicas", lo), ("replicas", n), ("maxReplicas", hi), ("numOfHosts", hosts)):
            if isinstance(v, int) and v > MAX_PODS:
                report.error(gp + (k,), f"{k} {v:,} is above the limit of {MAX_PODS:,} pods", f"lower {k}")
        reps = (hi if hi is not None else max(n or 0, lo)) * hosts
        max_workers += reps
        total_gpus += facts.gpus * reps
        per_node = max(per_node, facts.gpus if reps else 0)
    check_cluster_auth(spec, modes, report, path)
    return ClusterShape(max_gpus=total_gpus, max_gpus_per_node=per_node, multi_node=max_workers > 0,
                        storage_schemes=("s3", "gs"))


def _runtime_env_yaml(text: Any, report: Report, path: tuple) -> dict[str, Any]:
    if text is None:
        return {}
    if not isinstance(text, str):
        report.error(path, "runtimeEnvYAML must be a string holding YAML (use `runtimeEnvYAML: |`)")
        return {}
    try:
        env = inputs.load_yaml_text(text, "runtimeEnvYAML") or {}
    except AdcError as e:
        report.error(path, str(e))
        return {}
    if not isinstance(env, dict):
        report.error(path, "runtimeEnvYAML must hold a mapping (working_dir, pip, env_vars, ...)")
        return {}
    return env


def is_runtime_env(data: Any) -> bool:
    """A Ray runtime_env file (``ray job submit --runtime-env FILE``)?"""
    return isinstance(data, dict) and bool(data) and set(data) <= RUNTIME_ENV_KEYS


def check_runtime_env(env: dict[str, Any], gpus: int, report: Report, path: tuple) -> None:
    """A runtime env: Ray's own validation, then: installs torch and adc_dist, pinned."""
    from ray._private.runtime_env.validation import parse_and_validate_working_dir
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**env)
        if isinstance(env.get("working_dir"), str) and "://" in env["working_dir"]:
            parse_and_validate_working_dir(env["working_dir"])
    except (TypeError, ValueError, AssertionError) as e:
        report.error(path, f"Ray rejects this runtime env: {e}")
        return
    for key in env:
        if key not in RUNTIME_ENV_KEYS:
            close = difflib.get_close_matches(str(key), sorted(RUNTIME_ENV_KEYS), n=1)
            report.error(path, f"the runtime env has unknown key {key!r}",
                         f"did you mean {close[0]!r}?" if close else "see Ray's runtime_env docs")
    pip = env.get("pip")
    packages = pip.get("packages", []) if isinstance(pip, dict) else pip if isinstance(pip, list) else []
    packages = [p for p in packages if isinstance(p, str)] if isinstance(packages, list) else []
    options = pip.get("pip_install_options", []) if isinstance(pip, dict) else []
    options = " ".join(o for o in options if isinstance(o, str)) if isinstance(options, list) else ""
    adc = [p for p in packages if isinstance(p, str) and pins.installs_adc("install " + p)]
    torch = [p for p in packages if isinstance(p, str) and pins.torch_pin(p)]
    if pip is not None:
        if not adc:
            report.error(path, "the runtime env's pip does not install adc_dist",
                         f'add "adc_dist @ https://github.com/<org>/adc_dist/archive/refs/tags/v{pins.adc_version()}.tar.gz"')
        elif pins.adc_pin(adc[0]) is None:
            report.error(path, f"adc_dist is installed without a pinned version: {adc[0]}", "pin a release tag")
        if not torch:
            report.error(path, "the runtime env's pip does not pin torch", f"add torch=={pins.torch_version()}")
        elif gpus and (pins.torch_pin(torch[0])[1] == "cpu" or pins.torch_index(options) == "cpu"):
            report.error(path, "the cluster has GPUs but the job installs the CPU build of torch",
                         "use a CUDA build (e.g. torch==2.13.0+cu128 with the cu128 extra index)")
    return env


def _check_ray_job(spec: dict[str, Any], report: Report) -> None:
    path = ("spec",)
    _unknown_keys(spec, JOB_SPEC, report, path, "the RayJob spec")
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode not in SUBMISSION_MODES:
        report.error(path + ("submissionMode",), f"{mode!r} is not a submission mode",
                     f"one of {', '.join(SUBMISSION_MODES)}")
    has_cluster, has_selector = "rayClusterSpec" in spec, "clusterSelector" in spec
    if has_cluster == has_selector:
        report.error(path, "give exactly one of rayClusterSpec (a cluster for this job) and clusterSelector "
                           "(an existing RayCluster)")
    shape = ClusterShape(max_gpus=0, max_gpus_per_node=0, multi_node=True, storage_schemes=("s3", "gs"))
    if has_cluster:
        shape = check_cluster_spec(spec["rayClusterSpec"], report, path + ("rayClusterSpec",)) or shape
        if spec.get("shutdownAfterJobFinishes") is not True:
            report.warning(path + ("shutdownAfterJobFinishes",), "the job's cluster (and its GPUs) stays up "
                           "after the job ends", "shutdownAfterJobFinishes: true")
    else:
        # An existing cluster chosen by label: its GPUs are unknown here.
        shape = ClusterShape(max_gpus=10**6, max_gpus_per_node=0, multi_node=True, storage_schemes=("s3", "gs"))
    for key in ("ttlSecondsAfterFinished", "activeDeadlineSeconds", "backoffLimit"):
        if key in spec and (_int(spec[key]) is None or isinstance(spec[key], str) or spec[key] < 0):
            report.error(path + (key,), f"must be a whole number >= 0, got {spec[key]!r}")
    env = _runtime_env_yaml(spec.get("runtimeEnvYAML"), report, path + ("runtimeEnvYAML",))
    if env:
        check_runtime_env(env, shape.max_gpus, report, path + ("runtimeEnvYAML",))
    shape.working_dir = "working_dir" in env
    entry = spec.get("entrypoint")
    if not entry:
        if mode != "InteractiveMode":
            report.error(path + ("entrypoint",), "missing: the job would run nothing",
                         "entrypoint: python -m adc_dist.train ...")
        return
    if not isinstance(entry, str):
        report.error(path + ("entrypoint",), "must be a command string")
        return
    check_command(entry, shape, report, path + ("entrypoint",))


def check_manifest(doc: Document, report: Report) -> None:
    data = doc.data
    api, kind = data.get("apiVersion"), data.get("kind")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = meta.get("name") or meta.get("generateName")
    if not name:
        report.error(("metadata",), "no metadata.name (or generateName)")
    elif not DNS_NAME.match(str(name).rstrip("-")):
        report.error(("metadata", "name"), f"{name!r} is not a valid Kubernetes name "
                     "(lower-case letters, digits and '-')")
    if kind in RAY_KINDS or str(api).startswith("ray.io/"):
        if api != "ray.io/v1":
            report.error(("apiVersion",), f"{api!r}: KubeRay 1.x serves ray.io/v1 (v1alpha1 is gone)",
                         "apiVersion: ray.io/v1")
        if kind not in RAY_KINDS:
            close = difflib.get_close_matches(str(kind), RAY_KINDS, n=1)
            report.error(("kind",), f"{kind!r} is not a KubeRay kind",
                         f"did you mean {close[0]}?" if close else f"one of {', '.join(RAY_KINDS)}")
            return
    spec = data.get("spec")
    if kind == "RayCluster":
        check_cluster_spec(spec, report, ("spec",))
    elif kind == "RayJob":
        if not isinstance(spec, dict):
            report.error(("spec",), "missing")
            return
        _check_ray_job(spec, report)
    elif kind == "Secret":
        report.error(("kind",), "a Secret in the repository is a secret in the repository",
                     "create it with kubectl from your environment, or use workload identity")
    elif kind == "Service" and isinstance(spec, dict) and spec.get("type") in ("LoadBalancer", "NodePort"):
        report.error(("spec", "type"), f"a {spec['type']} service is reachable from outside the cluster",
                     "type: ClusterIP, then kubectl port-forward")
    elif kind == "NetworkPolicy":
        check_network_policy(data, report)
    elif kind == "Ingress":
        report.error(("kind",), "an Ingress exposes the service to the outside",
                     "reach the dashboard with kubectl port-forward")
