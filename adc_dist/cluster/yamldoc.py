"""Load YAML documents together with the line of every key, for messages that point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from adc_dist.inputs import files as inputs


@dataclass
class Document:
    data: Any
    lines: dict[tuple, int] = field(default_factory=dict)  # path -> 1-based line


def _walk(node: yaml.Node, path: tuple, lines: dict[tuple, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = path + (_scalar_key(key_node),)
                lines[child] = key_node.start_mark.line + 1
                _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines)


def _scalar_key(node: yaml.ScalarNode) -> Any:
    # Keys are what safe_load makes of them: "8265" stays a str only if quoted.
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return yaml.SafeLoader("").construct_object(node)
    except (yaml.YAMLError, ValueError, OverflowError):  # e.g. an int key of 5,000 digits
        return node.value


def load_documents(path: str | FsPath) -> list[Document]:
    """Every YAML document in ``path`` (``---`` separated), with key lines.

    Read with the project's one safe loader (:mod:`adc_dist.inputs.files`): a missing, non-regular,
    oversized, binary or malformed file, too deep a nesting or an alias bomb raises one
    AdcError line.
    """
    text = inputs.read_text(path, "cluster file")
    where = f"cluster file {inputs.show(path)}"
    docs = []
    for node in inputs.compose_documents(text, where):
        lines: dict[tuple, int] = {}
        if node is not None:
            _walk(node, (), lines)
        docs.append(Document(inputs.construct(node, where), lines))
    return [d for d in docs if d.data is not None]
