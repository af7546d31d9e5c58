"""YAML from users' files (configs, prompt sets, recipe books): ``yaml.safe_load`` with the expansion bounded.

Aliases let a file of a few hundred bytes stand for billions of values (nine anchors nested eight deep); the node
graph is measured before anything is built, so such a file is one ``yaml.YAMLError``, not the server's memory.
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_NODES = 200_000  # values after aliases are expanded: far above any config, prompt set or recipe book


def safe_load(text: str) -> Any:
    """``yaml.safe_load(text)``; ``yaml.YAMLError`` when aliases expand it past :data:`MAX_NODES` values or it nests
    too deeply to parse."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()  # parsed once: measured, then built from the same nodes
        if root is None:
            return None
        if _expanded_size(root) > MAX_NODES:
            raise yaml.YAMLError(f"aliases expand it to more than {MAX_NODES} values (a YAML bomb?)")
        return loader.construct_document(root)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node) -> int:
    """How many values the node graph stands for, each alias counted again where it is used (memoised)."""
    size: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in size:
            continue
        kids = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if done:
            size[id(node)] = min(MAX_NODES + 1, 1 + sum(size[id(k)] for k in kids))
        else:
            stack.append((node, True))
            stack += [(k, False) for k in kids if id(k) not in size]
    return size[id(root)]
