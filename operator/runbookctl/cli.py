"""`runbookctl` command line (typer). Exit codes: 0 ok/COMPLETED, 1 FAILED/tampered/invalid,
2 usage or unreadable input, 128+n cancelled by signal n (130 Ctrl-C, 143 SIGTERM, 129 SIGHUP)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live

from runbook_engine.approval import APPROVAL
from runbook_engine.audit import verify
from runbook_engine.documents import depth_problem
from runbook_engine.enums import DataLicense, ExecutionStatus, LegalBasis, LogEventType
from runbook_engine.identity import local_identity
from runbook_engine.limits import MAX_OUTPUT_LIMIT_BYTES, MIN_OUTPUT_LIMIT_BYTES, clip_message
from runbook_engine.model import ExecutionRequest, RunbookRef
from runbook_engine.plan import Plan
from runbook_engine.problems import InvalidRunbook, problems_from_pydantic
from runbookctl import cluster, cluster_approvals
from runbookctl.files import load_plan, read_yaml_documents
from runbookctl.ledger import JsonlLedger, Line, has_chain, read_lines
from runbookctl.local_approval import LocalApprover
from runbookctl.render import dot, event_line, mermaid, steps_table
from runbookctl.runner import ControlError, Isolation, LocalRunner, cluster_only_sources
from runbookctl.ui import command as ui_command

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Run, validate, verify and draw runbooks locally; inspect and control them on a cluster.",
)
err = Console(stderr=True)


class Output(StrEnum):
    json = "json"
    yaml = "yaml"
    table = "table"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


def _known_action_types() -> frozenset[str]:
    from runbook_executors.registry import default_registry

    return default_registry().action_types()


def _load(path: Path) -> Plan:
    try:
        return load_plan(path, _known_action_types())
    except InvalidRunbook as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(1 if exc.problems and exc.problems[0].field else 2) from None


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


def _usage_error(message: str) -> NoReturn:
    err.print(f"error: {clip_message(message)}", markup=False, highlight=False)
    raise typer.Exit(2)


def _read_input_file(input_file: Path) -> dict[str, Any]:
    try:
        docs = read_yaml_documents(input_file)
    except InvalidRunbook as exc:
        _usage_error(str(exc))
    if len(docs) != 1 or not isinstance(docs[0], dict):
        _usage_error(f"{input_file}: --input-file must hold one JSON/YAML object")
    return dict(docs[0])


def _build_input(input_file: Path | None, pairs: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = _read_input_file(input_file) if input_file is not None else {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            _usage_error(f"--input {pair!r}: expected key=value")
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                _usage_error(f"--input {pair!r}: {part!r} is not an object")
        target[parts[-1]] = _parse_value(value)
    problem = depth_problem(data, "input")
    if problem is not None:
        _usage_error(problem)
    return data


def _request(plan: Plan, data: dict[str, Any], **fields: Any) -> ExecutionRequest:
    try:
        return ExecutionRequest(
            runbook_ref=RunbookRef(name=plan.definition.id), input=data, **fields
        )
    except ValidationError as exc:
        _usage_error("; ".join(str(p) for p in problems_from_pydantic(exc)))


def _open_ledger(ledger: Path | None, execution_id: str | None) -> JsonlLedger | None:
    """The ledger to append to; refuses a second chain under the same execution id."""
    if ledger is None:
        return None
    if execution_id is not None and has_chain(ledger, execution_id):
        _usage_error(
            f"{ledger} already holds a chain for execution {execution_id!r}; "
            "choose another --execution-id (two chains under one id cannot both verify)"
        )
    try:
        return JsonlLedger(ledger)
    except OSError as exc:
        _usage_error(f"--ledger {ledger}: {exc.strerror or exc}")


HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Each cancels the execution; the log records which one, and the exit code is 128 + n."""


