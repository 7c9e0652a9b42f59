"""Full-ranking evaluation per domain (DESIGN.md section 4), sharded over ranks.

For every user with at least one target item in domain k (the split's items, minus any
the user is excluded from), score every item of domain k, set the excluded items to
-inf (train; train + valid for test), and compute Recall@N / NDCG@N
(``adc_dist.metrics``). Users are taken ``users[rank::world]``; under torch.distributed
the per-domain sums and counts are all-reduced, so every rank gets the single-process
result (up to float summation order).

At scale (millions of users) full ranking costs users x items; ``user_sample=N`` ranks
every item for a fixed, seeded sample of N users per domain instead (the same users on
every rank and in every epoch, so epochs stay comparable). The default, ``None``,
evaluates every user: exact, and what the six paper tasks use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import Tensor

from adc_dist.data.task_data import TaskData
from adc_dist.train.metrics import ranking_metrics

METRICS = ("recall", "ndcg")
EVAL_SPLITS = ("valid", "test")

ScoreFn = Callable[[Tensor, int], Tensor]  # (users [U], k) -> scores [U, n_items[k]]


@dataclass
class EvalResult:
    """Mean metrics per domain, how many users they average over, optional per-user rows.

    ``values[(domain, metric, N)]`` is the mean over the domain's evaluated users (NaN for
    a domain without any); ``counts[domain]`` the number of those users.
    """

    split: str
    ks: tuple[int, ...]
    domains: tuple[str, ...]
    values: dict[tuple[str, str, int], float]
    counts: dict[str, int]
    per_user: pd.DataFrame | None = field(default=None, repr=False)

    def flat(self, split: str | None = None) -> dict[str, float]:
        """``{f"{split}_{metric}{N}_{domain}": v, f"{split}_{metric}{N}_mean": mean over domains}``.

        The mean is over the domains that had users to evaluate (NaN if none had).
        """
        split = self.split if split is None else split
        out: dict[str, float] = {}
        for metric in METRICS:
            for N in self.ks:
                vals = []
                for dom in self.domains:
                    v = self.values[(dom, metric, N)]
                    out[f"{split}_{metric}{N}_{dom}"] = v
                    if self.counts[dom] > 0:
                        vals.append(v)
                out[f"{split}_{metric}{N}_mean"] = float(np.mean(vals)) if vals else float("nan")
        return out


def excluded_items(task: TaskData, split: str, k: int) -> sp.csr_matrix:
    """Binary CSR of the items a user must not be recommended when evaluating ``split``."""
    if split not in EVAL_SPLITS:
        raise ValueError(f"evaluate: split must be one of {EVAL_SPLITS} (got {split!r})")
    x = task.user_items("train", k)
    if split == "test":
        x = (x + task.user_items("valid", k)).tocsr()
        x.data[:] = 1.0
    return x


def target_items(task: TaskData, split: str, k: int, excluded: sp.csr_matrix) -> sp.csr_matrix:
    """The split's items per user minus the excluded ones (an item already seen in
    training cannot be found by a ranking that excludes it)."""
    t = task.user_items(split, k)
    t = (t - t.multiply(excluded)).tocsr()
    t.eliminate_zeros()
    return t


def _dense_rows(m: sp.csr_matrix, users: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """(row, col) index tensors of the nonzeros of ``m[users]`` (rows renumbered 0..U-1)."""
    sub = m[users]
    rows = np.repeat(np.arange(len(users)), np.diff(sub.indptr))
    return torch.from_numpy(rows).to(device), torch.from_numpy(sub.indices.astype(np.int64)).to(device)


def evaluate(score_fn: ScoreFn, task: TaskData, split: str, ks: Iterable[int], *, rank: int = 0,
             world: int = 1, device: str | torch.device = "cpu", user_block: int = 1024,
             per_user: bool = False, user_sample: int | None = None, sample_seed: int = 0) -> EvalResult:
    """Full-ranking Recall@N / NDCG@N of ``score_fn`` on ``split`` of every domain of ``task``.

    Args:
        score_fn: ``(users LongTensor[U] on device, k) -> Tensor[U, n_items[k]]``, e.g.
            ``model.score_all``; called under ``torch.no_grad()``. Its output is not
            modified (masking makes a copy).
        split: ``"valid"`` (train items excluded) or ``"test"`` (train + valid excluded).
        ks: the N values, e.g. ``[5, 10, 20, 50]``.
        rank, world: this process evaluates ``users[rank::world]`` of each domain. With
            ``world > 1`` torch.distributed must be initialised with that rank and world
            size, and every rank must call ``evaluate`` (it all-reduces).
        device: where the scores, masks and metric sums live.
        user_block: users scored per ``score_fn`` call (memory: user_block x n_items).
        per_user: also return the per-user DataFrame (gathered from all ranks).
        user_sample: evaluate only this many users per domain (all if fewer), drawn
            without replacement by a generator seeded with (``sample_seed``, k); every
            item is still ranked. None: every user (exact).
    """
    ks = tuple(dict.fromkeys(int(n) for n in ks))
    if not ks or min(ks) < 1:
        raise ValueError(f"evaluate: ks must be a non-empty list of N >= 1 (got {list(ks)})")
    if user_block < 1:
        raise ValueError(f"evaluate: user_block must be >= 1 (got {user_block})")
    if user_sample is not None and user_sample < 1:
        raise ValueError(f"evaluate: user_sample must be >= 1 or None (got {user_sample})")
    _check_ranks(rank, world)
    device = torch.device(device)
    names = [f"{m}@{n}" for m in METRICS for n in ks]
    K = task.num_domains
    sums = torch.zeros(K, len(names), dtype=torch.float64, device=device)
    counts = torch.zeros(K, dtype=torch.float64, device=device)
    rows: list[pd.DataFrame] = []
    with torch.no_grad():
        for k in range(K):
            excluded = excluded_items(task, split, k)
            targets_csr = target_items(task, split, k, excluded)
            users = sample_users(np.flatnonzero(np.diff(targets_csr.indptr)), user_sample, sample_seed, k)
            users = users[rank::world]
            for b in range(0, len(users), user_block):
                u = users[b:b + user_block]
                per = _score_block(score_fn, task, k, u, excluded, targets_csr, ks, names, device)  # [U, M]
                sums[k] += per.sum(dim=0, dtype=torch.float64)
                counts[k] += len(u)
                if per_user:
                    frame = pd.DataFrame(per.cpu().numpy(), columns=names)
                    frame.insert(0, "domain", task.domains[k])
                    frame.insert(0, "user", u.astype(np.int64))
                    rows.append(frame)
    if world > 1:
        # Sums and counts, not means: ranks hold different numbers of users.
        dist.all_reduce(sums)
        dist.all_reduce(counts)
    table = _per_user_table(rows, names, task, world) if per_user else None
    sums, counts = sums.cpu(), counts.cpu()
    values = {}
    for k, dom in enumerate(task.domains):
        for j, name in enumerate(names):
            metric, n = name.split("@")
            values[(dom, metric, int(n))] = float(sums[k, j] / counts[k]) if counts[k] > 0 else float("nan")
    return EvalResult(split, ks, tuple(task.domains), values,
                      {dom: int(counts[k]) for k, dom in enumerate(task.domains)}, table)


def sample_users(users: np.ndarray, n: int | None, seed: int, k: int) -> np.ndarray:
    """``users`` (sorted), or a seeded sample of ``n`` of them in sorted order (all if n is None or too big)."""
    if n is None or n >= len(users):
        return users
    return np.sort(np.random.default_rng(np.random.SeedSequence([seed, k, 0xE7A1])).choice(users, n, replace=False))


def _check_ranks(rank: int, world: int) -> None:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"evaluate: need world >= 1 and 0 <= rank < world (got rank={rank}, world={world})")
    if world > 1:
        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(f"evaluate: world={world} needs an initialised torch.distributed process group")
        if dist.get_world_size() != world or dist.get_rank() != rank:
            raise ValueError(f"evaluate: rank={rank}, world={world} do not match the process group "
                             f"(rank {dist.get_rank()} of {dist.get_world_size()})")


def _score_block(score_fn: ScoreFn, task: TaskData, k: int, u: np.ndarray, excluded: sp.csr_matrix,
                 targets_csr: sp.csr_matrix, ks: tuple[int, ...], names: list[str],
                 device: torch.device) -> Tensor:
    """Per-user metrics of one block of users: [U, len(names)]."""
    U, I = len(u), task.n_items[k]
    scores = score_fn(torch.from_numpy(u.astype(np.int64)).to(device), k)
    if not isinstance(scores, Tensor) or tuple(scores.shape) != (U, I):
        got = list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise ValueError(f"score_fn(users, {k}) must return a [{U}, {I}] tensor (users x items of "
                         f"domain {task.domains[k]!r}); got {got}")
    if not scores.dtype.is_floating_point:
        scores = scores.float()
    elif scores.dtype in (torch.float16, torch.bfloat16):
        scores = scores.float()  # ranking in float32: bf16's 8-bit mantissa ties many items
    scores = scores.to(device)
    if scores.numel() and torch.isnan(scores.amax()):  # amax propagates NaN: one pass, no mask
        raise ValueError(f"score_fn returned NaN scores for domain {task.domains[k]!r}")
    # Out-of-place index_put: the caller's tensor (maybe a shared or expanded one) stays intact.
    scores = scores.index_put(_dense_rows(excluded, u, device), torch.tensor(float("-inf"), device=device,
                                                                             dtype=scores.dtype))
    targets = torch.zeros(U, I, dtype=torch.bool, device=device)
    targets[_dense_rows(targets_csr, u, device)] = True
    m = ranking_metrics(scores, targets, ks)
    return torch.stack([m[name] for name in names], dim=1)


def _per_user_table(rows: list[pd.DataFrame], names: list[str], task: TaskData, world: int) -> pd.DataFrame:
    """This rank's per-user rows, gathered from every rank when distributed, in (domain, user) order."""
    empty = pd.DataFrame({"user": pd.Series(dtype=np.int64), "domain": pd.Series(dtype=object),
                          **{n: pd.Series(dtype=np.float32) for n in names}})
    local = pd.concat(rows, ignore_index=True) if rows else empty
    if world > 1:
        parts: list = [None] * world
        dist.all_gather_object(parts, local)
        local = pd.concat([p for p in parts if len(p)] or [empty], ignore_index=True)
    order = {d: i for i, d in enumerate(task.domains)}
    local = local.assign(_k=local["domain"].map(order)).sort_values(["_k", "user"], kind="stable")
    return local.drop(columns="_k").reset_index(drop=True)
