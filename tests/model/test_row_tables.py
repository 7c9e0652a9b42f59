"""RowTable and step_rows: one gather of a table's unique rows per step, the same numbers as a plain lookup."""

from __future__ import annotations

import pytest
import torch

from adc_dist.model.network import ADC, domain_losses
from adc_dist.model.row_tables import RowTable, step_rows
from synthetic import make_task


def _model_and_batch():
    task = make_task(seed=2)
    torch.manual_seed(0)
    model = ADC(task.n_users, task.n_items, 8, user_repr="shared+specific", interaction="gmf", item_bias=True,
                sparse=True)
    g = torch.Generator().manual_seed(1)
    # repeated users and items: the duplicates a step's lookups sum
    users = [torch.randint(0, 40, (64,), generator=g) for _ in task.n_items]
    items = [torch.randint(0, min(30, n), (64, 6), generator=g) for n in task.n_items]
    return model, users, items


def _loss(model, users, items):
    return domain_losses(model(users, items), "bpr").sum() + 1e-2 * model.embedding_sq_norms(users, items).sum()


def test_a_step_through_the_unique_rows_gives_the_plain_lookups_gradient_as_coalesced_rows():
    model, users, items = _model_and_batch()
    tables = {n: m for n, m in model.named_modules() if isinstance(m, RowTable)}
    assert len(tables) == 5  # P, S_1, S_2, Q_1, Q_2
    _loss(model, users, items).backward()  # plain sparse lookups: COO rows with duplicates
    want = {n: t.weight.grad.to_dense() for n, t in tables.items()}
    assert not tables["user_emb"].weight.grad.is_coalesced()
    model.zero_grad(set_to_none=True)

    with step_rows(model, users, items):
        loss = _loss(model, users, items)
        assert all(t.step_rows is not None for t in tables.values())
    assert all(t.step_rows is None for t in tables.values())  # normal lookups again after the forward
    loss.backward()  # later, as in the loop: the hooks still hand the rows over
    for n, t in tables.items():
        g = t.weight.grad
        assert g.is_sparse and g.is_coalesced(), n
        ids = g.indices()[0]
        assert torch.equal(ids, torch.unique(ids))  # sorted, one row per id: nothing left to coalesce
        torch.testing.assert_close(g.to_dense(), want[n], rtol=1e-6, atol=1e-9)
    assert torch.equal(tables["user_emb"].weight.grad.indices()[0], torch.unique(torch.cat(users)))
    assert torch.equal(tables["item_embs.1"].weight.grad.indices()[0], torch.unique(items[1]))


def test_step_rows_reads_the_table_as_it_is_and_leaves_no_cache_after_an_error():
    model, users, items = _model_and_batch()
    with torch.no_grad():
        plain = model(users, items)
    with pytest.raises(RuntimeError, match="boom"):
        with step_rows(model, users, items):
            with torch.no_grad():
                cached = model(users, items)
            raise RuntimeError("boom")
    for a, b in zip(plain, cached):
        assert torch.equal(a, b)
    assert model.user_emb.step_rows is None and model.item_embs[0].step_ids is None
    dense = ADC(50, [20, 10], 8, interaction="gmf")  # dense tables: the context does nothing
    with step_rows(dense, users, [it % 10 for it in items]):
        assert not any(isinstance(m, RowTable) for m in dense.modules())
