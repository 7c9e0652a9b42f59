"""One typed configuration for a training run.

The same flat object is loaded from YAML (``--config FILE``), overridden from the
command line (``--key value``), varied by Ray Tune (a search space names its fields)
and recorded, one column per field, in the Parquet results. Flat on purpose: a
Parquet column, a CLI flag and a Tune key are then the same name.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, get_args, get_origin, get_type_hints

import yaml

from adc_dist.inputs import files as inputs
from adc_dist.errors import AdcError
from adc_dist.inputs.files import short

BALANCERS = ("gradnorm", "equal", "static", "uncertainty")
HIDDEN_SHAPES = ("halving", "constant")
USER_REPRS = ("shared", "shared+specific", "shared+gated")
INTERACTIONS = ("mlp", "mlp+gmf", "gmf")
LOSSES = ("bce", "bpr")
SPARSE_TABLES = ("auto", "true", "false")
# "auto" makes the embedding tables sparse from this many rows (all tables together) on:
# below it sparse tables save little (15 % CPU at 31,800 rows) and scored 2.5-3 % lower
# NDCG@10 on amazon-book-music (docs/performance.md, "Sparse tables").
AUTO_SPARSE_ROWS = 100_000
# How the embedding tables are laid out over the workers: "none" replicates them under DDP;
# "row_wise" / "table_wise" shard them with TorchRec (the optional [sharded] extra, docs/scale.md).
EMBEDDING_SHARDINGS = ("none", "row_wise", "table_wise")

# Named starting points: a preset fills in every field it names that the mapping (YAML,
# flags, Tune's trial config) does not set itself. "paper" is the reconstruction of
# DESIGN.md section 2 exactly as it was trained before the model family existed.
PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "d": 100, "num_hidden_layers": 2, "hidden_shape": "halving", "dropout": 0.0, "init_std": 0.01,
        "zero_init": False,
        "user_repr": "shared", "interaction": "mlp", "item_bias": False,
        "negatives": 5, "loss": "bce", "l2": 0.0,
        "lr": 1e-3, "weight_decay": 0.0, "batch_size": 1024, "epochs": 20, "patience": 5,
        "sparse_tables": "false",
    },
}

# Upper bounds of counts and sizes: far above any sensible run, low enough that a typo (an
# extra zero, a value in the wrong flag) is refused with the limit named instead of
# allocating gigabytes or running for months. Raise one here if a real run needs more.
LIMITS: dict[str, int] = {
    "seed": 2**32 - 1, "d": 65_536, "num_hidden_layers": 32, "negatives": 1_000,
    "batch_size": 1 << 20, "epochs": 100_000, "eval_every": 100_000, "patience": 100_000,
    "num_workers": 1_024, "cpus_per_worker": 1_024, "max_failures": 1_000,
}
MAX_TOPK = 10_000  # the largest N of Recall@N / NDCG@N
MAX_LIST = 64  # values in one list field (topk, domains, static_weights)


@dataclass
class TrainConfig:
    # --- data -------------------------------------------------------------------
    task: str = "amazon-book-music"  # a task of `python -m adc_dist.data list`, or synthetic:<users>x<domains>
    data_root: str | None = None  # None: $ADC_DATA_ROOT, else the download cache
    seed: int = 0  # split seed and model/sampling seed
    min_rating: float | None = None  # keep only ratings >= this as positives
    domains: list[str] | None = None  # train on a subset of the task's domains (one: single-domain baseline)
    subsample_domain: str | None = None  # keep only a seeded fraction of this domain's train positives
    subsample_frac: float = 1.0  # ... this fraction (the balancing study uses 0.1)
    # "paper": DESIGN.md section 2's model and training (PRESETS). Applied by from_mapping
    # (YAML, flags, Tune trials, replace); TrainConfig(...) itself does not apply it.
    preset: str | None = None
    # --- model (docs/model.md; the defaults are the model family's best measured point,
    # the paper's own values are the "paper" preset) -------------------------------
    d: int = 128  # embedding size (paper: 100)
    num_hidden_layers: int = 2  # shared ReLU layers on [p_u ; q_i]
    hidden_shape: str = "halving"  # "halving": 2d -> d -> d/2 ...; "constant": 2d wide
    dropout: float = 0.0  # after every hidden layer of an MLP interaction (training only)
    init_std: float = 0.1  # normal init of the embedding tables (paper: 0.01)
    # S_k and Q_k start at zero, P alone at N(0, init_std^2) (paper: false, every table drawn): a
    # row without train data then adds nothing to a score instead of random noise (docs/model.md)
    zero_init: bool = True
    # "shared": p_u (paper); "shared+specific": p_u + s_u^k; "shared+gated": g_k * p_u + s_u^k
    # with a learned per-domain, per-dimension gate g_k in (0, 2)
    user_repr: str = "shared+specific"
    interaction: str = "gmf"  # "mlp" (paper), "mlp+gmf" (MLP head + p.q), "gmf" (p.q only)
    item_bias: bool = True  # a learned bias per item added to the logit (paper: none)
    # --- objective and balancing ------------------------------------------------
    # rho and l2: the best point of tune_spaces/model_family_six.yaml on the six tasks' validation
    # splits (docs/model.md, "The default on the six tasks"): 20 negatives and L2 3e-3 beat the
    # earlier 5 and 1e-3 (chosen on amazon-book-music alone) on every task.
    negatives: int = 20  # rho: sampled negatives per positive (paper: 5)
    loss: str = "bpr"  # "bce" over positive + negatives (paper); "bpr": -log sigmoid(s_pos - s_neg)
    l2: float = 3e-3  # L2 on the embeddings of the batch, added to every domain's loss (paper: 0)
    balancer: str = "gradnorm"  # the domain weights: "gradnorm", "equal", "static" or "uncertainty"
    gamma: float = 1.5  # GradNorm asymmetry (the paper's gamma, GradNorm's alpha)
    balancer_lr: float = 0.025  # learning rate of the domain weights (GradNorm paper)
    static_weights: list[float] | None = None  # for balancer="static"; rescaled to sum K
    # --- optimisation ------------------------------------------------------------
    lr: float = 5e-3  # Adam's learning rate (paper: 1e-3), measured with batch_size, docs/performance.md
    weight_decay: float = 0.0  # Adam's weight decay on every parameter (> 0: "auto" keeps the tables dense)
    # "true": row-sparse table gradients + lazy Adam (LazyAdam) on the tables, a step costs
    # O(batch) instead of O(users + items); "false": dense Adam on every row; "auto": sparse
    # from AUTO_SPARSE_ROWS table rows on, unless weight_decay > 0 (train/optim.py)
    sparse_tables: str = "auto"
    # positives per step of the largest domain, per worker; 1,024 at lr 5e-3 beat 4,096 at 1e-2 and
    # 16,384 at equal epochs (docs/performance.md, "Batch size and learning rate")
    batch_size: int = 1024
    epochs: int = 30  # at most this many epochs (paper: 20)
    eval_every: int = 1  # validate every this many epochs (and after the last)
    topk: list[int] = field(default_factory=lambda: [5, 10, 20, 50])  # the N of Recall@N and NDCG@N
    early_stop_metric: str = "ndcg@10"  # mean over domains of this validation metric
    patience: int = 3  # epochs without improvement before stopping; 0 = never stop early (paper: 5)
    eval_users: int = 0  # 0: evaluate every user (exact); N: a fixed seeded sample of N users per domain
    # --- distribution and run ----------------------------------------------------
    num_workers: int = 0  # 0: as many as the machine sensibly holds
    use_gpu: bool = False  # one GPU per worker
    bf16: bool = False  # bf16 autocast on GPU
    # replay each step from a CUDA graph on one GPU with dense tables and no dropout (train/graphed.py):
    # Python launches a small step's ~345 kernels slower than the GPU runs them
    cuda_graphs: bool = True
    cpus_per_worker: float = 1.0  # CPUs Ray reserves for each worker
    max_failures: int = 0  # whole-group restarts from the last checkpoint
    storage_path: str = "runs"  # run directories are created under this
    name: str | None = None  # run name; None: <task>-<timestamp>
    resume: bool = False  # continue the run called --name from its last checkpoint
    embedding_sharding: str = "none"  # EMBEDDING_SHARDINGS: "none" (DDP replicas) or TorchRec-sharded tables

    # ------------------------------------------------------------------------------
    def validate(self) -> "TrainConfig":
        """Check value ranges; raise one AdcError (one line) naming every bad field."""
        bad = self.problems()
        if bad:
            raise AdcError("invalid config: " + "; ".join(bad))
        return self

    def problems(self) -> list[str]:
        """What is wrong with the values, one message per problem, each starting with the field."""
        bad: list[str] = []

        def need(cond: bool, msg: str) -> None:
            if not cond:
                bad.append(msg)

        need(0.0 < self.subsample_frac <= 1.0, f"subsample_frac must be in (0, 1] (got {self.subsample_frac})")
        need(self.d > 0, f"d must be > 0 (got {self.d})")
        need(self.num_hidden_layers >= 1, f"num_hidden_layers must be >= 1 (got {self.num_hidden_layers})")
        need(self.hidden_shape in HIDDEN_SHAPES,
             f"hidden_shape must be one of {HIDDEN_SHAPES} (got {short(self.hidden_shape)})")
        # (bounded: 2 ** 10**9 would not finish; the limit itself is reported below)
        if self.hidden_shape == "halving" and self.d > 0 and 1 <= self.num_hidden_layers <= LIMITS["num_hidden_layers"]:
            need(self.d // 2 ** (self.num_hidden_layers - 1) >= 1,
                 f"d={self.d} is too small to halve over {self.num_hidden_layers} hidden layers")
        need(self.preset is None or self.preset in PRESETS,
             f"preset must be one of {tuple(PRESETS)} (got {short(self.preset)})")
        need(self.user_repr in USER_REPRS, f"user_repr must be one of {USER_REPRS} (got {short(self.user_repr)})")
        need(self.interaction in INTERACTIONS,
             f"interaction must be one of {INTERACTIONS} (got {short(self.interaction)})")
        need(self.loss in LOSSES, f"loss must be one of {LOSSES} (got {short(self.loss)})")
        need(self.l2 >= 0, f"l2 must be >= 0 (got {self.l2})")
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1) (got {self.dropout})")
        need(self.init_std > 0, f"init_std must be > 0 (got {self.init_std})")
        need(self.negatives >= 1, f"negatives must be >= 1 (got {self.negatives})")
        need(self.balancer in BALANCERS, f"balancer must be one of {BALANCERS} (got {short(self.balancer)})")
        need(self.gamma >= 0, f"gamma must be >= 0 (got {self.gamma})")
        need(self.balancer_lr > 0, f"balancer_lr must be > 0 (got {self.balancer_lr})")
        if self.balancer == "static":
            w = self.static_weights
            need(w is not None and len(w) >= 2 and all(x > 0 for x in w),
                 "balancer=static needs static_weights: one positive weight per domain, e.g. --static_weights 1.0,0.5")
        need(self.lr > 0, f"lr must be > 0 (got {self.lr})")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0 (got {self.weight_decay})")
        need(self.sparse_tables in SPARSE_TABLES,
             f"sparse_tables must be one of {SPARSE_TABLES} (got {short(self.sparse_tables)})")
        need(not (self.sparse_tables == "true" and self.embedding_sharding != "none"),
             "sparse_tables true is for replicated tables: sharded ones (embedding_sharding) have their own "
             "row-wise optimizer; use --sparse_tables auto or false")
        need(not (self.sparse_tables == "true" and self.weight_decay > 0),
             "weight_decay needs --sparse_tables false or auto (the tables' LazyAdam has no weight decay; --l2 "
             "regularises the batch's embeddings instead)")
        need(self.batch_size >= 1, f"batch_size must be >= 1 (got {self.batch_size})")
        need(self.epochs >= 1, f"epochs must be >= 1 (got {self.epochs})")
        need(self.eval_every >= 1, f"eval_every must be >= 1 (got {self.eval_every})")
        need(len(self.topk) >= 1 and all(k >= 1 for k in self.topk),
             f"topk must be a list of N >= 1 (got {short(self.topk)})")
        metric, _, n = self.early_stop_metric.partition("@")
        need(metric in ("recall", "ndcg") and n.isdecimal() and len(n) <= 9 and int(n) in self.topk,
             f"early_stop_metric must be recall@N or ndcg@N with N in topk={short(self.topk)} "
             f"(got {short(self.early_stop_metric)})")
        need(self.patience >= 0, f"patience must be >= 0 (got {self.patience})")
        need(self.eval_users >= 0, f"eval_users must be >= 0 (got {self.eval_users})")
        need(self.num_workers >= 0, f"num_workers must be >= 0 (got {self.num_workers})")
        need(self.cpus_per_worker > 0, f"cpus_per_worker must be > 0 (got {self.cpus_per_worker})")
        need(self.max_failures >= 0, f"max_failures must be >= 0 (got {self.max_failures})")
        need(self.embedding_sharding in EMBEDDING_SHARDINGS,
             f"embedding_sharding must be one of {EMBEDDING_SHARDINGS} (got {short(self.embedding_sharding)})")
        # The fused table optimizers' weight decay has modes of its own (fbgemm), not matched
        # to torch's and untested here: the batch's L2 term (l2) is the sharded regulariser.
        need(self.embedding_sharding == "none" or self.weight_decay == 0,
             f"embedding_sharding={short(self.embedding_sharding)} needs weight_decay 0 (use --l2 instead)")
        need(not (self.bf16 and not self.use_gpu), "bf16 needs --use_gpu (bf16 autocast is a GPU option)")
        bad += limit_problems(self)
        return bad

    def __post_init__(self) -> None:
        if isinstance(self.sparse_tables, (bool, str)):  # YAML and Tune give true/false as bools
            self.sparse_tables = str(self.sparse_tables).lower()

    def sparse_tables_for(self, n_users: int, n_items: list[int] | tuple[int, ...]) -> bool:
        """Whether a model of this config over these users and items has sparse tables."""
        if self.embedding_sharding != "none":  # TorchRec's sharded tables bring their own optimizer
            return False
        if self.sparse_tables != "auto":
            return self.sparse_tables == "true"
        if self.weight_decay > 0:  # the tables' LazyAdam has no weight decay
            return False
        return self.table_rows(n_users, n_items) >= AUTO_SPARSE_ROWS

    def table_rows(self, n_users: int, n_items: list[int] | tuple[int, ...]) -> int:
        """Rows of all embedding tables of this config's model: P (+ one S_k per domain) and the Q_k."""
        user_tables = 1 + (len(n_items) if self.user_repr != "shared" else 0)
        return user_tables * n_users + sum(n_items)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrainConfig":
        return from_mapping({**self.to_dict(), **changes})

    @property
    def early_stop_key(self) -> tuple[str, int]:
        metric, _, n = self.early_stop_metric.partition("@")
        return metric, int(n)


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
_HINTS = get_type_hints(TrainConfig)