async def _drive(runner: LocalRunner, plan: Plan, live_tty: bool) -> int | None:
    """Run to the end; returns the number of the signal that cancelled the run, if any."""
    received: list[int] = []
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        with contextlib.suppress(ControlError):
            runner.cancel(actor=signal.Signals(signum).name)

    for signum in HANDLED_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    if live_tty:
        with Live(steps_table(plan, runner.state), console=err, refresh_per_second=8) as live:
            runner.on_decision = lambda _: live.update(steps_table(plan, runner.state))
            await runner.run()
    else:
        await runner.run()
    return received[0] if received else None


def _final_document(
    runner: LocalRunner, ledger: Path | None, runbook: Path | None = None
) -> dict[str, Any]:
    final = runner.state.to_wire()
    final["auditHead"] = runner.chain.head
    final["auditEntries"] = len(runner.chain.entries)
    # What `runbookctl rerun` needs to run it again: the request (its input is checked against
    # the ledger's inputHash) and the runbook file.
    final["request"] = runner.request.model_dump(mode="json", by_alias=True, exclude_none=True)
    if runbook is not None:
        final["runbook"] = str(runbook.resolve())
    if ledger:
        final["ledger"] = str(ledger)
    return final


def _print_final(
    runner: LocalRunner,
    output: Output,
    ledger: Path | None,
    live_tty: bool,
    runbook: Path | None = None,
) -> None:
    state = runner.state
    if output is Output.json:
        document = _final_document(runner, ledger, runbook)
        sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")
        return
    if output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(_final_document(runner, ledger, runbook), sort_keys=False))
        return
    out = Console()
    if not (live_tty and out.is_terminal):  # the live table already shows the final steps
        out.print(steps_table(runner.plan, state))
    if state.kpis:
        out.print(
            "KPIs: " + json.dumps(dict(state.kpis), default=str), markup=False, highlight=False
        )
    message = clip_message(state.message or "", 500)
    out.print(f"{state.status}: {message}  (audit head {runner.chain.head[:16]}…)", markup=False)


def _approver(
    plan: Plan, approve: list[str], reject: list[str], decisions: Path | None
) -> LocalApprover:
    """Where this run's approval decisions come from: flags, a file, or a terminal prompt
    (only when stdin is one and some step waits for an approval)."""
    from runbookctl.local_approval import LocalApprover, read_decisions, rich_prompt

    file = []
    if decisions is not None:
        try:
            file = read_decisions(decisions)
        except InvalidRunbook as exc:
            _usage_error(f"--decisions {exc}")
    user = local_identity()
    gates = any(plan.steps[s].action_type == APPROVAL for s in plan.order)
    prompt = rich_prompt(err, user.username) if gates and sys.stdin.isatty() else None
    approver = LocalApprover(user, frozenset(approve), frozenset(reject), file, prompt)
    problems = approver.problems(plan)
    if problems:
        _usage_error("; ".join(problems))
    return approver


def _exit_code(status: ExecutionStatus, signum: int | None) -> int:
    if signum is not None:
        return 128 + signum
    return 0 if status is ExecutionStatus.COMPLETED else 1


