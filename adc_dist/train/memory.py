"""How much memory a run's model needs, checked before anything is allocated.

The estimate is a function of the model's parameter shapes only, so a model variant is
covered as soon as its module exists: the shapes come from building the model on
PyTorch's ``meta`` device, which records shapes and allocates nothing. Per parameter
element (float32), training holds:

    parameter 4 B + gradient 4 B + Adam's two moments 8 B        on the training device
    the best model so far (a copy for the final test) 4 B        in host memory

plus, for GradNorm, the per-domain gradients of its shared weight W (the last shared
layer) and their packed all-reduce copy (2 x K x |W| x 4 B, on the device). With sparse
tables (``sparse_tables``) the embedding tables have no dense gradient (it holds the
batch's rows only), and for ``gmf`` models GradNorm's W is the user table, whose
per-domain gradients are the batch's rows too: both are bounded by batch_size. Activations, the batch and the
ranking chunks are small next to the tables for any model that is too large (they are
bounded by batch_size and the scorer's chunk size), so they are left out: the estimate is
a lower bound, and a refusal is certain to be right.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch

from adc_dist.config import TrainConfig
from adc_dist.errors import AdcError

FLOAT_BYTES = 4
DEVICE_COPIES = 4  # parameter, gradient, Adam exp_avg, Adam exp_avg_sq
HOST_COPIES = 1  # the best model's state dict, kept on the CPU
GB = 1e9


@dataclass(frozen=True)
class Estimate:
    params: int  # parameter elements
    device_bytes: int  # on the training device (the GPU, or host memory for a CPU run)
    host_bytes: int  # in host memory besides the device's share

    def per_worker_on_cpu(self) -> int:
        return self.device_bytes + self.host_bytes

    def describe(self) -> str:
        return f"{self.params:.3g} parameters, {_gb(self.device_bytes)} with gradients and Adam state"


def _gb(n: int) -> str:
    return f"about {n / GB:,.1f} GB" if n < 1e15 else f"about {n / GB:.2g} GB"


def estimate_from_shapes(shapes: Iterable[Sequence[int]], extra_device_elements: int = 0) -> Estimate:
    """The estimate for parameters of these shapes (plus extra float32 device buffers)."""
    params = 0
    for shape in shapes:
        n = 1
        for s in shape:
            n *= int(s)
        params += n
    device = params * DEVICE_COPIES * FLOAT_BYTES + extra_device_elements * FLOAT_BYTES
    return Estimate(params, device, params * HOST_COPIES * FLOAT_BYTES)


def model_shapes(cfg: TrainConfig, n_users: int, n_items: Sequence[int]) -> list[tuple[int, ...]]:
    """Every parameter's shape of the model ``cfg`` describes, without allocating it."""
    from adc_dist.model.network import ADC

    try:
        with torch.device("meta"):
            model = ADC.from_config(cfg, n_users, n_items)
    except (RuntimeError, OverflowError) as e:  # more elements than an int64 counts
        raise AdcError(f"the model of --d {cfg.d} is too large to build at all ({str(e)[:80]}): lower --d") from None
    return [tuple(p.shape) for p in model.parameters()]


def estimate(cfg: TrainConfig, n_users: int, n_items: Sequence[int]) -> Estimate:
    from adc_dist.model.network import hidden_widths

    shapes = model_shapes(cfg, n_users, n_items)
    extra = 0
    if cfg.balancer == "gradnorm" and cfg.interaction != "gmf":
        # GradNorm's W (ADC.shared_weight): W_L. For gmf it is the user table P, whose
        # per-domain gradients are the batch's rows (adc_dist.train.sparse_rows).
        widths = hidden_widths(cfg.d, cfg.num_hidden_layers, cfg.hidden_shape)
        w_numel = widths[-1] * ([2 * cfg.d] + widths)[-2]
        extra = 2 * len(n_items) * w_numel  # per-domain grads of W + the packed copy
    if cfg.sparse_tables_for(n_users, n_items):  # no dense gradient of the tables: one copy fewer
        extra -= cfg.d * cfg.table_rows(n_users, n_items)
    return estimate_from_shapes(shapes, extra)


def host_available_bytes() -> int | None:
    """Memory this process can still use: MemAvailable, or the cgroup limit if lower."""
    avail = None
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = open(path).read().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 2**60:
            cur_path = path.replace("memory.max", "memory.current").replace("limit_in_bytes", "usage_in_bytes")
            try:
                used = int(open(cur_path).read().strip())
            except (OSError, ValueError):
                used = 0
            left = int(raw) - used
            avail = left if avail is None else min(avail, left)
        break
    return avail


def check_fits(cfg: TrainConfig, n_users: int, n_items: Sequence[int], *, device: torch.device | None = None,
               workers_here: int = 1) -> Estimate:
    """Refuse (AdcError, one line) a model that cannot fit; ``workers_here``: replicas on this machine.

    ``device`` None: the driver's check (the GPU of this machine when cfg.use_gpu and one is
    visible; host memory for CPU runs). A worker passes its own device.
    """
    est = estimate(cfg, n_users, n_items)
    use_gpu = device.type == "cuda" if device is not None else (cfg.use_gpu and torch.cuda.is_available())
    if use_gpu:
        dev = device if device is not None else torch.device("cuda", 0)
        total = torch.cuda.get_device_properties(dev).total_memory
        if est.device_bytes > total:
            raise AdcError(f"the model needs {est.describe()} per worker; the GPU holds "
                           f"{total / GB:.1f} GB: lower --d (or the number of hidden layers)")
        need, what = est.host_bytes * workers_here, "host memory for the best-model copies"
    else:
        need, what = est.per_worker_on_cpu() * workers_here, "memory"
    avail = host_available_bytes()
    if avail is not None and need > avail:
        per = f" ({workers_here} workers here)" if workers_here > 1 else ""
        raise AdcError(f"the model ({est.describe()}) needs {_gb(need)} of {what}{per}; this machine has "
                       f"{avail / GB:.1f} GB available: lower --d" + (" or use fewer workers" if per else ""))
    return est


def local_workers(cfg: TrainConfig, local: bool) -> int:
    """Model replicas this machine will hold: torchrun's local world, or all Ray workers (no cluster)."""
    if local:
        return int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return 1 if os.environ.get("RAY_ADDRESS") else max(1, cfg.num_workers)