def limit_problems(cfg: TrainConfig) -> list[str]:
    """What :data:`LIMITS` and finiteness refuse: NaN or infinite numbers (``lr: .inf`` passes a
    ``> 0`` test), counts above their limit, and the list fields' values."""
    bad = []
    for name in _HINTS:
        value = getattr(cfg, name)
        if isinstance(value, float) and not math.isfinite(value):
            bad.append(f"{name} must be a finite number (got {value})")
        elif name in LIMITS and isinstance(value, (int, float)) and value > LIMITS[name]:
            bad.append(f"{name}={value:,} is above the limit of {LIMITS[name]:,}")
    if any(n > MAX_TOPK for n in cfg.topk):
        bad.append(f"topk values must be <= {MAX_TOPK:,} (got {short(cfg.topk)})")
    if cfg.static_weights is not None and not all(math.isfinite(w) for w in cfg.static_weights):
        bad.append(f"static_weights must be finite numbers (got {short(cfg.static_weights)})")
    return bad


def unknown_key_error(key: str, where: str, known: tuple[str, ...] = FIELD_NAMES) -> AdcError:
    close = difflib.get_close_matches(str(key), known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(known)}"
    return AdcError(f"unknown config key {short(key)} in {where}{hint}")


def _base_type(hint: Any) -> tuple[Any, bool]:
    """(the non-None type, whether None is allowed) of a field's annotation."""
    args = get_args(hint)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return hint, False


