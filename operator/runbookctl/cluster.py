"""`runbookctl get|status|pause|resume|cancel|logs|verify|output` against a cluster.

Also the kubectl plugin (`kubectl runbook ...`, the `kubectl-runbook` script). Every command
reads the RunbookExecution objects and the ledger ConfigMaps through `runbook_operator.kube`;
control is the same merge patch of `spec` as `kubectl patch` (docs/runbookctl.md lists the
plain kubectl equivalents). Exit codes: 0 ok, 1 refused/not found/tampered, 2 usage or no
cluster.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import yaml
from rich.console import Console

from runbook_engine.control import REQUEST_CHANGES, refusal
from runbook_engine.enums import ControlAction, ExecutionStatus
from runbook_operator.names import execution_id
from runbookctl import cluster_view

if TYPE_CHECKING:  # the Kubernetes client is imported only when a cluster command runs
    from runbook_operator.kube import Kube
    from runbook_operator.ledger import anchor as ledger_anchor
    from runbook_operator.ledger import find as ledger_find

err = Console(stderr=True)


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="Namespace (default: the kubeconfig context's)"),
]
ContextOpt = Annotated[str | None, typer.Option("--context", help="kubeconfig context to use")]
KubeconfigOpt = Annotated[
    Path | None,
    typer.Option("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config)"),
]
FormatOpt = Annotated[Format, typer.Option("--output", "-o", help="table, json or yaml")]
NameArg = Annotated[str, typer.Argument(help="RunbookExecution name")]
UidOpt = Annotated[
    str | None,
    typer.Option("--uid", help="Which execution's ledger when the name was used several times"),
]


class Target:
    """A connection and the namespace the command works in."""

    def __init__(self, kubeconfig: Path | None, context: str | None, namespace: str | None):
        from runbook_operator import kube

        path = str(kubeconfig) if kubeconfig else None
        self.kube = kube.Kube.connect(path, context)
        self.namespace = namespace or kube.context_namespace(path, context)

    def execution(self, name: str) -> dict[str, Any]:
        from runbook_operator.ledger import find as ledger_find

        obj = ledger_find.get_execution(self.kube, self.namespace, name)
        if obj is None:
            _fail(f"runbookexecution {name!r} not found in namespace {self.namespace!r}", 1)
        return obj

    def list(self) -> list[dict[str, Any]]:
        from runbook_operator.kube import EXECUTIONS

        objs = self.kube.list(EXECUTIONS, self.namespace)
        return sorted(objs, key=lambda o: str(o["metadata"].get("creationTimestamp", "")))

    def get_configmap(self, name: str) -> dict[str, Any]:
        from runbook_operator.kube import CONFIGMAPS

        return self.kube.get(CONFIGMAPS, self.namespace, name)

    def patch_spec(self, obj: dict[str, Any], change: dict[str, Any]) -> None:
        patch_spec(self.kube, self.namespace, obj, change)


def patch_spec(kube: Kube, namespace: str, obj: dict[str, Any], change: dict[str, Any]) -> None:
    """Merge patch of spec, only if it is still the same object (uid precondition): the write
    `runbookctl pause|resume|cancel` and the console's buttons make, as the user."""
    from runbook_engine.identity import Identity
    from runbook_operator.execution.stamps import control_annotations
    from runbook_operator.kube import EXECUTIONS

    spec = {**(obj.get("spec") or {}), **change}
    who = Identity.from_wire(kube.whoami())
    # Where no MutatingAdmissionPolicy stamps it, say who we are; admission checks it.
    stamp = control_annotations(who, bool(spec.get("paused")), bool(spec.get("cancel")))
    meta = {"uid": obj["metadata"]["uid"], "annotations": stamp}
    patch = {"metadata": meta, "spec": change}
    kube.patch(EXECUTIONS, namespace, str(obj["metadata"]["name"]), patch)


def control_refusal(namespace: str, obj: dict[str, Any], action: ControlAction) -> str | None:
    """Why `action` cannot apply to `obj` now (as the operator would refuse it), or None."""
    phase = ExecutionStatus((obj.get("status") or {}).get("phase") or "PENDING")
    meta = obj["metadata"]
    return refusal(action, phase, execution_id(namespace, str(meta["name"]), str(meta["uid"])))


def _fail(message: str, code: int) -> NoReturn:
    err.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


