"""YAML source positions, so config and suite errors can say file:line."""

from __future__ import annotations

import yaml


def yaml_key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Map every YAML path (mapping keys, list indices as strings) to its 1-based line.

    Unparseable YAML gives an empty map: the caller's own parse reports that error.
    """
    lines: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                sub = (*path, str(key_node.value))
                lines[sub] = key_node.start_mark.line + 1
                walk(value_node, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                walk(item, (*path, str(i)))

    if root is not None:
        walk(root, ())
    return lines
