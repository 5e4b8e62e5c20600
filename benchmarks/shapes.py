"""The DAG shapes both systems run: step name → names of the steps it depends on.

Pure data, so the operator's Runbooks and Argo's Workflows are built from the same graph.
"""

from __future__ import annotations

Shape = dict[str, list[str]]


def chain(n: int) -> Shape:
    """s000 → s001 → … : every transition is on the critical path."""
    return {f"s{i:03d}": ([f"s{i - 1:03d}"] if i else []) for i in range(n)}


def fan_out_in(n: int) -> Shape:
    """One root, n - 2 parallel middle steps, one sink that waits for all of them."""
    middle = [f"m{i:04d}" for i in range(n - 2)]
    return {"root": []} | {m: ["root"] for m in middle} | {"sink": middle}


def edges(shape: Shape) -> list[tuple[str, str]]:
    """(dependency, dependent) pairs: the transitions whose overhead is measured."""
    return [(dep, step) for step, deps in shape.items() for dep in deps]
