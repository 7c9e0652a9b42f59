"""A launcher YAML against Ray's own rules: the JSON schema shipped inside the installed ray
package (typos, unknown keys with close names, types), and Ray's private ``prepare_config`` +
``validate_config``, as ``ray up`` runs them before any cloud call.
"""

from __future__ import annotations

import copy
import difflib
import json
import logging
import os
from functools import lru_cache
from typing import Any

from adc_dist.cluster import pins
from adc_dist.cluster.problems import Report


@lru_cache(maxsize=None)
def ray_schema() -> dict[str, Any]:
    import ray.autoscaler

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        return json.load(f)


def _schema_at(schema: dict[str, Any], path: tuple) -> dict[str, Any]:
    """The sub-schema describing ``path`` (best effort: properties, patternProperties, items)."""
    node = schema
    for part in path:
        if "$ref" in node:
            node = ray_schema()["definitions"][node["$ref"].split("/")[-1]]
        if isinstance(part, int):
            node = node.get("items", {})
        elif part in node.get("properties", {}):
            node = node["properties"][part]
        elif node.get("patternProperties"):
            node = next(iter(node["patternProperties"].values()))
        else:
            return {}
    return node


def schema_problems(data: Any, report: Report) -> int:
    import jsonschema

    schema = ray_schema()
    validator = jsonschema.Draft7Validator(schema)
    count = 0
    for err in sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path]):
        path = tuple(err.absolute_path)
        count += 1
        if err.validator == "additionalProperties" and isinstance(err.instance, dict):
            allowed = list(_schema_at(schema, path).get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed)):
                close = difflib.get_close_matches(str(key), allowed, n=2, cutoff=0.75)
                report.error(path + (key,), f"unknown key {key!r} (not in Ray {pins.ray_version()}'s "
                                            "cluster schema)",
                             f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                             else f"allowed here: {', '.join(allowed)}")
        elif err.validator == "type" and len(path) >= 2 and path[-2] == "resources":
            report.error(path, f"must be a whole number, got {err.instance!r}: the launcher counts whole "
                               "CPUs and GPUs per node",
                         "give the node's real whole count; to share one GPU among trials, ask for a "
                         "fraction per *trial* in the tune command, not per node")
        elif err.validator == "type":
            report.error(path, f"must be of type {err.validator_value}, got {err.instance!r}")
        elif err.validator == "required":
            report.error(path, err.message.replace("is a required property", "is required here"))
        elif err.validator == "minimum":
            report.error(path, f"must be >= {err.validator_value}, got {err.instance!r}")
        else:
            report.error(path, err.message)
    return count


def ray_own_validation(data: dict[str, Any], report: Report) -> None:
    """Ray's private prepare_config + validate_config, as `ray up` runs them before any cloud call."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    logger = logging.getLogger("ray.autoscaler._private.util")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        validate_config(prepare_config(copy.deepcopy(data)))
    except Exception as e:  # Ray raises ValueError, RuntimeError, AssertionError, jsonschema errors
        report.error((), f"Ray's own validate_config rejects the file: {getattr(e, 'message', e)}",
                     "see the message; it is what `ray up` would stop with")
    finally:
        logger.setLevel(level)