@contextmanager
def _errors() -> Iterator[None]:
    """API and ledger failures as one line on stderr, never a traceback."""
    from runbook_operator.kube import KubeError
    from runbook_operator.ledger.checkpoint import SigningKeyError
    from runbook_operator.ledger.segments import LedgerError

    try:
        yield
    except KubeError as exc:
        _fail(str(exc), 1 if exc.status in (403, 404) else 2)
    except (LedgerError, SigningKeyError) as exc:
        _fail(str(exc), 1)


def _emit(data: Any, fmt: Format, table: Callable[[], Any]) -> None:
    if fmt is Format.json:
        sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    elif fmt is Format.yaml:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    else:
        Console().print(table())


def _now() -> datetime:
    return datetime.now(UTC)


def get(
    name: Annotated[str | None, typer.Argument(help="One execution (default: all)")] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.table,
) -> None:
    """List RunbookExecutions: name, runbook, phase, progress, age."""
    with _errors():
        target = Target(kubeconfig, context, namespace)
        objs = [target.execution(name)] if name else target.list()
        if not objs and output is Format.table:
            err.print(f"No runbook executions in namespace {target.namespace}.", markup=False)
            return
        data: Any = objs[0] if name else {"apiVersion": "v1", "kind": "List", "items": objs}
        _emit(data, output, lambda: cluster_view.executions_table(objs, _now()))


def _next_fire() -> cluster_view.NextFire:
    """The schedule module's `next_fire(schedule, now)` when this build has it (else `-`)."""
    try:
        from runbook_operator.triggers import schedule  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return None
    from runbook_operator.triggers.model import ScheduleSource

    def next_fire(spec: dict[str, Any], now: datetime) -> datetime | None:
        source = ScheduleSource.model_validate(spec)
        found = schedule.next_fire(source.cron, source.timezone, now)
        return found if isinstance(found, datetime) else None

    return next_fire


def triggers(
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.table,
) -> None:
    """List RunbookTriggers: runbook, source (alertmanager or cron), ready, running executions,
    last and next firing."""
    from runbook_operator.kube import TRIGGERS

    with _errors():
        target = Target(kubeconfig, context, namespace)
        objs = sorted(
            target.kube.list(TRIGGERS, target.namespace), key=lambda o: str(o["metadata"]["name"])
        )
        if not objs and output is Format.table:
            err.print(f"No runbook triggers in namespace {target.namespace}.", markup=False)
            return
        data = {"apiVersion": "v1", "kind": "List", "items": objs}
        _emit(data, output, lambda: cluster_view.triggers_table(objs, _now(), _next_fire()))


def status(
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.table,
) -> None:
    """One execution's steps: status, attempt, duration, Job and message."""
    with _errors():
        obj = Target(kubeconfig, context, namespace).execution(name)
        _emit(obj.get("status") or {}, output, lambda: cluster_view.steps_table(obj, _now()))


def _control(action: ControlAction) -> Callable[..., None]:
    def command(
        name: NameArg,
        namespace: NamespaceOpt = None,
        context: ContextOpt = None,
        kubeconfig: KubeconfigOpt = None,
    ) -> None:
        with _errors():
            target = Target(kubeconfig, context, namespace)
            obj = target.execution(name)
            reason = control_refusal(target.namespace, obj, action)
            if reason is not None:
                _fail(reason, 1)
            change = dict(REQUEST_CHANGES[action])
            target.patch_spec(obj, change)
            fields = ", ".join(f"spec.{k}={json.dumps(v)}" for k, v in change.items())
            typer.echo(f"runbookexecution/{name}: {action.lower()} requested ({fields})")

    command.__doc__ = {
        ControlAction.PAUSE: "Pause: no new Jobs start; running ones finish and are recorded.",
        ControlAction.RESUME: "Resume a paused execution with what is left.",
        ControlAction.CANCEL: "Cancel: running Jobs are deleted, unfinished steps CANCELLED.",
    }[action]
    return command


def _ledger(target: Target, name: str, uid: str | None) -> ledger_find.FoundLedger:
    from runbook_operator.ledger import find as ledger_find

    obj = ledger_find.get_execution(target.kube, target.namespace, name)
    want = uid or (str(obj["metadata"]["uid"]) if obj else None)
    found = ledger_find.find_ledgers(target.kube, target.namespace, name)
    for ledger in found:
        if want is None or ledger.lid.uid == want:
            return ledger
    _fail(f"no ledger of execution {name!r} in namespace {target.namespace!r}", 1)