@app.command()
def run(
    runbook: Annotated[
        Path, typer.Argument(help="Runbook manifest or plain definition (YAML/JSON)")
    ],
    input_file: Annotated[
        Path | None, typer.Option("--input-file", "-f", help="Execution input (JSON/YAML object)")
    ] = None,
    input_pairs: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="key=value (value parsed as JSON if it can be; dotted keys nest)"
        ),
    ] = None,
    legal_basis: Annotated[
        LegalBasis | None, typer.Option("--legal-basis", help="Legal basis for processing")
    ] = None,
    data_license: Annotated[
        list[DataLicense] | None,
        typer.Option("--data-license", help="Data license held (repeatable)"),
    ] = None,
    authority_id: Annotated[
        list[str] | None, typer.Option("--authority-id", help="Authority/warrant id (repeatable)")
    ] = None,
    started_by: Annotated[
        str | None,
        typer.Option("--started-by", help="Actor recorded in the audit log (default: $USER)"),
    ] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant", help="Tenant id")] = None,
    ledger: Annotated[
        Path | None,
        typer.Option("--ledger", help="Append the hash-chained audit log to this JSON Lines file"),
    ] = None,
    max_parallel: Annotated[
        int | None, typer.Option("--max-parallel", min=1, help="Override maxParallelSteps")
    ] = None,
    max_output_bytes: Annotated[
        int | None,
        typer.Option(
            "--max-output-bytes",
            min=MIN_OUTPUT_LIMIT_BYTES,
            max=MAX_OUTPUT_LIMIT_BYTES,
            help="Cap every step's output below the runbook's maxOutputBytes (default 1 MiB)",
        ),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="Final state format")
    ] = Output.table,
    isolation: Annotated[
        Isolation,
        typer.Option(
            "--isolation",
            help="process: each attempt in its own process (killable); inline: in this process",
        ),
    ] = Isolation.process,
    execution_id: Annotated[
        str | None, typer.Option("--execution-id", help="Execution id (default: generated)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False,
    approve: Annotated[
        list[str] | None,
        typer.Option("--approve", help="Approve this APPROVAL step as you (repeatable)"),
    ] = None,
    reject: Annotated[
        list[str] | None,
        typer.Option("--reject", help="Reject this APPROVAL step as you (repeatable)"),
    ] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            help="YAML/JSON {decisions: [{step, user, groups, decision, comment}]}: several "
            "approvers (needed when a step requires more than one approval)",
        ),
    ] = None,
) -> None:
    """Run a runbook to the end on this machine. Exit 0 only if it COMPLETED.

    An APPROVAL step asks you on a terminal; without one, answer with --approve/--reject STEP
    or --decisions FILE, else the step fails saying so (docs/approvals.md)."""
    plan = _load(runbook)
    request = _request(
        plan,
        _build_input(input_file, input_pairs or []),
        legal_basis=legal_basis,
        data_licenses=list(data_license or []),
        authority_ids=list(authority_id or []),
        started_by=started_by or os.environ.get("USER") or "runbookctl",
        tenant_id=tenant_id,
        max_parallel_steps=max_parallel,
    )
    approver = _approver(plan, approve or [], reject or [], decisions)
    sink = _open_ledger(ledger, execution_id)
    # A prompt and a live table cannot share the terminal: with a prompt, print event lines.
    live_tty = not quiet and err.is_terminal and approver.prompt is None
    runner = LocalRunner(
        plan,
        request,
        execution_id=execution_id,
        isolation=isolation,
        base_dir=runbook.resolve().parent,
        sinks=[sink] if sink else [],
        max_output_bytes=max_output_bytes,
        approver=approver,
    )
    if not quiet and not live_tty:
        runner.sinks.append(lambda e: err.print(event_line(e), markup=False, highlight=False))
    if not quiet:
        for note in cluster_only_sources(plan):
            err.print(f"note: {note}", markup=False, highlight=False)
    try:
        signum = asyncio.run(_drive(runner, plan, live_tty))
    finally:
        if sink:
            sink.close()
    _print_final(runner, output, ledger, live_tty, runbook)
    raise typer.Exit(_exit_code(runner.state.status, signum))


@app.command()
def validate(
    runbook: Annotated[Path, typer.Argument(help="Runbook manifest or plain definition")],
) -> None:
    """Check a runbook: schema, DAG (cycles, unknown dependencies), action types. Non-zero if invalid."""
    plan = _load(runbook)
    typer.echo(
        f"{runbook}: valid runbook {plan.definition.id!r} v{plan.definition.version} ({len(plan.order)} steps)"
    )


@app.command()
def graph(
    runbook: Annotated[Path, typer.Argument(help="Runbook manifest or plain definition")],
    fmt: Annotated[
        GraphFormat, typer.Option("--format", help="mermaid or dot")
    ] = GraphFormat.mermaid,
) -> None:
    """Print the step graph as Mermaid (default) or Graphviz DOT."""
    plan = _load(runbook)
    sys.stdout.write(mermaid(plan) if fmt is GraphFormat.mermaid else dot(plan))


