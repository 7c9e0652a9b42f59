"""adc_dist: distributed training and hyper-parameter sweeps of ADC.

ADC ("Adaptive Deep Learning of Cross-Domain Loss in Collaborative Filtering",
Rafailidis & Weiss, arXiv 1907.01645) shares one user embedding table across K
domains and balances the per-domain losses with GradNorm. adc_dist trains it
data-parallel with Ray Train and sweeps it with Ray Tune.

Layout, one package per stage of the data's path (docs/ARCHITECTURE.md):
    adc_dist.data        readers, task registry, seeded splits, negatives, shards
    adc_dist.model       the ADC network and its full-ranking pair scorer
    adc_dist.balancing   domain-weight balancers (gradnorm, equal, static, uncertainty)
    adc_dist.train       the per-worker loop, evaluation and metrics, checkpoints, the run
                         directory, and `python -m adc_dist.train` (Ray Train)
    adc_dist.tune        search spaces, `python -m adc_dist.tune` (Ray Tune), Parquet results,
                         the report (`python -m adc_dist.report`)
    adc_dist.compare     `python -m adc_dist.compare`: ADC variants against baselines
    adc_dist.cluster     checks of cluster launcher YAMLs and KubeRay manifests
    adc_dist.cli         console scripts, the one command-line grammar, progress bars
    adc_dist.inputs      untrusted files (safe YAML, regular files) and user paths
"""

__version__ = "0.1.0"
