"""Guard: ADC's loop, driving a plain dot-product scorer, trains as well as BPR-MF.

This separates pipeline regressions (sampler, batch plan, losses, early stopping,
evaluation) from model questions: with ``interaction=gmf`` and one domain, ADC is BPR-MF
(p . q + item bias, BPR, L2 on the batch's embeddings), so its validation NDCG@10 must land
within 5 % of the BPR-MF baseline's (adc_dist.compare.baselines.mf) trained with the same
settings and seed on the same split. Music of amazon-book-music: the smaller domain, under
a second per epoch on 2 cores.

With 5 negatives (the default's), measured on the 2-core box after the torch sampler landed
(this test's code with those settings, seed 0): 0.0822 vs 0.0810 (101 %) after 10
epochs, 0.1032 vs 0.0976 (106 %) after 30. The guard trains 10 epochs (a third of the
time): the margin is as wide there as after 30, on four seeds (ADC / BPR-MF best valid
NDCG@10, seeds 0-3, from benchmarks/guard_margin.py on the 2-core AMD EPYC box, no GPU):

    after 10 epochs   101.5 %  102.3 %  101.1 %  102.7 %
    after 15 epochs   101.6 %  103.8 %  100.9 %   97.7 %
    after 30 epochs   105.7 %  102.8 %  100.6 %  101.4 %

Open finding: with ONE negative the loop falls behind BPR-MF as training goes on (97 % after
25 epochs at lr 2e-2, 94 % after 40 and 90 % after 80 at lr 1e-2; 97 % after 25 with the
earlier numpy sampler), not yet explained (same loss and L2 formulas; the samplers differ):
this guard runs the default's setting, where the two agree.
"""

from __future__ import annotations

from adc_dist.compare.baselines.mf import fit_factor_model
from adc_dist.config import TrainConfig
from adc_dist.train.launch import run
from adc_dist.train.loop import prepare_task

EPOCHS = 10  # see the docstring: the margin on four seeds
SETTINGS = {"d": 64, "lr": 1e-2, "negatives": 5, "batch_size": 4096, "init_std": 0.1}
ZERO_INIT = False  # BPR-MF draws its item table too: the same model, not the default's zero Q_k
L2 = 1e-4


def test_the_loop_with_a_dot_product_scorer_lands_within_5_percent_of_bpr_mf(data_root, tmp_path):
    cfg = TrainConfig(task="amazon-book-music", domains=["music"], seed=0, interaction="gmf", user_repr="shared",
                      item_bias=True, loss="bpr", l2=L2, balancer="equal", epochs=EPOCHS, patience=0, topk=[10],
                      zero_init=ZERO_INIT, num_workers=1, storage_path=str(tmp_path), name="guard",
                      **SETTINGS).validate()
    adc = run(cfg, local=True, quiet=True).final["best_valid_ndcg10_mean"]
    task = prepare_task(cfg)
    mf = fit_factor_model(task, loss="bpr", reg=L2, epochs=EPOCHS, eval_every=1, patience=0, ks=(10,), seed=0,
                          **SETTINGS).best_valid["valid_ndcg10_mean"]
    print(f"guard: valid NDCG@10 of Music after {EPOCHS} epochs: ADC loop + dot product {adc:.4f}, BPR-MF {mf:.4f}")
    assert mf > 0.05  # BPR-MF learnt something (Music's valid NDCG@10 is ~0.15 at convergence)
    assert adc >= 0.95 * mf, f"ADC loop with a dot product: valid NDCG@10 {adc:.4f} vs BPR-MF {mf:.4f}"
