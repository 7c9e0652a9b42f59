"""One training run: the per-worker loop (``loop``), evaluation and metrics (``evaluate``,
``metrics``), reporting and checkpoints (``reporting``), the run directory (``run_dir``) and
the Ray Train entry point (``launch``, run by ``python -m adc_dist.train``).

Only ``launch`` imports Ray, and only inside functions: ``loop`` is plain PyTorch +
torch.distributed and runs in-process. Nothing is imported here, so that ``--help`` stays fast.
"""
