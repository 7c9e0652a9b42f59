"""ADC.step_lookups: one lookup per table and ids tensor in a step, the numbers of separate lookups.

Inside the context the L2 term (``embedding_sq_norms``) reads the rows the forward gathered
instead of looking every table up again. These tests run the old way (the forward and the
L2 term each look the tables up) and the new way on the same real amazon-book-music
batches and compare the per-domain losses, GradNorm's per-domain gradients (the tap must not
pick up the L2 term's gradient, which ``shared_row_grads`` adds itself) and every
parameter's gradient of the weighted loss.
"""

from __future__ import annotations

import copy

import pytest
import torch

from adc_dist.config import from_mapping
from adc_dist.data import load_task
from adc_dist.data.torch_sampler import samplers_for
from adc_dist.model.network import ADC, domain_losses
from adc_dist.model.row_tables import step_rows
from adc_dist.model.shared_grads import shared_layer_grads, shared_row_grads
from adc_dist.train.loop import epoch_batches

# zero_init off: S_k and Q_k start random, so the L2 term has a gradient on every table.
VARIANTS = {
    "default": {},  # gmf, shared+specific, item bias, BPR, l2 3e-3
    "gated": {"user_repr": "shared+gated"},
    "mlp+gmf": {"interaction": "mlp+gmf", "loss": "bce"},
    "paper+l2": {"preset": "paper", "l2": 1e-3},
    "sparse": {"sparse_tables": True},
}


@pytest.fixture(scope="module")
def book_music(data_root):
    return load_task("amazon-book-music", data_root=str(data_root))


def _step_pieces(model: ADC, users, items, cfg, weights: torch.Tensor):
    """(losses [K], GradNorm's per-domain gradients, every parameter's gradient of sum_k w_k L_k)."""
    tap = model.has_mlp is False or len(model.layers) >= 2
    logits, io = model(users, items, last_layer_io=True) if tap else (model(users, items), None)
    losses = domain_losses(logits, cfg.loss) + cfg.l2 * model.embedding_sq_norms(users, items)
    if model.has_mlp:
        per_domain = [shared_layer_grads(model, losses, io, [it.numel() for it in items], cfg.l2)]
    else:
        per_domain = [g for _, g in shared_row_grads(model, losses, io, cfg.l2)]
    model.zero_grad(set_to_none=True)
    (weights * losses).sum().backward()
    grads = {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone() for n, p in model.named_parameters()}
    return losses.detach(), per_domain, grads


@pytest.mark.parametrize("variant", VARIANTS)
def test_one_lookup_per_table_gives_the_losses_and_gradients_of_separate_lookups(book_music, variant):
    task = book_music
    cfg = from_mapping({"task": task.name, "d": 32, "batch_size": 512, "zero_init": False, **VARIANTS[variant]})
    torch.manual_seed(cfg.seed)
    old = ADC.from_config(cfg, task.n_users, task.n_items)
    new = copy.deepcopy(old)
    users, items = next(iter(epoch_batches(samplers_for(task), cfg, 0, 0, 1)))
    weights = torch.tensor([0.7, 1.3])  # GradNorm's weights are not 1 after the first step

    calls = {"old": {}, "new": {}}
    for tag, model in (("old", old), ("new", new)):
        for name, table in model.tables().items():
            table.register_forward_hook(lambda *_, tag=tag, name=name: calls[tag].update(
                {name: calls[tag].get(name, 0) + 1}))
    torch.manual_seed(1)  # dropout masks (none here) and nothing else random: the same for both
    with step_rows(old, users, items):
        want = _step_pieces(old, users, items, cfg, weights)
    with step_rows(new, users, items), new.step_lookups():
        got = _step_pieces(new, users, items, cfg, weights)
    assert new._step_lookups is None  # nothing of the step's graph kept past it

    # The forward and the L2 term looked every table up before; now the L2 term reads the
    # forward's rows (P once per domain: each domain's users are their own tensor).
    K, l2 = task.num_domains, cfg.l2 > 0
    for name in old.tables():
        per_step = K if name == "user" else 1
        assert calls["old"][name] == per_step * (2 if l2 else 1), name
        assert calls["new"][name] == per_step, name

    (want_losses, want_gk, want_grads), (got_losses, got_gk, got_grads) = want, got
    assert torch.equal(got_losses, want_losses)  # the same rows: the forward is bitwise the same
    for a, b in zip(got_gk, want_gk):
        # The tap's gradient never reaches the L2 term's view: bitwise the same. A tap that
        # included it would count the L2 term's 2 l2 P[u] / B_k twice (shared_row_grads adds it).
        assert torch.equal(a, b)
    assert want_grads.keys() == got_grads.keys()
    for n in want_grads:
        # One scatter of the summed [B, C, d] gradient against two scatters added: float32
        # rounding (measured: at most 1.8e-7 of the parameter's largest gradient entry).
        torch.testing.assert_close(got_grads[n], want_grads[n], rtol=1e-5, atol=1e-9, msg=n)
    assert float(want_grads["user_emb.weight"].abs().max()) > 1e-6  # a real gradient was compared


def test_outside_a_step_every_lookup_is_a_plain_one(book_music):
    task = book_music
    cfg = from_mapping({"task": task.name, "d": 8})
    model = ADC.from_config(cfg, task.n_users, task.n_items)
    users, items = next(iter(epoch_batches(samplers_for(task), cfg, 0, 0, 1)))
    with pytest.raises(RuntimeError, match="boom"):
        with model.step_lookups():
            model(users, items)
            raise RuntimeError("boom")
    assert model._step_lookups is None  # cleared after an error too
    n = {"calls": 0}
    model.item_embs[0].register_forward_hook(lambda *_: n.update(calls=n["calls"] + 1))
    model(users, items)
    model.embedding_sq_norms(users, items)
    assert n["calls"] == 2