def coerce(key: str, value: Any) -> Any:
    """Turn a YAML or command-line value into the field's type, or raise AdcError."""
    typ, optional = _base_type(_HINTS[key])
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise AdcError(f"config key {key!r} may not be empty")
    try:
        if get_origin(typ) is list:
            (elem,) = get_args(typ)
            if isinstance(value, str):
                value = [v for v in value.replace(" ", "").split(",") if v]
            if not isinstance(value, (list, tuple)):
                value = [value]
            if len(value) > MAX_LIST:
                raise AdcError(f"config key {key!r} lists {len(value):,} values; the limit is {MAX_LIST}")
            return [_scalar(elem, v) for v in value]
        return _scalar(typ, value)
    except (TypeError, ValueError, OverflowError):
        label = f"a list of {get_args(typ)[0].__name__}" if get_origin(typ) is list else getattr(typ, "__name__", typ)
        raise AdcError(f"config key {key!r} expects {label}, got {short(value)}") from None


def _scalar(typ: Any, value: Any) -> Any:
    """``value`` as one bool, int, float or str; ValueError/TypeError when it is not one."""
    if isinstance(value, (dict, list, tuple, set)):
        raise TypeError(value)  # str() of a mapping is not a name, int() of a list not a count
    if typ is bool:
        if isinstance(value, bool):
            return value
        s = str(value).lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(value)
    if typ is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if isinstance(value, bool):
            raise ValueError(value)
        return int(value) if not isinstance(value, str) else int(value.strip())
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    return str(value)