FINAL_EVENTS = frozenset(
    {
        LogEventType.EXECUTION_COMPLETED,
        LogEventType.EXECUTION_FAILED,
        LogEventType.EXECUTION_CANCELLED,
        LogEventType.EXECUTION_REJECTED,
    }
)


def _ledger_chains(ledger: Path) -> tuple[dict[str, list[Line]], list[Line]]:
    """Entries by execution id (file order), and the damaged lines; exit 2 if unreadable."""
    chains: dict[str, list[Line]] = {}
    damaged: list[Line] = []
    try:
        for line in read_lines(ledger):
            if line.damage is not None:
                damaged.append(line)
                continue
            key = line.entry.get("executionId") if isinstance(line.entry, dict) else None
            chains.setdefault(str(key), []).append(line)
    except OSError as exc:
        _usage_error(f"{ledger}: {exc.strerror or exc}")
    return chains, damaged


def _verify_chain(
    ledger: Path, key: str, lines: list[Line], head: str | None, count: int | None
) -> bool:
    """Print one chain's verdict (and a warning if it has no final event); True if it verifies."""
    result = verify([line.entry for line in lines], expected_head=head, expected_count=count)
    if not result.valid:
        index = result.bad_index
        where = lines[index].number if index is not None and index < len(lines) else "end"
        typer.echo(f"TAMPERED {key}: entry {index} ({ledger}:{where}): {result.error}")
        return False
    typer.echo(f"OK {key}: {result.count} entries, head {result.head}")
    last = lines[-1].entry if lines else None
    if not (isinstance(last, dict) and last.get("eventType") in FINAL_EVENTS):
        err.print(
            f"warning: chain {key} has no final event (the run was killed, is still running, "
            "or its tail was cut off)",
            markup=False,
            highlight=False,
        )
    return True


def verify_cmd(
    ledger: Annotated[
        Path, typer.Option("--ledger", help="JSON Lines ledger written by `run --ledger`")
    ],
    execution_id: Annotated[
        str | None, typer.Option("--execution-id", help="Only this execution's chain")
    ] = None,
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="Head hash from a checkpoint (catches a cut tail)"),
    ] = None,
    expect_count: Annotated[
        int | None,
        typer.Option("--expect-count", min=0, help="Entry count from a checkpoint"),
    ] = None,
) -> None:
    """Verify every hash chain in a ledger. Non-zero with the first bad entry when tampered;
    a damaged line is reported and the other chains are still checked."""
    chains, damaged = _ledger_chains(ledger)
    for line in damaged:
        typer.echo(f"TAMPERED at line {line.number} ({ledger}:{line.number}): {line.damage}")
    if execution_id is not None:
        chains = {k: v for k, v in chains.items() if k == execution_id}
        if not chains:
            err.print(f"error: no entries for execution {execution_id!r} in {ledger}", markup=False)
            raise typer.Exit(1)
    if (expect_head is not None or expect_count is not None) and len(chains) != 1:
        _usage_error("--expect-head/--expect-count check one chain: add --execution-id")
    if not chains and not damaged:
        err.print(f"error: {ledger} holds no entries", markup=False)
        raise typer.Exit(1)
    verdicts = [
        _verify_chain(ledger, key, lines, expect_head, expect_count)
        for key, lines in chains.items()
    ]
    raise typer.Exit(0 if all(verdicts) and not damaged else 1)


def _find_report(doc: Any, step: str | None) -> dict[str, Any] | None:
    """The report inside a report file, a step output, or `run -o json` output."""
    if not isinstance(doc, dict):
        return None
    if "evidenceChain" in doc:
        return doc
    report = doc.get("report")
    if isinstance(report, dict):
        return report
    outputs = doc.get("outputs")
    if isinstance(outputs, dict):
        candidates = [outputs[step]] if step else list(outputs.values())
        for output in reversed(candidates):
            found = _find_report(output, None)
            if found is not None:
                return found
    return None


