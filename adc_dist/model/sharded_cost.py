"""Memory and communication per rank and step: replicated tables (DDP) against sharded ones.

The formulas behind docs/scale.md; ``benchmarks/bench_shard.py`` checks the memory ones
against the bytes its ranks actually hold. float32 throughout (4 B per value).

Per table value (one float of one row):

    replicated, DDP + Adam    parameter + gradient + Adam's 2 moments  = 16 B on every rank
    row-wise, fused Adagrad   parameter + Adagrad's sum                 =  8 B, on 1/world of the rows
    row-wise, fused Adam      parameter + 2 moments                     = 12 B, on 1/world of the rows

(the fused optimizers never materialise the table gradient). Row-wise splits a table of n
rows into ``world`` blocks of ceil(n / world) rows (the last one shorter).

Sent per rank and step:

    replicated   the ring all-reduce of every table gradient: 2 (world-1)/world x 4 B x values
                 (+ GradNorm at P for gmf: the same for its K x |P| per-domain gradients)
    row-wise     the lookup's all-to-all: each unique id of the batch goes to its owner (8 B)
                 and its row comes back (4 d B), and the row's gradient goes back in the
                 backward (4 d B): (world-1)/world of them leave the rank
                 (+ GradNorm at P for gmf: the K per-domain rows of the batch's users, 4 d B each)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

FLOAT = 4
ID = 8
BYTES_PER_VALUE = {"replicated": 16, "adagrad": 8, "adam": 12}


@dataclass(frozen=True)
class Tables:
    """The embedding tables of an ADC model: rows of each, and their width d."""

    rows: tuple[int, ...]
    d: int

    @classmethod
    def of(cls, n_users: int, n_items: Sequence[int], d: int, specific: bool) -> "Tables":
        users = [n_users] * (1 + (len(n_items) if specific else 0))
        return cls(tuple(users + [int(n) for n in n_items]), int(d))

    @property
    def values(self) -> int:
        return sum(self.rows) * self.d


def local_rows(n: int, world: int, rank: int) -> int:
    """Rows of a table of ``n`` rows that ``rank`` holds row-wise (TorchRec's even split)."""
    block = math.ceil(n / world)
    return max(0, min(block, n - rank * block))


def table_bytes_per_rank(t: Tables, mode: str, world: int, rank: int = 0) -> int:
    """Bytes of table state on ``rank``: ``mode`` is "replicated" (DDP + Adam), or the fused
    optimizer of row-wise tables, "adagrad" or "adam"."""
    if mode == "replicated":
        return t.values * BYTES_PER_VALUE[mode]
    return sum(local_rows(n, world, rank) for n in t.rows) * t.d * BYTES_PER_VALUE[mode]


def sent_bytes_per_step(t: Tables, mode: str, world: int, unique_ids: Sequence[int] = (),
                        gradnorm_rows: int = 0, num_domains: int = 1) -> float:
    """Bytes one rank sends per step for the tables (dense layers left out: they are tiny).

    ``unique_ids``: per table, the unique ids of one rank's batch (row-wise only).
    ``gradnorm_rows``: the (user, domain) rows GradNorm at P exchanges (gmf; 0 otherwise);
    replicated, GradNorm at P all-reduces ``num_domains`` full gradients of P instead.
    """
    off = (world - 1) / world
    if mode == "replicated":
        ring = 2 * off * FLOAT
        per_domain_p = t.rows[0] * t.d * num_domains if gradnorm_rows else 0
        return ring * (t.values + per_domain_p)
    lookups = sum(unique_ids)
    return off * (lookups * (ID + 2 * FLOAT * t.d) + gradnorm_rows * (ID + FLOAT * t.d))


def scale_table(n_users: int, n_items: Sequence[int], d: int, specific: bool, worlds: Sequence[int],
                batch: int, negatives: int) -> list[dict[str, float]]:
    """docs/scale.md's rows: per world size, GB per rank and GB sent per rank and step.

    One rank's batch: ``batch`` positives per domain, so about ``batch`` unique users per
    user table and ``batch * (1 + negatives)`` unique items per item table (at these sizes
    repeats are rare), and GradNorm at P exchanges K x batch rows (gmf).
    """
    t = Tables.of(n_users, n_items, d, specific)
    K = len(n_items)
    users = batch * K  # the shared table P sees every domain's users
    uniq = [users] + [batch] * (K if specific else 0) + [min(n, batch * (1 + negatives)) for n in n_items]
    out = []
    for w in worlds:
        out.append({
            "world": w,
            "replicated_gb": table_bytes_per_rank(t, "replicated", w) / 1e9,
            "row_wise_adam_gb": table_bytes_per_rank(t, "adam", w) / 1e9,
            "row_wise_adagrad_gb": table_bytes_per_rank(t, "adagrad", w) / 1e9,
            "replicated_sent_gb": sent_bytes_per_step(t, "replicated", w, gradnorm_rows=1, num_domains=K) / 1e9,
            "row_wise_sent_gb": sent_bytes_per_step(t, "adam", w, uniq, gradnorm_rows=users) / 1e9,
        })
    return out