def from_mapping(values: Mapping[str, Any], where: str = "config",
                 sources: Mapping[str, str] | None = None) -> TrainConfig:
    """Build and validate a TrainConfig; unknown keys and bad types raise AdcError.

    A ``preset`` fills in the fields it names that ``values`` does not set. ``sources`` names
    where each key's value came from (``flag --d``, ``--set d=...``, a file): a bad value's
    message says so, since a flag may override a file and vice versa.
    """
    def source(key: str) -> str:
        got = (sources or {}).get(key) or (where if where != "config" else "")
        return f" (from {got})" if got else ""

    kwargs = {}
    for key, value in values.items():
        if key not in FIELD_NAMES:
            raise unknown_key_error(key, (sources or {}).get(key) or where)
        try:
            kwargs[key] = coerce(key, value)
        except AdcError as e:
            raise AdcError(f"{e}{source(key)}") from None
    preset = kwargs.get("preset")
    if preset is not None:
        if preset not in PRESETS:
            raise AdcError(f"unknown preset {short(preset)}{source('preset')}; known presets: {', '.join(PRESETS)}")
        kwargs = {**PRESETS[preset], **kwargs}
    bad = TrainConfig(**kwargs).problems()
    if bad:
        def blame(msg: str) -> str:
            key = re.match(r"[a-z0-9_]*", msg).group(0)  # type: ignore[union-attr]
            return msg + source(key) if key in values else msg
        raise AdcError("invalid config: " + "; ".join(blame(m) for m in bad))
    return TrainConfig(**kwargs)


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """The key: value mapping of a config file, read with the one safe loader (size, depth and
    alias limits; a pipe, a binary or a malformed file gives one AdcError line)."""
    data = inputs.load_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdcError(f"config file {inputs.show(path)} must hold a mapping of key: value "
                       f"(found a {type(data).__name__})")
    return data


def save_yaml(cfg: TrainConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
