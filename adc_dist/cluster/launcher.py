"""Check a Ray cluster launcher YAML (``ray up FILE``) offline.

1. The JSON schema shipped inside the installed ray package (typos, unknown keys, types:
   ``GPU: 0.5`` is not an integer).
2. What the schema cannot see but breaks a launch or a run: the head type exists, min <= max,
   node counts and resources within sane limits, GPU counts match the instance type, GCP GPUs
   have onHostMaintenance TERMINATE, every node installs ray, torch and adc_dist at pinned
   versions (torch first), start commands that run the autoscaler, token authentication on
   every node with the dashboard and job API off the network (:func:`check_auth`),
   credentials not shipped by file_mounts, the declared shared storage and the job commands
   (``metadata.adc_dist``).
3. Ray's own ``prepare_config`` + ``validate_config`` (private API: defaults merged, then checked).
Steps 1 and 3 are ``adc_dist.cluster.schema``.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from adc_dist.cluster import pins
from adc_dist.cluster.access import check_auth, check_security_group
from adc_dist.cluster.access import commands as _commands
from adc_dist.cluster.jobs import ClusterShape, check_command
from adc_dist.cluster.problems import Report
from adc_dist.cluster.schema import ray_own_validation, schema_problems
from adc_dist.cluster.yamldoc import Document

# Whole GPUs per instance type (the ones people use for this; others are not checked).
AWS_GPUS = {
    "g4dn.xlarge": 1, "g4dn.2xlarge": 1, "g4dn.4xlarge": 1, "g4dn.8xlarge": 1, "g4dn.16xlarge": 1,
    "g4dn.12xlarge": 4, "g4dn.metal": 8,
    "g5.xlarge": 1, "g5.2xlarge": 1, "g5.4xlarge": 1, "g5.8xlarge": 1, "g5.16xlarge": 1,
    "g5.12xlarge": 4, "g5.24xlarge": 4, "g5.48xlarge": 8,
    "g6.xlarge": 1, "g6.2xlarge": 1, "g6.4xlarge": 1, "g6.8xlarge": 1, "g6.16xlarge": 1,
    "g6.12xlarge": 4, "g6.24xlarge": 4, "g6.48xlarge": 8,
    "g6e.xlarge": 1, "g6e.2xlarge": 1, "g6e.12xlarge": 4, "g6e.24xlarge": 4, "g6e.48xlarge": 8,
    "p3.2xlarge": 1, "p3.8xlarge": 4, "p3.16xlarge": 8,
    "p4d.24xlarge": 8, "p4de.24xlarge": 8, "p5.48xlarge": 8,
}
AWS_VCPUS = {
    "m5.large": 2, "m5.xlarge": 4, "m5.2xlarge": 8, "m5.4xlarge": 16, "m5.8xlarge": 32,
    "m6i.large": 2, "m6i.xlarge": 4, "m6i.2xlarge": 8, "m6i.4xlarge": 16,
    "g5.xlarge": 4, "g5.2xlarge": 8, "g5.4xlarge": 16, "g5.12xlarge": 48, "g5.48xlarge": 192,
    "g6.xlarge": 4, "g6.12xlarge": 48, "p4d.24xlarge": 96, "p5.48xlarge": 192,
}
# GCP machine types with GPUs built in: machine type -> (accelerator type, count).
GCP_BUILTIN_GPUS = {
    **{f"g2-standard-{n}": ("nvidia-l4", 1) for n in (4, 8, 12, 16, 32)},
    "g2-standard-24": ("nvidia-l4", 2), "g2-standard-48": ("nvidia-l4", 4), "g2-standard-96": ("nvidia-l4", 8),
    "a2-highgpu-1g": ("nvidia-tesla-a100", 1), "a2-highgpu-2g": ("nvidia-tesla-a100", 2),
    "a2-highgpu-4g": ("nvidia-tesla-a100", 4), "a2-highgpu-8g": ("nvidia-tesla-a100", 8),
    "a2-megagpu-16g": ("nvidia-tesla-a100", 16),
    "a2-ultragpu-1g": ("nvidia-a100-80gb", 1), "a2-ultragpu-2g": ("nvidia-a100-80gb", 2),
    "a2-ultragpu-4g": ("nvidia-a100-80gb", 4), "a2-ultragpu-8g": ("nvidia-a100-80gb", 8),
    "a3-highgpu-8g": ("nvidia-h100-80gb", 8),
}
GCP_VCPUS = {"a2-highgpu-1g": 12, "a2-highgpu-2g": 24, "a2-highgpu-4g": 48, "a2-highgpu-8g": 96}
STORAGE_SCHEMES = {"aws": ("s3",), "gcp": ("gs",), "azure": ("abfss", "az")}
# Local files that must never be copied onto cluster nodes (instance roles replace them).
# (Ray's own auth token, ~/.ray/auth_token, is meant to be on every node: see check_auth.)
CREDENTIAL_PATHS = re.compile(r"(\.aws(/|$)|\.ssh(/|$)|\.config/gcloud|\.kube(/|$)|"
                              r"credentials|\.pem$|\.p12$|\.key$|service[-_]?account.*\.json$)")
RESOURCE_NAMES = ("CPU", "GPU", "memory", "object_store_memory")
# Sanity limits: far above this project's clusters (10 workers, 8 GPUs a node), low enough that
# an extra zero or a pasted number (max_workers: 100000000) is an error with the limit named.
MAX_NODES = 1_000
MAX_NODE_RESOURCES = {"CPU": 1_024, "GPU": 64}


def _image_of(data: dict[str, Any], node_type: dict[str, Any], head: bool) -> str | None:
    docker = data.get("docker") if isinstance(data.get("docker"), dict) else {}
    if not docker:
        return None
    own = node_type.get("docker", {}) if isinstance(node_type.get("docker"), dict) else {}
    image = (docker.get("head_image") or docker.get("image") if head else
             own.get("worker_image") or docker.get("worker_image") or docker.get("image"))
    return image if isinstance(image, str) else None  # another type: the schema reported it


def _check_image(image: str, gpu: bool, report: Report, path: tuple) -> None:
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
    if not tag or tag.startswith("latest") or tag.startswith("nightly"):
        report.error(path, f"image {image!r} is not pinned to a Ray version",
                     f"use e.g. rayproject/ray:{pins.ray_version()}-py311-{'gpu' if gpu else 'cpu'}")
        return
    if not repo.endswith("rayproject/ray") and not repo.endswith("rayproject/ray-ml"):
        report.warning(path, f"image {image!r} is not a rayproject image: its Ray version is not checked")
        return
    version = tag.split("-")[0]
    if pins.minor(version) != pins.minor(pins.ray_version()):
        report.error(path, f"image {image!r} runs Ray {version}, but this project pins Ray "
                           f"{pins.ray_version()} (clients and cluster must match)",
                     f"use rayproject/ray:{pins.ray_version()}-{'-'.join(tag.split('-')[1:]) or 'py311'}")
    elif version != pins.ray_version():
        report.warning(path, f"image {image!r} runs Ray {version}; the tests ran {pins.ray_version()}")
    if gpu and not re.search(r"-(gpu|cu\d+)", tag):
        report.error(path, f"node type has GPUs but image {image!r} is a CPU image",
                     f"use rayproject/ray:{version}-py311-gpu (or a -cuXXX tag)")


def _check_setup(cmds: list[str], gpu: bool, has_image: bool, report: Report, path: tuple,
                 who: str) -> None:
    """The setup a node runs installs torch then adc_dist, both pinned (and ray without docker)."""
    joined = "\n".join(cmds)
    adc_at = next((i for i, c in enumerate(cmds) if pins.installs_adc(c)), None)
    torch_at = next((i for i, c in enumerate(cmds) if pins.torch_pin(c) or re.search(r"\btorch\b", c)), None)
    if adc_at is None:
        report.error(path, f"the setup of {who} never installs adc_dist",
                     'add e.g. pip install "adc_dist @ https://github.com/<org>/adc_dist/archive/refs/tags/'
                     f'v{pins.adc_version()}.tar.gz"')
    else:
        pinned = pins.adc_pin(cmds[adc_at])
        if pinned is None:
            report.error(path, f"the setup of {who} installs adc_dist without pinning a version: "
                               f"`{cmds[adc_at]}`",
                         f"pin a release tag, e.g. .../archive/refs/tags/v{pins.adc_version()}.tar.gz")
        elif pinned != pins.adc_version():
            report.warning(path, f"the setup of {who} installs adc_dist {pinned}; this checkout is "
                                 f"{pins.adc_version()}")
    if torch_at is None:
        report.error(path, f"the setup of {who} never installs torch, so pip would pick whatever "
                           "build adc_dist's range allows",
                     f"install torch=={pins.torch_version()} from the CUDA index before adc_dist")
    else:
        pin = pins.torch_pin(cmds[torch_at])
        index = pins.torch_index(cmds[torch_at])
        if pin is None:
            report.error(path, f"the setup of {who} installs torch without an exact version: "
                               f"`{cmds[torch_at]}`",
                         f"use torch=={pins.torch_version()}")
        elif pin[0] != pins.torch_version():
            report.warning(path, f"the setup of {who} installs torch {pin[0]}; the tests ran "
                                 f"{pins.torch_version()}")
        if gpu and (index == "cpu" or (pin and pin[1] == "cpu")):
            report.error(path, f"the setup of {who} (GPU nodes) installs the CPU build of torch",
                         "use --index-url https://download.pytorch.org/whl/cu128 (or the CUDA tag you need)")
        if adc_at is not None and torch_at > adc_at:
            report.error(path, f"the setup of {who} installs adc_dist before torch: pip then resolves "
                               "torch from PyPI and the later pinned install may not replace it",
                         "install torch first")
    if not has_image and not re.search(r"\bray\[[^\]]*\]\s*==\s*" + re.escape(pins.ray_version()), joined):
        report.error(path, f"{who} runs no docker image and its setup does not pip install "
                           f"ray[default,train,tune]=={pins.ray_version()}",
                     "use a rayproject/ray image (docker.image) or install the pinned ray in setup_commands")


def _check_start_commands(data: dict[str, Any], report: Report) -> None:
    head = " ".join(_commands(data.get("head_start_ray_commands")))
    workers = " ".join(_commands(data.get("worker_start_ray_commands")))
    port = "6379"
    if "head_start_ray_commands" in data:
        if not re.search(r"ray start\b.*--head", head):
            report.error(("head_start_ray_commands",), "no `ray start --head` among the head's start commands")
        elif "--autoscaling-config=~/ray_bootstrap_config.yaml" not in head.replace(" --autoscaling-config ", " --autoscaling-config="):
            report.error(("head_start_ray_commands",), "`ray start --head` lacks "
                         "--autoscaling-config=~/ray_bootstrap_config.yaml: no autoscaler would run, "
                         "so no worker node would ever start",
                         "add --autoscaling-config=~/ray_bootstrap_config.yaml")
        m = re.search(r"--port[= ](\d+)", head)
        port = m.group(1) if m else port
    if "worker_start_ray_commands" in data:
        m = re.search(r"ray start\b.*--address[= ]\$?\{?RAY_HEAD_IP\}?:(\d+)", workers)
        if not m:
            report.error(("worker_start_ray_commands",), "no `ray start --address=$RAY_HEAD_IP:<port>` among "
                         "the workers' start commands", f"use ray start --address=$RAY_HEAD_IP:{port}")
        elif m.group(1) != port:
            report.error(("worker_start_ray_commands",), f"workers join port {m.group(1)} but the head "
                         f"listens on {port}", f"use --address=$RAY_HEAD_IP:{port}")


def _gpus_of(provider: str, name: str, nt: dict[str, Any], report: Report) -> int:
    """The node type's GPUs (from resources, else the instance type), checking they agree."""
    path = ("available_node_types", name)
    res = nt.get("resources") if isinstance(nt.get("resources"), dict) else {}
    nc = nt.get("node_config") if isinstance(nt.get("node_config"), dict) else {}
    for key in res:
        if key not in RESOURCE_NAMES and (key.lower() in ("cpu", "gpu", "gpus", "cpus") or
                                          difflib.get_close_matches(key, RESOURCE_NAMES, n=1, cutoff=0.8)):
            close = difflib.get_close_matches(key.upper().rstrip("S"), RESOURCE_NAMES, n=1) or ["GPU"]
            report.error(path + ("resources", key), f"resource {key!r} is a custom resource, not Ray's "
                         f"{close[0]} (names are case-sensitive)", f"write {close[0]}")
    declared = res.get("GPU")
    declared = declared if isinstance(declared, int) else None
    actual = None
    if provider == "aws":
        itype = nc.get("InstanceType") if isinstance(nc.get("InstanceType"), str) else None
        actual = AWS_GPUS.get(itype, 0 if isinstance(itype, str) and re.match(r"[mcrt]\d", itype) else None)
        cpus, want = res.get("CPU"), AWS_VCPUS.get(itype)
        if isinstance(cpus, int) and want and cpus > want:
            report.warning(path + ("resources", "CPU"), f"CPU: {cpus} but {itype} has {want} vCPUs")
        if not itype and "LaunchTemplate" not in nc and "InstanceType" not in nc:
            report.error(path + ("node_config",), "no InstanceType", "set e.g. InstanceType: g5.xlarge")
    elif provider == "gcp":
        mtype = nc.get("machineType") if isinstance(nc.get("machineType"), str) else None
        accels = nc.get("guestAccelerators") if isinstance(nc.get("guestAccelerators"), list) else []
        count = sum(a.get("acceleratorCount", 0) for a in accels
                    if isinstance(a, dict) and isinstance(a.get("acceleratorCount", 0), int))
        builtin = GCP_BUILTIN_GPUS.get(mtype)
        if builtin:
            for i, a in enumerate(accels):
                if isinstance(a, dict) and a.get("acceleratorType") not in (None, builtin[0]):
                    report.error(path + ("node_config", "guestAccelerators", i, "acceleratorType"),
                                 f"{mtype} comes with {builtin[0]}, not {a.get('acceleratorType')}",
                                 f"write acceleratorType: {builtin[0]}")
            if accels and count != builtin[1]:
                report.error(path + ("node_config", "guestAccelerators"),
                             f"{mtype} has {builtin[1]} GPU(s), guestAccelerators asks for {count}",
                             f"acceleratorCount: {builtin[1]}")
            count = builtin[1]
        actual = count
        if "CPU" not in res:
            report.error(path + ("resources",), "no CPU count: on GCP the launcher does not detect a "
                         "node's resources, so Ray would schedule nothing there",
                         f"set resources: {{CPU: <vCPUs of {mtype}>{', GPU: %d' % count if count else ''}}}")
        elif isinstance(res.get("CPU"), int) and GCP_VCPUS.get(mtype) and res["CPU"] > GCP_VCPUS[mtype]:
            report.warning(path + ("resources", "CPU"), f"CPU: {res['CPU']} but {mtype} has {GCP_VCPUS[mtype]} vCPUs")
        if count:
            sched = nc.get("scheduling")
            items = sched if isinstance(sched, list) else [sched] if isinstance(sched, dict) else []
            if not any(isinstance(s, dict) and s.get("onHostMaintenance") == "TERMINATE" for s in items):
                report.error(path + ("node_config", "scheduling"), "GPU VMs on GCP must set "
                             "onHostMaintenance: TERMINATE, or instance creation fails",
                             "scheduling: {onHostMaintenance: TERMINATE}")
    if declared is not None and actual is not None and declared != actual:
        report.error(path + ("resources", "GPU"), f"GPU: {declared} but the instance type has {actual}",
                     f"GPU: {actual}")
    if provider == "gcp" and actual and declared is None:
        report.error(path + ("resources",), f"no GPU count: Ray would not schedule GPU work on these "
                     f"{actual}-GPU nodes", f"add GPU: {actual} to resources")
    return declared if declared is not None else (actual or 0)