def logs(
    name: NameArg,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.table,
    uid: UidOpt = None,
) -> None:
    """Print the execution's audit log from its ledger (works after the execution is deleted)."""
    from runbook_operator.ledger.segments import all_entries

    with _errors():
        target = Target(kubeconfig, context, namespace)
        ledger = _ledger(target, name, uid)
        entries = all_entries(ledger.segments)
        title = f"{ledger.lid.execution_id} · {len(entries)} entries"
        _emit(entries, output, lambda: cluster_view.entries_table(entries, title))


def output(
    name: NameArg,
    step: Annotated[str, typer.Argument(help="Step id")],
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.json,
) -> None:
    """Print a succeeded step's output (from its result ConfigMap, checked against the status)."""
    from runbook_engine.canonical import canonical_sha256
    from runbook_operator import names
    from runbook_operator.steps import results

    with _errors():
        target = Target(kubeconfig, context, namespace)
        obj = target.execution(name)
        try:
            job, expected = cluster_view.result_source(obj, step)
        except LookupError as exc:
            _fail(str(exc), 1)
        try:
            result = results.read_configmap(target.get_configmap(names.result_configmap(job)))
        except results.ResultError as exc:
            _fail(str(exc), 1)
        if expected is not None and canonical_sha256(result.output) != expected:
            _fail(f"the output of {step!r} does not match status outputHash {expected[:16]}…", 1)
        data = result.output
    _emit(data, Format.yaml if output is Format.yaml else Format.json, lambda: None)


def verify(
    name: Annotated[str | None, typer.Argument(help="RunbookExecution name (cluster)")] = None,
    ledger: Annotated[
        Path | None,
        typer.Option("--ledger", help="Local mode: a JSON Lines ledger written by `run --ledger`"),
    ] = None,
    execution_id_: Annotated[
        str | None,
        typer.Option("--execution-id", help="Local mode: only this execution's chain"),
    ] = None,
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="Local mode: head hash from a checkpoint"),
    ] = None,
    expect_count: Annotated[
        int | None,
        typer.Option("--expect-count", min=0, help="Local mode: entry count from a checkpoint"),
    ] = None,
    namespace: NamespaceOpt = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
    output: FormatOpt = Format.table,
    uid: UidOpt = None,
    public_key: Annotated[
        Path | None,
        typer.Option("--public-key", help="Trust only this Ed25519 public key (PEM, kept safe)"),
    ] = None,
    key_namespace: Annotated[
        str | None,
        typer.Option(
            "--key-namespace",
            help="Take the public key from this namespace (the operator's) instead of the "
            "trust anchor recorded on the RunbookExecution CRD",
        ),
    ] = None,
    key_configmap: Annotated[
        str | None,
        typer.Option(
            "--key-configmap",
            help="With --key-namespace: the public-key ConfigMap "
            "(default runbook-operator-ledger-key)",
        ),
    ] = None,
    require_checkpoint: Annotated[
        bool,
        typer.Option("--require-checkpoint", help="Fail when no signed checkpoint is found"),
    ] = False,
) -> None:
    """Verify a ledger: NAME on a cluster (status, ledger, signed checkpoint) or --ledger FILE.

    Checkpoint keys come only from the operator's namespace, found through the annotation the
    operator writes on the RunbookExecution CRD (or --key-namespace), or from --public-key.
    Exit 0 OK, 1 TAMPERED naming the first bad entry."""
    if ledger is not None or name is None:
        if ledger is None or name is not None:
            _fail("give an execution NAME (cluster) or --ledger FILE (local), not both", 2)
        assert _local_verify is not None
        _local_verify(
            ledger=ledger,
            execution_id=execution_id_,
            expect_head=expect_head,
            expect_count=expect_count,
        )
        return
    from runbook_operator.ledger import find as ledger_find

    anchor = _key_anchor(key_namespace, key_configmap, public_key)
    with _errors():
        target = Target(kubeconfig, context, namespace)
        pem = _read_key(public_key) if public_key else None
        report = ledger_find.verify_execution(
            target.kube,
            target.namespace,
            name,
            uid=uid,
            public_key_pem=pem,
            key_anchor=anchor,
            require_checkpoint=require_checkpoint,
        )
    if output is not Format.table:
        _emit(report.wire(), output, lambda: None)
    else:
        typer.echo(report.headline())
        for problem in report.problems[1:]:
            typer.echo(f"  also: entry {problem.seq}: {problem.reason}")
        cp = report.checkpoint
        if cp:
            typer.echo(
                f"  checkpoint: {cp['count']} entries, signed {cp['time']} by key {cp['keyId'][:16]}…"
            )
        for note in report.notes:
            typer.echo(f"  note: {note}")
    raise typer.Exit(0 if report.ok else 1)


