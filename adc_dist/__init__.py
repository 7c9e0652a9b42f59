"""adc_dist: distributed training and hyper-parameter sweeps of ADC.

ADC ("Adaptive Deep Learning of Cross-Domain Loss in Collaborative Filtering",
Rafailidis & Weiss, arXiv 1907.01645) shares one user embedding table across K
domains and balances the per-domain losses with GradNorm. adc_dist trains it
data-parallel with Ray Train and sweeps it with Ray Tune.

Layout (data -> model -> balancing -> loop -> Ray entry points -> results):
    adc_dist.data        readers, task registry, seeded splits, negatives, shards
    adc_dist.model       the ADC network and its full-ranking scorer
    adc_dist.balancing   domain-weight balancers (gradnorm, equal, static, uncertainty)
    adc_dist.metrics     Recall@N / NDCG@N; adc_dist.evaluate drives them
    adc_dist.loop        the per-worker training loop (plain PyTorch + torch.distributed)
    adc_dist.train       `python -m adc_dist.train` (Ray Train)
    adc_dist.tune        `python -m adc_dist.tune` (Ray Tune), results in Parquet
"""

__version__ = "0.1.0"
