"""Offline checks of cluster files: Ray cluster launcher YAMLs, KubeRay manifests, runtime envs.

Nothing here reaches a cloud. A launcher file is validated against the JSON schema inside
the installed ray package and by Ray's own ``prepare_config``/``validate_config``; a KubeRay
manifest against the fields of the ``ray.io/v1`` CRDs; both for what would fail on a real
cluster (GPU counts and names, pinned versions, start commands, exposure, secrets) and for
the commands they run (the real ``adc_dist.train`` / ``adc_dist.tune`` parsers).

    python -m adc_dist.cluster check cluster/          # see __main__.py
"""

from adc_dist.cluster.check import check_file
from adc_dist.cluster.problems import Problem

__all__ = ["check_file", "Problem"]