def check_launcher(doc: Document, report: Report) -> None:
    data = doc.data
    if not isinstance(data, dict):
        report.error((), "a cluster launcher file must be a mapping")
        return
    schema_errors = schema_problems(data, report)
    provider = data.get("provider", {}).get("type") if isinstance(data.get("provider"), dict) else None
    types = data.get("available_node_types") if isinstance(data.get("available_node_types"), dict) else {}
    head = data.get("head_node_type")
    head = head if isinstance(head, str) or head is None else str(head)  # a wrong type: the schema said so
    if not types:
        report.error(("available_node_types",), "no node types: the launcher would fall back to the "
                     "provider's defaults (CPU-only, not this project's setup)",
                     "declare a head type and at least one worker type")
    if head is None:
        report.error(("head_node_type",), "missing", f"name one of: {', '.join(types) or '(none)'}")
    elif types and head not in types:
        close = difflib.get_close_matches(str(head), list(types), n=1)
        report.error(("head_node_type",), f"{head!r} is not one of available_node_types "
                     f"({', '.join(types)})", f"did you mean {close[0]!r}?" if close else "add that node type")
    for key, default in (("max_workers", 2), ("idle_timeout_minutes", 5)):
        if key not in data:
            report.warning((key,), f"not set: Ray's default ({default}) applies", f"set {key} explicitly")
    max_workers = data.get("max_workers", 2)
    global_max = max_workers if isinstance(max_workers, int) else 0
    sum_min = sum_max = 0
    max_gpus = per_node = 0
    images: dict[tuple, tuple] = {}  # (image, has GPUs) -> where it was first seen
    setups: dict[tuple, list[str]] = {}  # (commands, has GPUs, has image, path) -> node types
    for name, nt in types.items():
        if not isinstance(nt, dict):
            continue
        path = ("available_node_types", name)
        lo, hi = nt.get("min_workers", 0), nt.get("max_workers", None if name != head else 0)
        if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
            report.error(path + ("min_workers",), f"min_workers {lo} > max_workers {hi}",
                         "min_workers must not exceed max_workers")
        gpus = _gpus_of(str(provider), name, nt, report) if provider else 0
        per_node = max(per_node, gpus)
        if name != head:
            sum_min += lo if isinstance(lo, int) else 0
            cap = hi if isinstance(hi, int) else global_max
            sum_max += cap
            max_gpus += gpus * min(cap, global_max)
        else:
            max_gpus += gpus
        is_head = name == head
        image = _image_of(data, nt, is_head)
        if image:
            own = (nt.get("docker") or {}).get("worker_image") if isinstance(nt.get("docker"), dict) else None
            images.setdefault((image, gpus > 0), path + ("docker", "worker_image") if own else ("docker",))
        if is_head:
            cmds = _commands(data.get("setup_commands")) + _commands(data.get("head_setup_commands"))
        elif "worker_setup_commands" in nt:
            cmds = _commands(nt["worker_setup_commands"])
        else:
            cmds = _commands(data.get("setup_commands")) + _commands(data.get("worker_setup_commands"))
        where = path + ("worker_setup_commands",) if "worker_setup_commands" in nt else ("setup_commands",)
        setups.setdefault((tuple(cmds), gpus > 0, image is not None, where), []).append(
            "the head" if is_head else name)
    for (image, gpu), where in images.items():
        _check_image(image, gpu, report, where)
    for (cmds, gpu, has_image, where), names in setups.items():
        who = ("node type " if names[0] != "the head" and len(names) == 1 else
               "node types " if names[0] != "the head" else "") + ", ".join(names)
        _check_setup(list(cmds), gpu, has_image, report, where, who)
    if isinstance(max_workers, int):
        if sum_min > max_workers:
            report.error(("max_workers",), f"max_workers {max_workers} is below the sum of the worker "
                         f"types' min_workers ({sum_min})", f"raise max_workers to at least {sum_min}")
        if types and sum_max > max_workers:
            report.warning(("max_workers",), f"the worker types allow {sum_max} nodes together but the "
                           f"cluster stops at max_workers {max_workers}",
                           f"raise max_workers to {sum_max} or lower the types' max_workers")
    _check_autoscaler_sdk(data, provider, report)
    _check_start_commands(data, report)
    _check_limits(data, types, report)
    check_auth(data, report)
    _check_file_mounts(data, report)
    check_security_group(data, report)
    _check_metadata(data, provider, max_gpus, per_node, sum_max > 0, report)
    if schema_errors == 0 and head in types:
        ray_own_validation(data, report)


