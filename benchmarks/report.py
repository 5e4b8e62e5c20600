"""What `make bench` leaves behind: a table on the terminal, results.json and PNG plots."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from .figures import ARGO, OPERATOR, Figure, Samples


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    mem = Path("/proc/meminfo").read_text().split()[1]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _cell(f: Figure | None) -> str:
    if f is None or not f.values:
        return ""
    spread = f" [{min(f.values):.4g}–{max(f.values):.4g}]" if len(f.values) > 1 else ""
    return f"{f.median:.4g}{spread}"


def ahead(ours: Figure, peer: Figure) -> str:
    """'2.5x ahead' / '1.3x behind', taking the figure's better direction into account."""
    a, b = ours.median, peer.median
    if not a or not b or math.isnan(a) or math.isnan(b):  # no runs or a zero: no ratio
        return ""
    ratio = b / a if ours.better == "lower" else a / b
    return f"{ratio:.3g}x ahead" if ratio >= 1 else f"{1 / ratio:.3g}x behind"


def _target(f: Figure | None) -> str:
    if f is None or f.target is None:
        return ""
    met = f.meets_target()
    return f"{'✓' if met else '✗'} {'<=' if f.better == 'lower' else '>='} {f.target:g}"


def table(figures: list[Figure]) -> Table:
    rows: dict[tuple[str, str, str], dict[str, Figure]] = defaultdict(dict)
    units: dict[tuple[str, str, str], str] = {}
    for f in figures:
        rows[(f.group, f.scenario, f.metric)][f.system] = f
        units[(f.group, f.scenario, f.metric)] = f.unit
    out = Table(title="make bench (median [min–max] over repeats)")
    for col in ("group", "scenario", "metric", "unit", "ours", ARGO, "ratio", "target"):
        out.add_column(col)
    for key, by_system in rows.items():
        ours = by_system.get(OPERATOR) or next(iter(by_system.values()))
        peer = by_system.get(ARGO)
        ratio = ahead(ours, peer) if peer and ours.system == OPERATOR else ""
        out.add_row(*key, units[key], _cell(ours), _cell(peer), ratio, _target(ours))
    return out


