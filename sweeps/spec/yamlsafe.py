"""YAML in, with a bound on what its aliases expand to.

`yaml.safe_load` builds aliases as shared references, so a 1 KB file of nested aliases (a "billion laughs") parses
at once into a structure that stands for billions of values; every later step (validation, hashing, printing the
effective spec) walks it as a tree. The expanded size is counted on the node graph before anything is built
(each node once, so the count itself is quick), and a document over the limit is refused.
"""
from __future__ import annotations

from typing import Any

import yaml

MAX_YAML_NODES = 100_000  # values a spec may hold once its aliases are expanded (a big grid is a few thousand)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)   # libyaml when PyYAML has it: ~20x faster, same result


def expanded_size(node: yaml.Node, limit: int = MAX_YAML_NODES) -> int:
    """Nodes of `node` with every alias expanded, counting each distinct node once; stops past `limit` (returns a
    value > limit) and treats a recursive alias (a node inside itself) as infinite."""
    memo: dict[int, int] = {}
    open_: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        if key in open_:
            return limit + 1           # a node that contains itself expands forever
        open_.add(key)
        if isinstance(n, yaml.SequenceNode):
            children = list(n.value)
        elif isinstance(n, yaml.MappingNode):
            children = [x for pair in n.value for x in pair]
        else:
            children = []
        total = 1
        for c in children:
            total += size(c)
            if total > limit:
                break
        open_.discard(key)
        memo[key] = min(total, limit + 1)
        return memo[key]

    try:
        return size(node)
    except RecursionError:
        return limit + 1


def load_yaml(text: str, limit: int = MAX_YAML_NODES) -> Any:
    """`yaml.safe_load(text)`, refusing (yaml.YAMLError naming the limit) a document whose aliases expand to more
    than `limit` values."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        n = expanded_size(node, limit)
        if n > limit:
            raise yaml.YAMLError(f"its aliases (*name) expand to more than {limit:,} values (a spec needs far "
                                 "fewer; the limit is sweeps/spec/yamlsafe.py MAX_YAML_NODES); write the values "
                                 "out or use fewer nested aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()
