"""Sparse embedding tables (``sparse_tables``): row gradients, LazyAdam, checkpoints, the config.

The two-rank behaviour (bitwise-identical ranks, gradients equal to one process on the
union) is in test_loop_distributed.py; here one process on a small generated task.
"""

from __future__ import annotations

import pytest
import torch

from adc_dist.balancing import make_balancer
from adc_dist.config import AUTO_SPARSE_ROWS, from_mapping
from adc_dist.data import load_task
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.errors import AdcError
from adc_dist.model.network import ADC
from adc_dist.model.shared_grads import coalesce_rows
from adc_dist.train import checkpoint as ckpt_io
from adc_dist.train.loop import epoch_batches, train_step
from adc_dist.train.optim import TableAdam, make_optimizer, sparse_table_names
from synthetic import make_task

TABLES = ("user_emb.weight", "user_specific.0.weight", "user_specific.1.weight", "item_embs.0.weight",
          "item_embs.1.weight")


def _setup(sparse: bool):
    # The default gmf model with every table drawn: from zero_init's zero Q_k the first step's
    # table gradients are ~0, where SparseAdam's eps and Adam's differ (see the first-step test).
    cfg = from_mapping({"d": 8, "batch_size": 64, "sparse_tables": sparse, "lr": 5e-3, "zero_init": False})
    task = make_task(seed=5)
    torch.manual_seed(cfg.seed)
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    return cfg, task, model, make_optimizer(model, cfg), make_balancer(cfg, task.num_domains)


def _steps(cfg, task, model, opt, bal, epoch: int, n: int | None = None) -> list:
    batches = list(epoch_batches(samplers_for(task), cfg, epoch, 0, 1))[:n]
    for users, items in batches:
        train_step(model, model, bal, opt, users, items, 1, loss=cfg.loss, l2=cfg.l2)
    return batches


def test_sparse_tables_make_a_table_adam_and_auto_chooses_by_the_tables_rows():
    cfg, _, model, opt, _ = _setup(True)
    assert cfg.interaction == "gmf" and cfg.user_repr == "shared+specific"  # the default model
    assert tuple(sparse_table_names(model)) == TABLES and isinstance(opt, TableAdam)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))
    _, _, dense_model, dense_opt, _ = _setup(False)
    assert sparse_table_names(dense_model) == [] and isinstance(dense_opt, torch.optim.Adam)
    auto = from_mapping({})
    assert auto.sparse_tables == "auto"
    # P, S_1, S_2 and the item tables: 3 x 30,000 + 10,000 rows = AUTO_SPARSE_ROWS
    assert auto.sparse_tables_for(30_000, [6_000, 4_000]) and not auto.sparse_tables_for(29_999, [6_000, 4_000])
    assert not auto.replace(weight_decay=1e-4).sparse_tables_for(10**6, [10**4])  # LazyAdam has no decay
    assert AUTO_SPARSE_ROWS == 100_000
    small = ADC.from_config(auto, 300, [200, 150])  # the paper tasks' size: dense
    assert sparse_table_names(small) == []


def test_a_first_sparse_step_is_dense_adams_step_on_the_batchs_rows_and_moves_no_other_row():
    # Adam's first step moves a row with a zero gradient by 0 and a touched entry by
    # lr * g / (|g| + eps) (m / (1 - b1) = g, sqrt(v / (1 - b2)) = |g|); LazyAdam corrects the
    # bias as Adam does, so its first step is dense Adam's on every entry (SparseAdam's was
    # not: it added eps to the uncorrected sqrt(v), 31.6x Adam's eps at step 1).
    after, grads = {}, {}
    for sparse in (False, True):
        cfg, task, model, opt, bal = _setup(sparse)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        if sparse:
            opt.tables.register_step_pre_hook(lambda *_: grads.update(
                {n: p.grad.to_dense().clone() for n, p in model.named_parameters() if n in TABLES}))
        (users, items), = _steps(cfg, task, model, opt, bal, 0, 1)
        after[sparse] = {n: p.detach().clone() for n, p in model.named_parameters()}
    for n in after[False]:
        if n in TABLES:
            g = grads[n]
            torch.testing.assert_close(after[True][n], before[n] - cfg.lr * g / (g.abs() + 1e-8), rtol=0, atol=1e-7)
            assert (g != 0).any(1).sum() > 0
        torch.testing.assert_close(after[True][n], after[False][n], rtol=0, atol=1e-7)
    touched = torch.unique(torch.cat(users))
    moved = (after[True]["user_emb.weight"] != before["user_emb.weight"]).any(1).nonzero().flatten()
    assert torch.equal(moved, touched)  # exactly the batch's users, no other row