def _key_anchor(
    key_namespace: str | None, key_configmap: str | None, public_key: Path | None
) -> ledger_anchor.KeyAnchor | None:
    """The anchor named on the command line, or None (then the CRD's, or the pinned key)."""
    from runbook_operator.ledger import anchor as ledger_anchor

    if key_namespace is None:
        if key_configmap is not None:
            _fail("--key-configmap needs --key-namespace (the namespace it is in)", 2)
        return None
    if public_key is not None:
        _fail("give --public-key (a pinned key) or --key-namespace (where to read it), not both", 2)
    try:
        return ledger_anchor.KeyAnchor(
            key_namespace, key_configmap or ledger_anchor.DEFAULT_KEY_CONFIGMAP
        )
    except ledger_anchor.AnchorError as exc:
        _fail(f"--key-namespace/--key-configmap: {exc}", 2)


def _read_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"{path}: {exc.strerror}", 2)


_local_verify: Callable[..., None] | None = None


def register(app: typer.Typer, local_verify: Callable[..., None]) -> None:
    """Add the cluster commands; `verify` keeps the local `--ledger` mode via `local_verify`."""
    global _local_verify
    _local_verify = local_verify
    app.command()(get)
    app.command()(triggers)
    app.command()(status)
    for action in (ControlAction.PAUSE, ControlAction.RESUME, ControlAction.CANCEL):
        app.command(action.lower())(_control(action))
    app.command()(logs)
    app.command("verify")(verify)
    app.command()(output)


RERUN_SPEC_KEYS = (
    "runbookRef",
    "legalBasis",
    "dataLicenses",
    "authorityIds",
    "tenantId",
    "startedBy",
    "maxParallelSteps",
)
"""What a re-run copies from its parent's spec (its input only when none is given)."""


def rerun_manifest(
    parent: dict[str, Any],
    *,
    rerun_from: list[str],
    only: list[str],
    latest: bool,
    new_input: dict[str, Any] | None,
) -> dict[str, Any]:
    """The RunbookExecution that re-runs `parent` (named `<parent>-rerun-<random>`). Without
    `new_input` it has no spec.input: the operator then uses the parent's (and records so)."""
    meta = parent["metadata"]
    spec = {k: v for k, v in (parent.get("spec") or {}).items() if k in RERUN_SPEC_KEYS}
    spec["rerunOf"] = {"name": meta["name"]}
    if rerun_from:
        spec["from"] = list(rerun_from)
    if only:
        spec["only"] = list(only)
    if latest:
        spec["latest"] = True
    if new_input is not None:
        spec["input"] = new_input
    prefix = f"{str(meta['name'])[:200]}-rerun-"
    return {
        "apiVersion": "runbook-operator.dev/v1alpha1",
        "kind": "RunbookExecution",
        "metadata": {"generateName": prefix, "namespace": meta.get("namespace")},
        "spec": spec,
    }


def rerun_refusal(parent: Mapping[str, Any]) -> str | None:
    """Why `parent` cannot be re-run yet (it has not finished), or None: checked before the
    write by `runbookctl rerun` and the console's buttons alike (the operator checks again)."""
    phase = (parent.get("status") or {}).get("phase")
    if phase in {str(p) for p in ExecutionStatus if p.terminal}:
        return None
    name = (parent.get("metadata") or {}).get("name")
    return (
        f"runbookexecution {name!r} is {phase or 'not started'}: a re-run needs it "
        "COMPLETED, FAILED or CANCELLED"
    )


def create_rerun(
    name: str,
    *,
    rerun_from: list[str],
    only: list[str],
    latest: bool,
    new_input: dict[str, Any] | None,
    namespace: str | None,
    context: str | None,
    kubeconfig: Path | None,
) -> None:
    """Create the re-run object on the cluster and print its name; the operator checks the
    rest (parent finished, outputs untampered) and says so in the new object's conditions."""
    from runbook_operator.kube import EXECUTIONS

    if rerun_from and only:
        _fail("give --from or --only, not both", 2)
    with _errors():
        target = Target(kubeconfig, context, namespace)
        parent = target.execution(name)
        refusal = rerun_refusal(parent)
        if refusal is not None:
            _fail(refusal, 1)
        manifest = rerun_manifest(
            parent, rerun_from=rerun_from, only=only, latest=latest, new_input=new_input
        )
        made = target.kube.create(EXECUTIONS, target.namespace, manifest)
    typer.echo(f"runbookexecution/{made['metadata']['name']} created (re-run of {name})")
