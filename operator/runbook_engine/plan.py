"""Graph validation and the compiled plan: a definition checked once, indexed for the scheduler."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from runbook_engine.approval import APPROVAL, config_problems
from runbook_engine.model import RunbookDefinition, RunbookStep
from runbook_engine.problems import InvalidRunbook, Problem


@dataclass(frozen=True, slots=True)
class Plan:
    """Immutable indexes over a valid definition; built once per execution."""

    definition: RunbookDefinition
    order: tuple[str, ...]
    """Step ids in definition order: the scheduler's tie-break, so runs are deterministic."""
    position: Mapping[str, int]
    steps: Mapping[str, RunbookStep]
    dependencies: Mapping[str, tuple[str, ...]]
    dependents: Mapping[str, tuple[str, ...]]

    def ancestors(self, step_id: str) -> list[str]:
        """Every transitive upstream step, in definition order."""
        return self._closure(step_id, self.dependencies)

    def descendants(self, step_id: str) -> list[str]:
        """Every transitive downstream step, in definition order."""
        return self._closure(step_id, self.dependents)

    def _closure(self, step_id: str, edges: Mapping[str, tuple[str, ...]]) -> list[str]:
        seen: set[str] = set()
        stack = list(edges[step_id])
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(edges[current])
        return sorted(seen, key=self.position.__getitem__)


def find_cycle(dependencies: Mapping[str, Collection[str]], order: list[str]) -> list[str] | None:
    """A dependency cycle as a path ``[a, b, c, a]`` (a depends on b ...), or None.

    Iterative DFS with colours, so 10,000-step chains do not hit the recursion limit.
    """
    white, grey, black = 0, 1, 2
    colour = dict.fromkeys(order, white)
    for root in order:
        if colour[root] != white:
            continue
        path: list[str] = [root]
        iters = [iter(sorted(dependencies.get(root, ())))]
        colour[root] = grey
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                colour[path.pop()] = black
                iters.pop()
                continue
            if nxt not in colour:
                continue  # unknown dependency: reported separately
            if colour[nxt] == grey:
                start = path.index(nxt)
                return [*path[start:], nxt]
            if colour[nxt] == white:
                colour[nxt] = grey
                path.append(nxt)
                iters.append(iter(sorted(dependencies.get(nxt, ()))))
    return None


def approval_step_problems(step: RunbookStep, where: str) -> list[Problem]:
    """An APPROVAL step: a valid approval config, decided once (no retries)."""
    problems = config_problems(step.config, f"{where}.config")
    if step.max_attempts > 1:
        problems.append(
            Problem(
                f"{where}.retryPolicy",
                "an APPROVAL step is decided once: a reject or a timeout is final (remove it)",
            )
        )
    return problems


def graph_problems(
    definition: RunbookDefinition, known_action_types: Collection[str] | None = None
) -> list[Problem]:
    """Everything wrong with the DAG; empty when the definition can run."""
    problems: list[Problem] = []
    steps = definition.steps
    if not steps:
        return [Problem("steps", "a runbook needs at least one step")]
    first_index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.id in first_index:
            problems.append(
                Problem(
                    f"steps[{i}].id",
                    f"duplicate step id {step.id!r} (first at steps[{first_index[step.id]}])",
                )
            )
        else:
            first_index[step.id] = i
    for i, step in enumerate(steps):
        if step.action_type == APPROVAL:
            problems.extend(approval_step_problems(step, f"steps[{i}]"))
        elif known_action_types is not None and step.action_type not in known_action_types:
            known = ", ".join(sorted(known_action_types))
            problems.append(
                Problem(
                    f"steps[{i}].actionType",
                    f"unknown actionType {step.action_type!r} (known: {known})",
                )
            )
        seen_deps: set[str] = set()
        for j, dep in enumerate(step.depends_on):
            field = f"steps[{i}].dependsOn[{j}]"
            if dep == step.id:
                problems.append(Problem(field, f"step {step.id!r} depends on itself"))
            elif dep not in first_index:
                problems.append(Problem(field, f"unknown step {dep!r}"))
            elif dep in seen_deps:
                problems.append(Problem(field, f"dependency {dep!r} listed twice"))
            seen_deps.add(dep)
    if definition.benchmarks:
        for sid in definition.benchmarks.per_step_ms:
            if sid not in first_index:
                problems.append(Problem(f"benchmarks.perStepMs.{sid}", f"unknown step {sid!r}"))
    if len(first_index) == len(steps):  # cycle paths are ambiguous with duplicate ids
        deps = {s.id: [d for d in s.depends_on if d != s.id] for s in steps}
        cycle = find_cycle(deps, [s.id for s in steps])
        if cycle:
            problems.append(Problem("steps", "dependency cycle: " + " -> ".join(cycle)))
    return problems


def compile_plan(
    definition: RunbookDefinition, known_action_types: Collection[str] | None = None
) -> Plan:
    """Validate the graph and index it; raises InvalidRunbook listing every problem."""
    problems = graph_problems(definition, known_action_types)
    if problems:
        raise InvalidRunbook(problems)
    order = tuple(s.id for s in definition.steps)
    dependents: dict[str, list[str]] = {sid: [] for sid in order}
    for step in definition.steps:
        for dep in step.depends_on:
            dependents[dep].append(step.id)
    return Plan(
        definition=definition,
        order=order,
        position={sid: i for i, sid in enumerate(order)},
        steps={s.id: s for s in definition.steps},
        dependencies={s.id: tuple(s.depends_on) for s in definition.steps},
        dependents={k: tuple(v) for k, v in dependents.items()},
    )


def legal_problems(
    definition: RunbookDefinition,
    legal_basis: str | None,
    data_licenses: Collection[str],
) -> list[Problem]:
    """The legal gates: basis must be allowed; every required licence must be held."""
    problems: list[Problem] = []
    allowed = [str(b) for b in definition.legal_basis_required]
    if allowed:
        if legal_basis is None:
            problems.append(
                Problem("legalBasis", f"required: this runbook needs one of {', '.join(allowed)}")
            )
        elif str(legal_basis) not in allowed:
            problems.append(
                Problem(
                    "legalBasis",
                    f"{legal_basis!s} is not accepted by this runbook (needs one of {', '.join(allowed)})",
                )
            )
    held = {str(x) for x in data_licenses}
    missing = [str(x) for x in definition.data_licenses_required if str(x) not in held]
    if missing:
        problems.append(
            Problem("dataLicenses", f"missing required data license(s): {', '.join(missing)}")
        )
    return problems