@app.command("verify-report")
def verify_report_cmd(
    report_file: Annotated[
        Path, typer.Argument(help="Report JSON, or the output of `run -o json`")
    ],
    public_key: Annotated[Path, typer.Option("--public-key", help="Ed25519 public key (PEM)")],
    step: Annotated[
        str | None, typer.Option("--step", help="Step whose output holds the report")
    ] = None,
) -> None:
    """Verify a signed attribution report: signature, digest and every evidence hash."""
    from runbook_executors.cti.report_signing import verify_report

    try:
        doc = json.loads(report_file.read_text(encoding="utf-8"))
        key = public_key.read_bytes()
    except OSError as exc:
        err.print(f"error: {exc.filename}: {exc.strerror}", markup=False)
        raise typer.Exit(2) from None
    except json.JSONDecodeError as exc:
        err.print(f"error: {report_file}: not JSON ({exc.msg})", markup=False)
        raise typer.Exit(2) from None
    report = _find_report(doc, step)
    if report is None:
        err.print(f"error: {report_file}: no attribution report found", markup=False)
        raise typer.Exit(2)
    problems = verify_report(report, key)
    if problems:
        for problem in problems:
            typer.echo(f"INVALID: {problem}")
        raise typer.Exit(1)
    typer.echo(f"OK: signature and {len(report.get('evidenceChain', []))} evidence hashes verified")


