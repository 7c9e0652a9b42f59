"""TorchRec-sharded embedding tables (--embedding_sharding): two gloo ranks on CPU.

One spawn of two ranks does everything on the real amazon-book-music task and writes what
it saw; the tests below read it. Against the replicated path with the *same* optimizer
(Adagrad on the tables, which is what the fused CPU optimizer computes; fused Adam on the
dense part) and the same initial parameters, a sharded run must take the same steps:
same losses, GradNorm weights, tables and ranking metrics, up to float summation order.
Then a checkpointed run, stopped after epoch 1 and resumed, must end where an
uninterrupted run ends.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

from adc_dist.balancing import make_balancer
from adc_dist.config import from_mapping
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.model.network import ADC
from adc_dist.model.sharded_tables import ADAGRAD_EPS
from adc_dist.train.evaluate import evaluate
from adc_dist.train.loop import epoch_batches, fit, prepare_task, subsample_train, train_step
from adc_dist.train.optim import dense_adam
from adc_dist.train.reporting import LocalReporter
from adc_dist.train.sharded_loop import build_sharded, evaluate_sharded, sharded_grads_fn
from procs import file_rendezvous

WORLD = 2
STEPS = 3  # compared steps per epoch, two epochs
# The default model (gmf, shared + specific user vectors, GradNorm at P) row-wise, the gated
# user vectors (whose L2 gradient at P carries g_k^2) row-wise, and the paper's MLP (GradNorm
# at the last shared layer) table-wise.
CASES = {"gmf-row_wise": ({}, "row_wise"), "gated-row_wise": ({"user_repr": "shared+gated"}, "row_wise"),
         "paper-table_wise": ({"preset": "paper"}, "table_wise")}
# Every table drawn (not the default's zero S_k, Q_k): the tables are compared relative to their
# size, which from zero would be the size of six steps, where float summation order shows.
BASE = {"task": "amazon-book-music", "d": 16, "batch_size": 2048, "eval_users": 300, "topk": [10],
        "early_stop_metric": "ndcg@10", "balancer_lr": 0.05, "zero_init": False}


def _tables_of(model: ADC) -> dict[str, torch.Tensor]:
    out = {"user": model.user_emb.weight}
    if model.user_specific is not None:
        out.update({f"user_spec_{k}": m.weight for k, m in enumerate(model.user_specific)})
    out.update({f"item_{k}": m.weight for k, m in enumerate(model.item_embs)})
    return out


class _TablesAdagradDenseAdam:
    """The replicated reference's optimizer: Adagrad on the tables (as the fused CPU one), fused Adam on the
    rest (as the sharded run's dense part)."""

    def __init__(self, model: ADC, lr: float) -> None:
        tables = list(_tables_of(model).values())
        ids = {id(p) for p in tables}
        self.opts = [torch.optim.Adagrad(tables, lr=lr, eps=ADAGRAD_EPS),
                     dense_adam([p for p in model.parameters() if id(p) not in ids], lr)]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.opts:
            o.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for o in self.opts:
            o.step()


def _compare(rank: int, task, case: str) -> dict:
    """Replicated and sharded side by side from the same initial parameters, on the same batches."""
    overrides, sharding = CASES[case]
    cfg = from_mapping({**BASE, **overrides, "embedding_sharding": sharding})
    torch.manual_seed(cfg.seed)
    ref = ADC.from_config(cfg, task.n_users, task.n_items)
    ref_net, ref_opt = DDP(ref), _TablesAdagradDenseAdam(ref, cfg.lr)
    model, net, opt, tables = build_sharded(cfg, task.n_users, list(task.n_items), torch.device("cpu"))
    tables.load_full({"weights": {n: t.detach() for n, t in _tables_of(ref).items()}})
    dense = model.state_dict()
    model.load_state_dict({k: v for k, v in ref.state_dict().items() if k in dense})
    bal_ref, bal = make_balancer(cfg, task.num_domains), make_balancer(cfg, task.num_domains)
    samplers = samplers_for(task)
    rec: dict = {"ref_losses": [], "losses": [], "ref_w": [], "w": [], "w_spread": []}
    for epoch in range(2):
        for step, (users, items) in enumerate(epoch_batches(samplers, cfg, epoch, rank, WORLD)):
            if step == STEPS:
                break
            lr_, _ = train_step(ref_net, ref, bal_ref, ref_opt, users, items, WORLD, loss=cfg.loss, l2=cfg.l2)
            ls, _ = train_step(net, model, bal, opt, users, items, WORLD, loss=cfg.loss, l2=cfg.l2,
                               shared_grads=sharded_grads_fn(WORLD))
            w = bal.weights()
            both = [torch.empty_like(w) for _ in range(WORLD)]
            dist.all_gather(both, w)
            rec["w_spread"].append(float((both[0] - both[1]).abs().max()))
            for key, v in (("ref_losses", lr_), ("losses", ls), ("ref_w", bal_ref.weights()), ("w", w)):
                rec[key].append(v.clone())
    full = tables.gather_full()
    if rank == 0:
        rec["table_err"] = {n: float((full["weights"][n] - t.detach()).abs().max()) for n, t in _tables_of(ref).items()}
        rec["table_scale"] = {n: float(t.detach().abs().max()) for n, t in _tables_of(ref).items()}
    rec["bytes"] = tables.local_table_bytes()
    rec["full_bytes"] = sum(t.numel() * t.element_size() for t in _tables_of(ref).values())
    ref.eval()
    rec["ref_eval"] = evaluate(ref.score_all, task, "valid", cfg.topk, rank=rank, world=WORLD,
                               user_sample=cfg.eval_users, sample_seed=cfg.seed).flat()
    rec["eval"] = evaluate_sharded(model, tables, task, "valid", cfg, rank, WORLD, torch.device("cpu")).flat()
    return rec


class _Stop(Exception):
    pass


class _StopAfterFirstEpoch(LocalReporter):
    def report(self, metrics, checkpoint) -> None:
        super().report(metrics, checkpoint)
        if metrics["epoch"] == 1:
            raise _Stop


def _resume_runs(task, run_root: str) -> dict:
    cfg = from_mapping({**BASE, "embedding_sharding": "row_wise", "batch_size": 4096, "epochs": 2, "patience": 0})
    whole = fit(cfg, LocalReporter(f"{run_root}/whole", quiet=True), task=task)
    try:
        fit(cfg, _StopAfterFirstEpoch(f"{run_root}/stopped", quiet=True), task=task)
    except _Stop:
        pass
    resumed = fit(cfg, LocalReporter(f"{run_root}/stopped", quiet=True), task=task)
    return {"whole": whole, "resumed": resumed}


def _rank_main(rank: int, init_method: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=WORLD)
    try:
        task = prepare_task(from_mapping(BASE))
        out = {case: _compare(rank, task, case) for case in CASES}
        # The default's initial tables (zero_init: S_k and Q_k zero, P drawn), sharded row-wise.
        zero = from_mapping({**BASE, "embedding_sharding": "row_wise", "zero_init": True})
        init = build_sharded(zero, task.n_users, list(task.n_items), torch.device("cpu"))[3].gather_full()
        if rank == 0:
            out["init"] = {n: float(t.std()) for n, t in init["weights"].items()}
        # A tenth of the positives: the resume check trains whole epochs.
        small = subsample_train(subsample_train(task, "book", 0.1, 0), "music", 0.2, 0)
        out["resume"] = _resume_runs(small, out_dir)
        torch.save(out, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("sharded")
    mp.spawn(_rank_main, args=(file_rendezvous(tmp), str(tmp)), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], tmp


def test_sharded_tables_start_like_the_replicated_model_s_and_q_at_zero_and_p_drawn(two_ranks):
    init = two_ranks[0][0]["init"]
    assert set(init) == {"user", "user_spec_0", "user_spec_1", "item_0", "item_1"}
    assert 0.09 < init["user"] < 0.11  # N(0, init_std^2), init_std 0.1 (the default)
    assert all(v == 0.0 for n, v in init.items() if n != "user")


@pytest.mark.parametrize("case", CASES)
def test_sharded_tables_take_the_same_steps_as_replicated_ones_with_the_same_optimizer(case, two_ranks):
    rec = two_ranks[0][0][case]
    for ref, got in zip(rec["ref_losses"], rec["losses"]):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
    for ref, got in zip(rec["ref_w"], rec["w"]):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-6)
    # The balancer did move (identical ones would prove nothing), and the loss fell.
    assert not torch.allclose(rec["w"][-1], torch.ones(2))
    assert rec["losses"][-1].sum() < rec["losses"][0].sum()
    for n, err in rec["table_err"].items():
        assert err <= 1e-4 * rec["table_scale"][n], (n, err)


@pytest.mark.parametrize("case", CASES)
def test_ranking_with_sharded_tables_equals_ranking_with_replicated_ones(case, two_ranks):
    rec = two_ranks[0][0][case]
    assert rec["eval"].keys() == rec["ref_eval"].keys()
    for key, ref in rec["ref_eval"].items():
        assert rec["eval"][key] == pytest.approx(ref, abs=1e-6), key
    assert rec["eval"]["valid_ndcg10_mean"] > 0


def test_ranks_hold_identical_gradnorm_weights_with_the_shared_table_sharded(two_ranks):
    for r in range(WORLD):
        spreads = two_ranks[0][r]["gmf-row_wise"]["w_spread"]
        assert len(spreads) == 2 * STEPS and max(spreads) == 0.0


def test_row_wise_holds_half_the_table_bytes_per_rank_and_table_wise_splits_whole_tables(two_ranks):
    ranks = two_ranks[0]
    for r in range(WORLD):
        row = ranks[r]["gmf-row_wise"]
        assert abs(row["bytes"] / row["full_bytes"] - 1 / WORLD) < 0.01
    tw = [ranks[r]["paper-table_wise"] for r in range(WORLD)]
    assert sum(t["bytes"] for t in tw) == tw[0]["full_bytes"]
    assert all(0 < t["bytes"] < t["full_bytes"] for t in tw)


def test_a_stopped_and_resumed_sharded_run_ends_where_an_uninterrupted_one_does(two_ranks):
    runs, tmp = two_ranks
    res = runs[0]["resume"]
    whole, resumed = res["whole"], res["resumed"]
    assert len(resumed["history"]) == len(whole["history"]) == 2
    skip = ("time", "_per_s", "rss")
    for a, b in zip(whole["history"], resumed["history"]):
        for key, v in a.items():
            if not any(s in key for s in skip):
                assert b[key] == pytest.approx(v, rel=1e-6, abs=1e-9), key
    assert resumed["final"] == pytest.approx(whole["final"], rel=1e-6)
    # The file is the project's safe format: tensors and JSON only, whole tables inside.
    from adc_dist.train import checkpoint as ckpt_io

    state = ckpt_io.load(tmp / "stopped" / "checkpoints" / "state.pt")
    assert state["model"]["tables"]["user"].shape == (2495, 16)
    assert set(state["optimizer"]["tables"]) == {"momentum1"}


def test_sharding_without_torchrec_is_one_line_that_says_how_to_install_it(tmp_path):
    # A torchrec that fails to import, ahead of the real one on the path.
    (tmp_path / "torchrec.py").write_text("raise ImportError(\"No module named 'torchrec'\")\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    p = subprocess.run([sys.executable, "-m", "adc_dist.train", "--local", "--embedding_sharding", "row_wise",
                        "--storage_path", str(tmp_path / "runs")], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "needs TorchRec" in lines[0] and "pip install --no-deps torchrec==1.8.0" in lines[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
