"""Parameter trees addressed by "a/b/c" paths: what building a plan and migrating outliers edit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_path(tree: Mapping[str, Any], path: str) -> Any:
    """`tree[a][b]...` for the path "a/b/..."."""
    for key in path.split("/"):
        tree = tree[key]
    return tree


def set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    """Sets `tree[a][b]...` for the path "a/b/...", copying each dict on the way (the input tree is left as it was)."""
    *parents, last = path.split("/")
    for key in parents:
        tree[key] = dict(tree[key])
        tree = tree[key]
    tree[last] = value