# What the autoscaler on the head imports to start nodes; Ray's defaults.yaml installs it in
# head_setup_commands, so a file that sets head_setup_commands must install it itself.
AUTOSCALER_SDK = {"aws": "boto3", "gcp": "google-api-python-client"}


def _check_autoscaler_sdk(data: dict[str, Any], provider: str | None, report: Report) -> None:
    sdk = AUTOSCALER_SDK.get(str(provider))
    if not sdk or "head_setup_commands" not in data:
        return
    head = _commands(data.get("setup_commands")) + _commands(data.get("head_setup_commands"))
    if not any(sdk in c for c in head):
        report.error(("head_setup_commands",), f"the head runs the autoscaler, which needs {sdk}; this file "
                     "replaces Ray's default head_setup_commands (which install it) and does not install it",
                     f'add: pip install "{sdk}"')


def _check_file_mounts(data: dict[str, Any], report: Report) -> None:
    mounts = data.get("file_mounts") if isinstance(data.get("file_mounts"), dict) else {}
    for remote, local in mounts.items():
        if isinstance(local, str) and CREDENTIAL_PATHS.search(local):
            report.error(("file_mounts", remote), f"copies {local} onto every node: credentials do not "
                         "belong on the cluster", "use the instance role / service account instead")


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _check_limits(data: dict[str, Any], types: dict[str, Any], report: Report) -> None:
    """Node counts and per-node resources within MAX_NODES / MAX_NODE_RESOURCES."""
    n = _count(data.get("max_workers"))
    if n is not None and n > MAX_NODES:
        report.error(("max_workers",), f"max_workers {n:,} is above the limit of {MAX_NODES:,} nodes",
                     "give the number of worker nodes the cluster may really grow to")
    for name, nt in types.items():
        if not isinstance(nt, dict):
            continue
        for key in ("min_workers", "max_workers"):
            n = _count(nt.get(key))
            if n is not None and n > MAX_NODES:
                report.error(("available_node_types", name, key), f"{key} {n:,} is above the limit of "
                             f"{MAX_NODES:,} nodes", f"lower {key}")
        res = nt.get("resources") if isinstance(nt.get("resources"), dict) else {}
        for key, limit in MAX_NODE_RESOURCES.items():
            n = _count(res.get(key))
            if n is not None and n > limit:
                report.error(("available_node_types", name, "resources", key), f"{key}: {n:,} is above the "
                             f"limit of {limit:,} per node", f"give the node's real {key} count")