def markdown(figures: list[Figure]) -> str:
    """The same table as Markdown, for docs/benchmarks.md."""
    rows: dict[tuple[str, str, str], dict[str, Figure]] = defaultdict(dict)
    for f in figures:
        rows[(f.group, f.scenario, f.metric)][f.system] = f
    lines = [
        "| group | scenario | metric | unit | ours | Argo | ratio | target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (group, scenario, metric), by_system in rows.items():
        ours = by_system.get(OPERATOR) or next(iter(by_system.values()))
        peer = by_system.get(ARGO)
        ratio = ahead(ours, peer) if peer and ours.system == OPERATOR else ""
        cells = [group, scenario, metric, ours.unit, _cell(ours), _cell(peer), ratio, _target(ours)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def keep_others(
    path: Path, figures: list[Figure], samples: list[Samples]
) -> tuple[list[Figure], list[Samples]]:
    """The new figures plus those of `path` whose (group, scenario, system) was not measured
    again: re-measuring only the operator keeps Argo's figures of the same scenario."""
    if not path.exists():
        return figures, samples
    old = json.loads(path.read_text())
    fresh = {(f.group, f.scenario, f.system) for f in figures}
    fields = set(Figure.__dataclass_fields__)
    kept = [
        Figure(**{k: v for k, v in f.items() if k in fields})
        for f in old["figures"]
        if (f["group"], f["scenario"], f["system"]) not in fresh
    ]
    kept_samples = [
        Samples(**s)
        for s in old["samples"]
        if (s["group"], s["scenario"], s["system"]) not in fresh
    ]
    return kept + figures, kept_samples + samples


def write_json(
    path: Path, figures: list[Figure], samples: list[Samples], meta: dict[str, Any]
) -> None:
    data = {
        "meta": meta,
        "figures": [f.as_json() for f in figures],
        "samples": [s.as_json() for s in samples],
    }
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")


def plots(out: Path, figures: list[Figure], samples: list[Samples]) -> list[Path]:
    """One PNG per chart; matplotlib is imported here so the rest works without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    drive = sorted(
        (int(f.scenario.split("-")[1]), f) for f in figures if f.metric == "us_per_transition"
    )
    if drive:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.errorbar(
            [n for n, _ in drive],
            [f.median for _, f in drive],
            yerr=[[f.median - min(f.values) for _, f in drive], [max(f.values) - f.median for _, f in drive]],
            marker="o",
        )  # fmt: skip
        ax.set(xscale="log", xlabel="steps in the runbook", ylabel="µs per transition",
               title="Engine: drive step per transition")  # fmt: skip
        written.append(_save(fig, out / "engine-drive.png"))
    written += _comparison_bars(plt, out, figures)
    written += _cdfs(plt, out, samples)
    return written


COMPARED = (
    "step_jobs_per_min", "executions_per_min", "transition_ms_p50", "transition_ms_p99",
    "api_writes_per_attempt",
    "cpu_ms_per_step", "control_plane_cpu_ms_per_step", "peak_rss_mib",
)  # fmt: skip


def _charted(present: list[str]) -> list[str]:
    """The COMPARED metrics present, in that order; every metric when none of them is."""
    return [m for m in COMPARED if m in present] or present


def _comparison_bars(plt: Any, out: Path, figures: list[Figure]) -> list[Path]:
    written = []
    scenarios = sorted({(f.group, f.scenario) for f in figures if f.group != "engine"})
    for group, scenario in scenarios:
        here = {
            (f.metric, f.system): f for f in figures if (f.group, f.scenario) == (group, scenario)
        }
        metrics = _charted(sorted({m for m, _ in here}))
        if not metrics:
            continue
        systems = sorted({s for _, s in here}, key=lambda s: s != OPERATOR)
        fig, axes = plt.subplots(1, len(metrics), figsize=(2.4 * len(metrics), 3.6))
        for ax, metric in zip(list(axes) if len(metrics) > 1 else [axes], metrics, strict=True):
            for i, system in enumerate(systems):
                f = here.get((metric, system))
                if f is None:
                    continue
                err = [[f.median - min(f.values)], [max(f.values) - f.median]]
                ax.bar(
                    i, f.median, yerr=err, color="C0" if system == OPERATOR else "C1", label=system
                )
            ax.set_title(
                f"{metric}\n({next(iter(f.unit for (m, _), f in here.items() if m == metric))})",
                fontsize=8,
            )
            ax.set_xticks([])
        axes_list = list(axes) if len(metrics) > 1 else [axes]
        axes_list[0].legend(fontsize=7)
        fig.suptitle(f"{group}: {scenario}")
        written.append(_save(fig, out / f"{group}-{scenario}.png"))
    return written


def _cdfs(plt: Any, out: Path, samples: list[Samples]) -> list[Path]:
    written = []
    groups: dict[tuple[str, str, str], list[Samples]] = defaultdict(list)
    for s in samples:
        groups[(s.group, s.scenario, s.metric)].append(s)
    for (group, scenario, metric), runs in groups.items():
        fig, ax = plt.subplots(figsize=(6, 4))
        for system in sorted({r.system for r in runs}):
            values = sorted(v for r in runs if r.system == system for v in r.values)
            if values:
                ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=system)
        ax.set(xscale="log", xlabel=f"{metric} ({runs[0].unit})", ylabel="fraction of transitions",
               title=f"{group}: {scenario}")  # fmt: skip
        ax.legend()
        written.append(_save(fig, out / f"{group}-{scenario}-{metric}-cdf.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def show(figures: list[Figure]) -> None:
    Console(width=160).print(table(figures))