def test_lazy_adam_is_torch_adam_on_the_touched_rows_of_real_batches(data_root):
    # Three steps of the default model on amazon-book-music: before each update the touched
    # rows, their gradient, moments and step count are copied into a fresh torch.optim.Adam
    # (fused, whose kernel LazyAdam runs on the rows); LazyAdam's rows must come out bitwise
    # as Adam's, and every other row and moment unmoved.
    cfg = from_mapping({"task": "amazon-book-music", "d": 16, "sparse_tables": True, "lr": 5e-3})
    task = load_task(cfg.task, data_root=str(data_root))
    torch.manual_seed(cfg.seed)
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    opt, bal = make_optimizer(model, cfg), make_balancer(cfg, task.num_domains)
    tables = dict(model.named_parameters())
    seen = []

    def before_step(*_):
        snap = {}
        for n in TABLES:
            p, grad = tables[n], tables[n].grad
            assert grad.is_sparse and grad.is_coalesced()  # one row per touched id: no coalesce left to do
            rows, g = grad.indices()[0], grad.values()
            state = opt.tables.state.get(p) or {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                                "exp_avg_sq": torch.zeros_like(p)}
            ref = torch.nn.Parameter(p.detach()[rows].clone())
            ref.grad = g.clone()
            adam = torch.optim.Adam([ref], lr=cfg.lr, fused=True)
            adam.state[ref] = {"step": state["step"].clone(), "exp_avg": state["exp_avg"][rows].clone(),
                               "exp_avg_sq": state["exp_avg_sq"][rows].clone()}
            adam.step()
            snap[n] = (rows, ref.detach(), adam.state[ref], p.detach().clone(),
                       {k: state[k].clone() for k in ("exp_avg", "exp_avg_sq")})
        seen.append(snap)

    opt.tables.register_step_pre_hook(before_step)
    batches = _steps(cfg, task, model, opt, bal, 0, 3)
    assert len(seen) == 3 and all(len(u[0]) == cfg.batch_size for u, _ in batches)
    for n, (rows, want, want_state, old, old_state) in seen[-1].items():
        p, state = tables[n], opt.tables.state[tables[n]]
        assert state["step"] == 3
        assert torch.equal(p[rows], want), n
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[k][rows], want_state[k]), (n, k)
        rest = torch.ones(len(p), dtype=torch.bool)
        rest[rows] = False
        assert rest.any() and torch.equal(p[rest], old[rest])
        for k in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(state[k][rest], old_state[k][rest])
    # The step 3 rows of P moved by Adam's update: not a no-op compared with itself.
    rows, want, _, old, _ = seen[-1]["user_emb.weight"]
    assert (want != old[rows]).any(1).all()


def test_later_steps_leave_the_rows_and_moments_of_users_never_seen_alone():
    cfg, task, model, opt, bal = _setup(True)
    init = model.user_emb.weight.detach().clone()
    batches = _steps(cfg, task, model, opt, bal, 0, 3)
    seen = torch.unique(torch.cat([torch.cat(u) for u, _ in batches]))
    unseen = torch.ones(task.n_users, dtype=torch.bool)
    unseen[seen] = False
    assert 0 < int(unseen.sum()) < task.n_users
    assert torch.equal(model.user_emb.weight[unseen], init[unseen])
    moments = opt.tables.state[model.user_emb.weight]
    assert (moments["exp_avg"][unseen] == 0).all() and (moments["exp_avg"][seen] != 0).any()


def test_a_resumed_sparse_run_continues_bitwise_like_an_uninterrupted_one(tmp_path):
    cfg, task, model, opt, bal = _setup(True)
    _steps(cfg, task, model, opt, bal, 0)
    ckpt_io.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "balancer": bal.state_dict(),
                  "epoch": 1, "history": [], "config": cfg.to_dict()}, tmp_path / "state.pt")
    _steps(cfg, task, model, opt, bal, 1)

    state = ckpt_io.load(tmp_path / "state.pt")  # torch.load(weights_only=True) inside
    _, _, model2, opt2, bal2 = _setup(True)
    model2.load_state_dict(state["model"])
    opt2.load_state_dict(state["optimizer"])
    bal2.load_state_dict(state["balancer"])
    _steps(cfg, task, model2, opt2, bal2, 1)
    for (n, p), p2 in zip(model.named_parameters(), model2.parameters()):
        assert torch.equal(p, p2), n
    with pytest.raises(ValueError, match="sparse_tables differs"):
        opt2.load_state_dict(torch.optim.Adam(model2.parameters()).state_dict())


def test_a_checkpoint_with_sparseadams_table_state_resumes_under_lazy_adam():
    # Runs written before LazyAdam saved torch.optim.SparseAdam's state: the same moments,
    # an integer step. It loads, and the next step continues that step count.
    cfg, task, model, opt, bal = _setup(True)
    tables = [p for n, p in model.named_parameters() if n in TABLES]
    old = torch.optim.SparseAdam(tables, lr=cfg.lr)
    (users, items), = list(epoch_batches(samplers_for(task), cfg, 0, 0, 1))[:1]
    sum(x.sum() for x in model(users, items)).backward()  # plain sparse lookups: COO gradients
    old.step()
    state = old.state_dict()
    assert isinstance(state["state"][0]["step"], int)
    opt.tables.load_state_dict(state)
    _steps(cfg, task, model, opt, bal, 0, 1)
    assert all(float(opt.tables.state[p]["step"]) == 2 for p in tables)
    assert torch.isfinite(model.user_emb.weight).all()


def test_the_config_refuses_weight_decay_with_sparse_tables_true_and_the_paper_preset_keeps_dense_tables():
    with pytest.raises(AdcError, match="weight_decay needs --sparse_tables false or auto"):
        from_mapping({"weight_decay": 1e-4, "sparse_tables": True})
    assert from_mapping({"weight_decay": 1e-4}).weight_decay == 1e-4
    assert from_mapping({"preset": "paper"}).sparse_tables == "false"
    assert from_mapping({"sparse_tables": True}).sparse_tables == "true"  # YAML's and Tune's booleans
    assert from_mapping({"sparse_tables": "False"}).sparse_tables == "false"
    with pytest.raises(AdcError, match="sparse_tables must be one of"):
        from_mapping({"sparse_tables": "sometimes"})


def test_coalesced_rows_sum_the_duplicates_of_a_batch():
    idx = torch.tensor([4, 1, 4, 9, 1, 4])
    vals = torch.arange(12.0).view(6, 2)
    uniq, summed = coalesce_rows(idx, vals)
    assert uniq.tolist() == [1, 4, 9]
    dense = torch.zeros(10, 2).index_add_(0, idx, vals)
    assert torch.equal(summed, dense[uniq])
