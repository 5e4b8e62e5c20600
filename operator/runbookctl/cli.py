"""`runbookctl` command line (typer). Exit codes: 0 ok/COMPLETED, 1 FAILED/tampered/invalid,
2 usage or unreadable input, 130 cancelled with Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections import OrderedDict
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live

from runbook_engine.audit import verify
from runbook_engine.enums import DataLicense, ExecutionStatus, LegalBasis
from runbook_engine.model import ExecutionRequest, RunbookRef
from runbook_engine.plan import Plan
from runbook_engine.problems import InvalidRunbook, problems_from_pydantic
from runbook_engine.scheduler import Decision
from runbookctl import cluster
from runbookctl.files import load_plan, read_yaml_documents
from runbookctl.render import dot, event_line, mermaid, steps_table
from runbookctl.runner import JsonlLedger, LocalRunner

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


class Isolation(StrEnum):
    process = "process"
    inline = "inline"


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
    except json.JSONDecodeError:
        return text


def _build_input(input_file: Path | None, pairs: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    if input_file is not None:
        docs = read_yaml_documents(input_file)
        if len(docs) != 1 or not isinstance(docs[0], dict):
            err.print(
                f"error: {input_file}: --input-file must hold one JSON/YAML object", markup=False
            )
            raise typer.Exit(2)
        data.update(docs[0])
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            err.print(f"error: --input {pair!r}: expected key=value", markup=False)
            raise typer.Exit(2)
        target = data
        parts = key.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                err.print(f"error: --input {pair!r}: {part!r} is not an object", markup=False)
                raise typer.Exit(2)
        target[parts[-1]] = _parse_value(value)
    return data


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
) -> None:
    """Run a runbook to the end on this machine. Exit 0 only if it COMPLETED."""
    plan = _load(runbook)
    data = _build_input(input_file, input_pairs or [])
    try:
        request = ExecutionRequest(
            runbook_ref=RunbookRef(name=plan.definition.id),
            input=data,
            legal_basis=legal_basis,
            data_licenses=list(data_license or []),
            authority_ids=list(authority_id or []),
            started_by=started_by or os.environ.get("USER") or "runbookctl",
            tenant_id=tenant_id,
            max_parallel_steps=max_parallel,
        )
    except ValidationError as exc:
        for p in problems_from_pydantic(exc):
            err.print(f"error: {p}", markup=False)
        raise typer.Exit(2) from None
    sink = JsonlLedger(ledger) if ledger else None
    live_tty = not quiet and err.is_terminal
    runner = LocalRunner(
        plan,
        request,
        execution_id=execution_id,
        isolation="inline" if isolation is Isolation.inline else "process",
        base_dir=runbook.resolve().parent,
        sinks=[sink] if sink else [],
    )
    if not quiet and not live_tty:
        runner.sinks.append(
            lambda entry: err.print(event_line(entry), markup=False, highlight=False)
        )
    interrupted = False

    async def main() -> None:
        nonlocal interrupted
        loop = asyncio.get_running_loop()

        def on_sigint() -> None:
            nonlocal interrupted
            interrupted = True
            with contextlib.suppress(Exception):
                runner.cancel(actor="SIGINT")

        loop.add_signal_handler(signal.SIGINT, on_sigint)
        loop.add_signal_handler(signal.SIGTERM, on_sigint)
        if live_tty:
            with Live(steps_table(plan, runner.state), console=err, refresh_per_second=8) as live:

                def refresh(_: Decision) -> None:
                    live.update(steps_table(plan, runner.state))

                runner.on_decision = refresh
                await runner.run()
        else:
            await runner.run()

    try:
        asyncio.run(main())
    finally:
        if sink:
            sink.close()
    state = runner.state
    final = state.to_wire()
    final["auditHead"] = runner.chain.head
    final["auditEntries"] = len(runner.chain.entries)
    if ledger:
        final["ledger"] = str(ledger)
    if output is Output.json:
        sys.stdout.write(json.dumps(final, indent=2, default=str) + "\n")
    elif output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(final, sort_keys=False))
    else:
        out = Console()
        if not (live_tty and out.is_terminal):  # the live table already shows the final steps
            out.print(steps_table(plan, state))
        if state.kpis:
            Console().print(
                "KPIs: " + json.dumps(dict(state.kpis), default=str), markup=False, highlight=False
            )
        Console().print(
            f"{state.status}: {state.message or ''}  (audit head {runner.chain.head[:16]}…)",
            markup=False,
        )
    if interrupted:
        raise typer.Exit(130)
    raise typer.Exit(0 if state.status is ExecutionStatus.COMPLETED else 1)


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


def verify_cmd(
    ledger: Annotated[
        Path, typer.Option("--ledger", help="JSON Lines ledger written by `run --ledger`")
    ],
    execution_id: Annotated[
        str | None, typer.Option("--execution-id", help="Only this execution's chain")
    ] = None,
) -> None:
    """Verify every hash chain in a ledger. Non-zero with the first bad entry when tampered."""
    try:
        lines = ledger.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        err.print(f"error: {ledger}: {exc.strerror}", markup=False)
        raise typer.Exit(2) from None
    chains: OrderedDict[str, list[tuple[int, Any]]] = OrderedDict()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            typer.echo(f"TAMPERED: {ledger}:{number}: not valid JSON ({exc.msg})")
            raise typer.Exit(1) from None
        key = entry.get("executionId") if isinstance(entry, dict) else None
        chains.setdefault(str(key), []).append((number, entry))
    if execution_id is not None:
        chains = OrderedDict((k, v) for k, v in chains.items() if k == execution_id)
        if not chains:
            err.print(f"error: no entries for execution {execution_id!r} in {ledger}", markup=False)
            raise typer.Exit(1)
    if not chains:
        err.print(f"error: {ledger} holds no entries", markup=False)
        raise typer.Exit(1)
    bad = False
    for key, numbered in chains.items():
        result = verify([e for _, e in numbered])
        if result.valid:
            typer.echo(f"OK {key}: {result.count} entries, head {result.head}")
        else:
            bad = True
            where = (
                numbered[result.bad_index][0]
                if result.bad_index is not None and result.bad_index < len(numbered)
                else "end"
            )
            typer.echo(
                f"TAMPERED {key}: entry {result.bad_index} ({ledger}:{where}): {result.error}"
            )
    raise typer.Exit(1 if bad else 0)


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


# Cluster commands; `verify` (registered there) runs verify_cmd for a local --ledger file.
cluster.register(app, local_verify=verify_cmd)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
