"""Load YAML documents together with the line of every key, for messages that point at it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import yaml

from adc_dist.errors import AdcError


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
    return yaml.safe_load(yaml.serialize(node)) if node.tag != "tag:yaml.org,2002:str" else node.value


def load_documents(path: str | FsPath) -> list[Document]:
    """Every YAML document in ``path`` (``---`` separated), with key lines.

    Raises AdcError when the file is missing or is not YAML.
    """
    p = FsPath(path)
    if not p.is_file():
        raise AdcError(f"{p}: no such file")
    text = p.read_text()
    try:
        datas = [d for d in yaml.safe_load_all(text)]
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise AdcError(f"{p}: not valid YAML: {e}") from None
    docs = []
    for data, node in zip(datas, nodes):
        lines: dict[tuple, int] = {}
        if node is not None:
            _walk(node, (), lines)
        docs.append(Document(data, lines))
    return [d for d in docs if d.data is not None]
