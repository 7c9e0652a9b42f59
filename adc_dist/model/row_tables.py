"""Embedding tables with row-sparse gradients whose step works on its unique rows only.

With ``sparse_tables`` (adc_dist.train.optim) every table of ADC (P, S_k, Q_k) is a
:class:`RowTable`. Outside a step it is an ``nn.Embedding(sparse=True)``: a lookup's
gradient is a COO tensor with one row per looked-up id, duplicates included. That was
the per-row cost of the sparse path (docs/performance.md, "Scaling with users"): P is
looked up four times a step (two domains, forward and L2 term), each lookup added its
own COO rows, and the optimizer then coalesces them (a sort and a reduction) and works
through sparse masks and sparse adds.

Inside :func:`step_rows` a table gathers the step's unique ids once (one
``torch.unique`` over every lookup of the table in that step), holds their rows as one
dense leaf ``[n_unique, d]``, and answers every lookup from that leaf. The backward
then accumulates a dense gradient per unique row (no COO, no coalesce), which a hook
hands over as the table's ``.grad``: a COO tensor flagged coalesced
(sorted unique ids, one row each) that the optimizer and the cross-rank sum read
without another sort. The numbers are those of the plain lookup: the same rows, the
same gradient (summed over a row's occurrences).

A lookup the step repeats with the same ids tensor (the forward and the L2 term) does not
reach the table at all: ``ADC.step_lookups`` answers it from the first one's rows, for
dense and sparse tables alike.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class RowTable(nn.Embedding):
    """``nn.Embedding(n, d, sparse=True)`` that answers from a step's unique rows when
    :func:`step_rows` has set them (``weight`` stays the parameter: same state_dict)."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__(num_embeddings, embedding_dim, sparse=True)
        self.step_ids: Tensor | None = None  # sorted unique ids of the step
        self.step_rows: Tensor | None = None  # their rows, a leaf [n_unique, d]

    def forward(self, idx: Tensor) -> Tensor:
        if self.step_rows is None:
            return super().forward(idx)
        # Every id of the step is in step_ids (step_rows gathers them all), so the sorted
        # search finds its own row; a foreign id would read a neighbour's: never passed.
        return F.embedding(torch.searchsorted(self.step_ids, idx), self.step_rows)


def lookups(model: nn.Module, users: Sequence[Tensor], items: Sequence[Tensor]) -> list[tuple[RowTable, Tensor]]:
    """Every RowTable of an ADC model with the ids a step on (users, items) looks up in it:
    P all users, S_k domain k's users, Q_k domain k's candidate items. Dense tables: none,
    and nothing concatenated (this runs every step of every run)."""
    if not isinstance(model.user_emb, RowTable):  # every table is a RowTable, or none is
        return []
    pairs = [(model.user_emb, torch.cat([u.reshape(-1) for u in users]))]
    if model.user_specific is not None:
        pairs += [(t, u.reshape(-1)) for t, u in zip(model.user_specific, users)]
    pairs += [(t, it.reshape(-1)) for t, it in zip(model.item_embs, items)]
    return [(t, ids) for t, ids in pairs if isinstance(t, RowTable)]


@contextmanager
def step_rows(model: nn.Module, users: Sequence[Tensor], items: Sequence[Tensor]) -> Iterator[None]:
    """Inside: every RowTable of ``model`` answers lookups of this step's ids from one dense
    leaf of its unique rows (run the step's forward here; the backward may come later).
    When the backward has summed the leaf's gradient, a hook adds it to the table's
    ``.grad`` as a coalesced COO tensor (sorted unique ids, one row each). On exit the
    tables answer normally again. A model without RowTables: a context that does nothing."""
    tables = lookups(model, users, items)
    try:
        for t, ids in tables:
            uniq = torch.unique(ids, sorted=True)
            rows = t.weight.detach().index_select(0, uniq).requires_grad_()
            rows.register_post_accumulate_grad_hook(_to_table_grad(t.weight, uniq))
            t.step_ids, t.step_rows = uniq, rows
        yield
    finally:
        for t, _ in tables:
            t.step_ids = t.step_rows = None


def _to_table_grad(weight: nn.Parameter, ids: Tensor):
    """The hook that moves a step leaf's gradient into its table's ``.grad``."""
    def hook(rows: Tensor) -> None:
        grad = torch.sparse_coo_tensor(ids[None], rows.grad, weight.shape, is_coalesced=True, check_invariants=False)
        weight.grad = grad if weight.grad is None else weight.grad + grad
        rows.grad = None  # the table's .grad holds it now (no second copy kept alive)
    return hook
