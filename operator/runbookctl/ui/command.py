"""`runbookctl ui`: start the console on 127.0.0.1 and print its URL (`--open` opens it)."""

from __future__ import annotations

import socket
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from runbookctl.cluster import ContextOpt, KubeconfigOpt

LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def ui(
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one)")
    ] = 0,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the console in a browser")
    ] = False,
    namespace: Annotated[
        list[str] | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Namespaces to show (repeatable; default: all you may list, else the context's)",
        ),
    ] = None,
    results: Annotated[
        Path | None,
        typer.Option(
            "--results",
            help="Show local runs (read-only) from this folder of `run -o json` result files "
            "and `--ledger` files, instead of a cluster",
        ),
    ] = None,
    context: ContextOpt = None,
    kubeconfig: KubeconfigOpt = None,
) -> None:
    """A web console on 127.0.0.1: executions, their DAG, timeline, logs, report and ledger
    badge, and the pause/resume/cancel buttons, acting with YOUR kubeconfig (RBAC decides)."""
    import uvicorn

    from runbookctl.ui.app import build_app

    if results is not None:
        from runbookctl.ui.results import ResultsSource

        if not results.is_dir():
            raise typer.BadParameter(f"{results} is not a folder", param_hint="--results")
        app = build_app(ResultsSource(results))
        hub = None
    else:
        from runbook_operator import kube
        from runbookctl.ui.live import Hub
        from runbookctl.ui.source import ClusterSource

        path = str(kubeconfig) if kubeconfig else None
        try:
            connection = kube.Kube.connect(path, context)
        except kube.KubeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        try:
            namespaces = list(namespace or []) or _default_namespaces(connection, path, context)
        except kube.KubeError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        source = ClusterSource(connection, namespaces)
        hub = Hub(connection, namespaces)
        app = build_app(source, hub=hub)
    chosen = port or _free_port()
    url = f"http://{LOOPBACK}:{chosen}/"
    typer.echo(f"runbook console: {url}  (Ctrl-C stops it)")
    if open_browser:
        webbrowser.open(url)
    try:
        uvicorn.run(app, host=LOOPBACK, port=chosen, log_level="warning")
    finally:
        if hub is not None:
            hub.stop()


def _default_namespaces(
    connection: object, path: str | None, context: str | None
) -> list[str] | None:
    """None (all) when the user may list executions cluster-wide, else the context's namespace."""
    from runbook_operator import kube

    assert isinstance(connection, kube.Kube)
    try:
        connection.call("GET", kube.EXECUTIONS.path(None), query={"limit": "1"})
        return None
    except kube.KubeError as exc:
        if exc.status != 403:
            raise
    return [kube.context_namespace(path, context)]
