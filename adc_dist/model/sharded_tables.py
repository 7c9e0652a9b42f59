"""ADC's embedding tables sharded over the workers with TorchRec (``--embedding_sharding``).

DDP keeps a full replica of every table on every rank and all-reduces its dense gradient
every step (docs/scale.md). Here the user tables (the shared P and the domain-specific
S_k) and the item tables Q_k become one TorchRec ``EmbeddingCollection`` that
``DistributedModelParallel`` shards row-wise (every table split into ``world`` row
blocks) or table-wise (every table whole on one rank) inside the existing process group.
A step's ids reach their owners through TorchRec's all-to-all input distribution and
the rows come back the same way; the table update is a *fused* optimizer that runs
inside the backward on the owner, so no table gradient is ever materialised or
all-reduced.

The dense rest of ADC (MLP, heads, item biases, anything else with parameters) stays an
``ADC`` module under DDP: its embedding modules are swapped for :class:`RowCache`, which
answers ``emb(ids)`` from the rows the last :meth:`ShardedTables.lookup` fetched. So the
model code (``adc_dist.model.network``) runs unchanged on sharded tables.

TorchRec is optional (``pip install -e '.[sharded]'`` plus one ``--no-deps`` step, see
README): it is imported only here, and a missing install is one AdcError line.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from adc_dist.errors import AdcError
from adc_dist.model.network import zero_init_tables

INSTALL_HINT = ("pip install -e '.[sharded]' && pip install --no-deps torchrec==1.8.0 "
                "(README, 'Sharded embedding tables')")
# Fused table optimizers. On CPU fbgemm has SGD and the Adagrads, Adam "is not supported in
# CPU mode"; GPU builds have Adam, the optimizer of the replicated path.
CPU_TABLE_OPTIMIZER = "adagrad"
GPU_TABLE_OPTIMIZER = "adam"
ADAGRAD_EPS = 1e-10  # torch.optim.Adagrad's default: the fused update equals torch's


def require_torchrec(sharding: str) -> Any:
    """The torchrec module, or one AdcError line that says how to install it."""
    try:
        import torchrec  # noqa: F401
        import torchrec.distributed  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or fbgemm refusing its torch pairing
        reason = str(e).splitlines()[0][:100] if str(e) else type(e).__name__
        raise AdcError(f"--embedding_sharding {sharding} needs TorchRec ({reason}); install it with: "
                       f"{INSTALL_HINT}") from None
    return torchrec


def table_names(num_domains: int, specific: bool) -> list[str]:
    """The tables of an ADC model, in a fixed order: P, then S_k (if any), then Q_k."""
    names = ["user"]
    if specific:
        names += [f"user_spec_{k}" for k in range(num_domains)]
    return names + [f"item_{k}" for k in range(num_domains)]


class RowCache(nn.Module):
    """Stands in for an ``nn.Embedding`` whose rows live on other ranks.

    Holds the rows a lookup fetched (``ids`` sorted and unique, ``rows[j]`` the row of
    ``ids[j]``, part of the autograd graph of the lookup); ``cache(idx)`` gathers from
    them, so the backward of the model reaches the sharded table's fused optimizer.
    Nothing here is a parameter or a buffer: the module adds nothing to ``state_dict``.
    """

    def __init__(self, num_embeddings: int, dim: int) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = int(num_embeddings), int(dim)
        self.ids: Tensor | None = None
        self.rows: Tensor | None = None

    def set(self, ids: Tensor, rows: Tensor) -> None:
        self.ids, self.rows = ids, rows

    def forward(self, idx: Tensor) -> Tensor:
        if self.rows is None:
            raise RuntimeError("RowCache used before ShardedTables.lookup fetched its rows")
        return self.rows[torch.searchsorted(self.ids, idx)]

    @property
    def weight(self) -> Tensor:
        """The fetched rows: the whole table in id order when every id was fetched
        (``ADC.score_all`` reads the item table this way); otherwise only their device
        and dtype mean anything."""
        if self.rows is None:
            raise RuntimeError("RowCache used before ShardedTables.lookup fetched its rows")
        return self.rows


def swap_in_caches(model: nn.Module, n_users: int, n_items: Sequence[int]) -> None:
    """Replace the embedding tables of an ``ADC`` by :class:`RowCache` modules (in place)."""
    d = model.d
    model.user_emb = RowCache(n_users, d)
    if model.user_specific is not None:
        model.user_specific = nn.ModuleList(RowCache(n_users, d) for _ in n_items)
    model.item_embs = nn.ModuleList(RowCache(n, d) for n in n_items)


def caches_of(model: nn.Module) -> dict[str, RowCache]:
    """The RowCache of every table of a swapped ``ADC``, by table name (``ADC.tables``)."""
    return dict(model.tables())


class _Tables(nn.Module):
    """What DistributedModelParallel wraps: the collection alone (the dense part has its own DDP)."""

    def __init__(self, ec: nn.Module) -> None:
        super().__init__()
        self.ec = ec

    def forward(self, kjt: Any) -> Any:
        return self.ec(kjt)


class ShardedTables:
    """The sharded tables of one ADC model on this rank, and the lookups that fill its caches.

    Args:
        model: an ``ADC`` built with real ``n_items`` (its own tables are replaced here).
        n_users, n_items: the table sizes.
        sharding: ``"row_wise"`` or ``"table_wise"``.
        device: this rank's device.
        lr: of the fused table optimizer (no weight decay: the config refuses it here).
        init_std, seed: every local shard is drawn N(0, init_std^2) from a generator seeded
            with (seed, table, first row), so ranks never draw the same rows twice.
        zero_init: the tables ``network.zero_init_tables`` names (S_k, Q_k) start at zero
            instead, as in the replicated model.
    """

    def __init__(self, model: nn.Module, n_users: int, n_items: Sequence[int], sharding: str,
                 device: torch.device, *, lr: float, init_std: float = 0.01,
                 seed: int = 0, zero_init: bool = False) -> None:
        require_torchrec(sharding)
        from torchrec import EmbeddingCollection, EmbeddingConfig
        from torchrec.distributed.embedding import EmbeddingCollectionSharder
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
        from torchrec.distributed.types import ShardingType

        if not (dist.is_available() and dist.is_initialized()):
            raise AdcError(f"--embedding_sharding {sharding} shards the tables over the workers of a "
                           f"process group: give it 2 or more (--num_workers 2, without --local)")
        self.sharding, self.device = sharding, device
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.n_users, self.n_items = int(n_users), tuple(int(n) for n in n_items)
        self.specific = model.user_specific is not None
        self.names = table_names(len(self.n_items), self.specific)
        d = model.d
        sizes = {n: (self.n_items[int(n.rsplit("_", 1)[1])] if n.startswith("item_") else self.n_users)
                 for n in self.names}
        configs = [EmbeddingConfig(num_embeddings=sizes[n], embedding_dim=d, name=n, feature_names=[n])
                   for n in self.names]
        self.optimizer = GPU_TABLE_OPTIMIZER if device.type == "cuda" else CPU_TABLE_OPTIMIZER
        sharder = EmbeddingCollectionSharder(fused_params=_fused_params(self.optimizer, lr))
        kind = {"row_wise": ShardingType.ROW_WISE, "table_wise": ShardingType.TABLE_WISE}[sharding].value
        planner = EmbeddingShardingPlanner(
            topology=Topology(world_size=self.world, compute_device=device.type),
            constraints={n: ParameterConstraints(sharding_types=[kind]) for n in self.names})
        holder = _Tables(EmbeddingCollection(tables=configs, device=torch.device("meta")))
        # collective_plan: rank 0 plans and broadcasts, so every rank shards identically.
        plan = planner.collective_plan(holder, [sharder], dist.GroupMember.WORLD)
        self.dmp = DistributedModelParallel(holder, device=device, plan=plan, sharders=[sharder],
                                            init_data_parallel=False)
        swap_in_caches(model, n_users, n_items)
        self.caches = caches_of(model)
        self._init_shards(init_std, seed, zero_init_tables(len(self.n_items), self.specific) if zero_init else set())

    # ------------------------------------------------------------------ lookups
    def lookup(self, users: Sequence[Tensor], items: Sequence[Tensor]) -> None:
        """Fetch the rows of a training batch (K users [B_k], K items [B_k, C_k]) into the caches.

        A collective: every rank calls it once per step. Each table is asked for its
        batch's *unique* ids, so the all-to-all carries every row once, and a repeated id's
        gradient is summed before the fused update, as ``nn.Embedding``'s is.
        """
        ids = {"user": torch.unique(torch.cat(list(users)))}
        for k, (u, it) in enumerate(zip(users, items)):
            if self.specific:
                ids[f"user_spec_{k}"] = torch.unique(u)
            ids[f"item_{k}"] = torch.unique(it.reshape(-1))
        self._fetch(ids)

    def lookup_for_eval(self, users: Tensor) -> None:
        """Fetch the rows ``ADC.score_all`` needs: ``users`` (sorted unique) in every user
        table and every item table whole (a collective, like :meth:`lookup`)."""
        ids = {n: (users if n.startswith("user") else
                   torch.arange(self.n_items[int(n.rsplit("_", 1)[1])], device=self.device)) for n in self.names}
        self._fetch(ids)

    def _fetch(self, ids: dict[str, Tensor]) -> None:
        from torchrec import KeyedJaggedTensor

        ids = {n: ids[n].to(self.device, torch.int64) for n in self.names}
        # One bag per table (stride 1): the tables ask for different numbers of ids.
        kjt = KeyedJaggedTensor.from_lengths_sync(
            keys=self.names, values=torch.cat([ids[n] for n in self.names]),
            lengths=torch.tensor([len(ids[n]) for n in self.names], dtype=torch.int64, device=self.device))
        out = self.dmp(kjt)
        for n in self.names:
            self.caches[n].set(ids[n], out[n].values())

    # ------------------------------------------------------------------ shards
    def _weights(self) -> dict[str, Any]:
        """Table name -> its ShardedTensor (whose local shards are this rank's rows, in place)."""
        sd = self.dmp.state_dict()
        return {n: sd[f"ec.embeddings.{n}.weight"] for n in self.names}

    def row_ranges(self, name: str) -> list[tuple[int, int, int]]:
        """(rank, first row, rows) of every shard of table ``name``."""
        meta = self._weights()[name].metadata().shards_metadata
        return [(m.placement.rank(), m.shard_offsets[0], m.shard_sizes[0]) for m in meta]

    def local_table_bytes(self) -> int:
        """Bytes of table rows this rank holds (weights only; the optimizer state scales alike)."""
        return sum(s.tensor.numel() * s.tensor.element_size()
                   for w in self._weights().values() for s in w.local_shards())

    def local_state_bytes(self) -> int:
        """Bytes this rank holds for its table rows and their optimizer state (what the
        benchmarks compare with a replica's parameters, gradients and Adam moments)."""
        return sum(t.numel() * t.element_size() for part in self._local().values() for t in part.values())

    def _local(self) -> dict[str, dict[str, Tensor]]:
        """This rank's live shard tensors: ``{"weights": {table: t}, "<state>": {table: t}}``.

        Each table has at most one local shard (row-wise: one row block; table-wise: the
        whole table or nothing). The optimizer state (Adagrad's sum, Adam's moments) is
        row-sharded like the weights.
        """
        out: dict[str, dict[str, Tensor]] = {"weights": {}}
        for n, w in self._weights().items():
            for s in w.local_shards():
                out["weights"][n] = s.tensor
        for key, st in self.dmp.fused_optimizer.state_dict()["state"].items():
            n = key.removeprefix("ec.embeddings.").removesuffix(".weight")
            for sk, v in st.items():
                for s in getattr(v, "local_shards", lambda: [])():
                    out.setdefault(sk.removeprefix(f"{n}."), {})[n] = s.tensor
        return out

    def _init_shards(self, init_std: float, seed: int, zeros: set[str]) -> None:
        with torch.no_grad():
            for n, t in self._local()["weights"].items():
                if n in zeros:
                    t.zero_()
                    continue
                i, first = self.names.index(n), next(r0 for r, r0, _ in self.row_ranges(n) if r == self.rank)
                g = torch.Generator().manual_seed(((seed * 1_000_003 + i) * 2_147_483_647 + first) % 2**63)
                t.copy_(torch.randn(t.shape, generator=g) * init_std)

    def load_full(self, full: dict[str, dict[str, Tensor]]) -> None:
        """Copy this rank's rows out of whole tables ``{"weights": {table: [n, d]}, state...}``
        (a checkpoint, or an unsharded model's tables). Not a collective."""
        local = self._local()
        with torch.no_grad():
            for part, tables in full.items():
                for n, t in tables.items():
                    if n not in local.get(part, {}):
                        continue  # table-wise: a table another rank holds
                    mine = next((r0, k) for r, r0, k in self.row_ranges(n) if r == self.rank)
                    local[part][n].copy_(t[mine[0]:mine[0] + mine[1]].to(local[part][n].dtype))

    def local_copy(self, full: dict[str, dict[str, Tensor]] | None = None) -> dict[str, dict[str, Tensor]]:
        """A copy of this rank's table rows ``{"weights": {table: rows}}``: of the live
        tables, or cut out of whole ones (``full``, as :meth:`gather_full` returns)."""
        if full is None:
            return {"weights": {n: t.detach().cpu().clone() for n, t in self._local()["weights"].items()}}
        out: dict[str, Tensor] = {}
        for n, t in full["weights"].items():
            for r, r0, k in self.row_ranges(n):
                if r == self.rank:
                    out[n] = t[r0:r0 + k].clone()
        return {"weights": out}

    def load_local(self, local: dict[str, dict[str, Tensor]]) -> None:
        """Put a :meth:`local_copy` back into the live tables."""
        live = self._local()
        with torch.no_grad():
            for part, tables in local.items():
                for n, t in tables.items():
                    live[part][n].copy_(t)

    def gather_full(self, dst: int = 0, local: dict[str, dict[str, Tensor]] | None = None,
                    ) -> dict[str, dict[str, Tensor]] | None:
        """The whole tables and their optimizer state on rank ``dst`` (None elsewhere);
        of ``local`` (a :meth:`local_copy`) instead of the live tables if given.

        A collective (gloo has no gather of unequal sizes: every shard is padded to the
        largest). For checkpoints: the file holds plain tensors, so it loads with
        ``weights_only=True`` and at any world size.
        """
        local = self._local() if local is None else local
        out: dict[str, dict[str, Tensor]] = {}
        for part, tables in self._layout(local).items():
            for n, tail in tables.items():
                ranges = self.row_ranges(n)
                mine = local.get(part, {}).get(n)
                buf = torch.zeros(max(k for _, _, k in ranges), *tail, dtype=torch.float32, device=self.device)
                if mine is not None:
                    buf[:mine.shape[0]] = mine.float()
                bufs = [torch.empty_like(buf) for _ in range(self.world)] if self.rank == dst else None
                dist.gather(buf, bufs, dst=dst)
                if self.rank == dst:
                    full = torch.empty(sum(k for _, _, k in ranges), *tail, dtype=torch.float32)
                    for r, r0, k in ranges:
                        full[r0:r0 + k] = bufs[r][:k].cpu()
                    out.setdefault(part, {})[n] = full
        return out if self.rank == dst else None

    def _layout(self, local: dict[str, dict[str, Tensor]]) -> dict[str, dict[str, tuple[int, ...]]]:
        """``{part: {table: per-row shape}}`` over all ranks (table-wise: a rank lacks some
        tables), in the same order everywhere so that the gathers pair up."""
        mine = {part: {n: tuple(t.shape[1:]) for n, t in tables.items()} for part, tables in local.items()}
        every: list = [None] * self.world
        dist.all_gather_object(every, mine)
        merged: dict[str, dict[str, tuple[int, ...]]] = {}
        for theirs in every:
            for part, tables in theirs.items():
                merged.setdefault(part, {}).update(tables)
        return {part: {n: merged[part][n] for n in self.names if n in merged[part]} for part in sorted(merged)}


def _fused_params(optimizer: str, lr: float) -> dict[str, Any]:
    from fbgemm_gpu.split_embedding_configs import EmbOptimType

    if optimizer == "adam":
        return {"optimizer": EmbOptimType.ADAM, "learning_rate": lr}
    return {"optimizer": EmbOptimType.EXACT_ADAGRAD, "learning_rate": lr, "eps": ADAGRAD_EPS}