@app.command()
def keygen(
    out: Annotated[
        Path, typer.Option("--out", help="Directory for signing-key.pem and signing-key.pub.pem")
    ],
) -> None:
    """Create an Ed25519 key pair for signing reports (private key mode 0600)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    out.mkdir(parents=True, exist_ok=True)
    private, public = out / "signing-key.pem", out / "signing-key.pub.pem"
    if private.exists():
        err.print(f"error: {private} exists; refusing to overwrite a key", markup=False)
        raise typer.Exit(1)
    key = Ed25519PrivateKey.generate()
    private.touch(mode=0o600)
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    typer.echo(f"wrote {private} and {public}")


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        _usage_error(f"{what} {path}: {exc.strerror or exc}")
    except (json.JSONDecodeError, RecursionError) as exc:
        _usage_error(f"{what} {path}: not JSON ({exc})")


def _ledger_entries(ledger: Path) -> list[dict[str, Any]]:
    chains, damaged = _ledger_chains(ledger)
    if damaged:
        line = damaged[0]
        _fail_rerun("LedgerTampered", f"{ledger}:{line.number}: {line.damage}")
    return [line.entry for lines in chains.values() for line in lines]


def _fail_rerun(reason: str, message: str) -> NoReturn:
    err.print(f"error: re-run refused ({reason}): {message}", markup=False, highlight=False)
    raise typer.Exit(1)


def _local_path(given: Path | None, result: dict[str, Any], key: str, flag: str) -> Path:
    if given is not None:
        return given
    recorded = result.get(key)
    if not isinstance(recorded, str):
        _usage_error(f"the result file names no {key}: give {flag}")
    return Path(recorded)


@app.command()
def rerun(
    name: Annotated[
        str | None, typer.Argument(help="Cluster: the RunbookExecution to re-run")
    ] = None,
    rerun_from: Annotated[
        list[str] | None,
        typer.Option("--from", help="Run this step and everything downstream (repeatable)"),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Run exactly this step (repeatable)"),
    ] = None,
    latest: Annotated[
        bool,
        typer.Option("--latest", help="Use the runbook as it is now, not the one the parent ran"),
    ] = False,
    input_file: Annotated[
        Path | None,
        typer.Option("--input-file", "-f", help="New input (default: the parent's)"),
    ] = None,
    input_pairs: Annotated[
        list[str] | None, typer.Option("--input", "-i", help="key=value of a new input")
    ] = None,
    result: Annotated[
        Path | None,
        typer.Option("--result", help="Local mode: the parent's `runbookctl run -o json` output"),
    ] = None,
    runbook: Annotated[
        Path | None,
        typer.Option("--runbook", help="Local mode: the runbook file (default: the result's)"),
    ] = None,
    ledger: Annotated[
        Path | None,
        typer.Option(
            "--ledger",
            help="Local mode: the parent's ledger (default: the result's); the re-run's chain "
            "is appended to it",
        ),
    ] = None,
    output: Annotated[
        Output, typer.Option("--output", "-o", help="Local mode: final state format")
    ] = Output.table,
    isolation: Annotated[
        Isolation, typer.Option("--isolation", help="Local mode: process or inline")
    ] = Isolation.process,
    execution_id: Annotated[
        str | None, typer.Option("--execution-id", help="Local mode: the re-run's id")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output")] = False,
    namespace: cluster.NamespaceOpt = None,
    context: cluster.ContextOpt = None,
    kubeconfig: cluster.KubeconfigOpt = None,
) -> None:
    """Re-run a finished execution, reusing what SUCCEEDED: NAME on a cluster (creates a
    RunbookExecution with spec.rerunOf), or --result FILE locally (runs it here).

    Default: every step that did not SUCCEED and its descendants; --from S: S and downstream;
    --only S: exactly S (its inputs must exist). docs/rerun.md."""
    new_input = _build_input(input_file, input_pairs or []) if input_file or input_pairs else None
    steps_from, steps_only = list(rerun_from or []), list(only or [])
    if (result is None) == (name is None):
        _usage_error("give an execution NAME (cluster) or --result FILE (local), not both")
    if name is not None:
        cluster.create_rerun(
            name,
            rerun_from=steps_from,
            only=steps_only,
            latest=latest,
            new_input=new_input,
            namespace=namespace,
            context=context,
            kubeconfig=kubeconfig,
        )
        return
    assert result is not None
    from runbook_engine.rerun import RerunRefused
    from runbook_engine.timeutil import utcnow
    from runbookctl.rerun import prepare

    parent_doc = _load_json(result, "--result")
    if not isinstance(parent_doc, dict):
        _usage_error(f"--result {result}: not a JSON object")
    runbook_path = _local_path(runbook, parent_doc, "runbook", "--runbook")
    ledger_path = _local_path(ledger, parent_doc, "ledger", "--ledger")
    plan = _load(runbook_path)
    new_id = execution_id or f"{parent_doc.get('executionId', 'run')}-rerun-{os.urandom(3).hex()}"
    try:
        prepared = prepare(
            plan,
            parent_doc,
            _ledger_entries(ledger_path),
            execution_id=new_id,
            now=utcnow(),
            new_input=new_input,
            rerun_from=steps_from,
            only=steps_only,
            latest=latest,
            overrides={"startedBy": os.environ.get("USER") or "runbookctl"},
        )
    except RerunRefused as refused:
        _fail_rerun(refused.reason, str(refused))
    sink = _open_ledger(ledger_path, new_id)
    live_tty = not quiet and err.is_terminal
    runner = LocalRunner(
        plan,
        prepared.request,
        isolation=isolation,
        base_dir=runbook_path.resolve().parent,
        sinks=[sink] if sink else [],
        initial_state=prepared.state,
    )
    if not quiet:
        selection = prepared.link.selection
        err.print(
            f"re-run of {prepared.link.parent_execution_id}: running "
            f"{', '.join(selection.run)}; reusing {', '.join(selection.reused) or 'nothing'}",
            markup=False,
            highlight=False,
        )
        if not live_tty:
            runner.sinks.append(lambda e: err.print(event_line(e), markup=False, highlight=False))
    try:
        signum = asyncio.run(_drive(runner, plan, live_tty))
    finally:
        if sink:
            sink.close()
    _print_final(runner, output, ledger_path, live_tty, runbook_path)
    raise typer.Exit(_exit_code(runner.state.status, signum))


# Cluster commands; `verify` (registered there) runs verify_cmd for a local --ledger file.
cluster.register(app, local_verify=verify_cmd)
cluster_approvals.register(app)
app.command("ui")(ui_command.ui)


def main() -> None:
    # `python -m runbookctl.cli` puts the working directory first on sys.path; a module there
    # must not stand in for a library or a runbook's own CUSTOM module.
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", cwd)]
    app()


if __name__ == "__main__":
    main()