def _check_metadata(data: dict[str, Any], provider: str | None, max_gpus: int, per_node: int,
                    multi_node: bool, report: Report) -> None:
    meta = data.get("metadata", {}).get("adc_dist") if isinstance(data.get("metadata"), dict) else None
    path = ("metadata", "adc_dist")
    if not isinstance(meta, dict):
        report.warning(path, "no shared storage declared: multi-node runs need --storage_path on "
                       "S3/GCS", "add metadata: {adc_dist: {storage: s3://<bucket>/<prefix>, jobs: {...}}}")
        return
    schemes = STORAGE_SCHEMES.get(str(provider), ("s3", "gs"))
    storage = meta.get("storage")
    if not isinstance(storage, str) or "://" not in storage:
        report.error(path + ("storage",), f"must be a {schemes[0]}:// URI (got {storage!r})",
                     f"storage: {schemes[0]}://<bucket>/adc_dist")
        storage = None
    elif storage.split("://")[0] not in schemes:
        report.error(path + ("storage",), f"{storage}: nodes on {provider} reach {schemes[0]}:// with "
                     "their instance identity", f"use {schemes[0]}://<bucket>/<prefix>")
    shape = ClusterShape(max_gpus=max_gpus, max_gpus_per_node=per_node, multi_node=multi_node,
                         storage_schemes=schemes, storage_root=storage)
    jobs = meta.get("jobs") if isinstance(meta.get("jobs"), dict) else {}
    for name, command in jobs.items():
        if not isinstance(command, str):
            report.error(path + ("jobs", name), "must be a command string")
            continue
        check_command(command, shape, report, path + ("jobs", name))
