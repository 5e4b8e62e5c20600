"""`make bench`'s report: merged repeats, who is ahead, targets, results.json and PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.figures import ARGO, OPERATOR, Figure, Samples, merge
from benchmarks.report import ahead, markdown, plots, table, write_json


def fig(
    metric: str, system: str, values: list[float], better: str = "lower", **kw: object
) -> Figure:
    return Figure("kwok", "chains", metric, system, "ms", better, values, **kw)  # type: ignore[arg-type]


def test_repeats_merge_into_one_figure_with_every_value() -> None:
    merged = merge([fig("t", OPERATOR, [1.0]), fig("t", OPERATOR, [3.0]), fig("t", ARGO, [9.0])])
    by = {f.system: f for f in merged}
    assert by[OPERATOR].values == [1.0, 3.0] and by[OPERATOR].median == 2.0
    assert by[ARGO].values == [9.0]


def test_ahead_or_behind_follows_the_better_direction() -> None:
    assert ahead(fig("t", OPERATOR, [100.0]), fig("t", ARGO, [1000.0])) == "10x ahead"
    assert (
        ahead(fig("r", OPERATOR, [100.0], "higher"), fig("r", ARGO, [400.0], "higher"))
        == "4x behind"
    )


def test_targets_are_checked_against_the_median() -> None:
    assert fig("t", OPERATOR, [150.0, 250.0, 180.0], target=200).meets_target() is True
    assert fig("t", OPERATOR, [300.0], target=200).meets_target() is False
    assert fig("r", OPERATOR, [700.0], "higher", target=600).meets_target() is True
    assert fig("t", OPERATOR, [1.0]).meets_target() is None


def test_results_json_and_plots_are_written(tmp_path: Path) -> None:
    figures = [
        fig("transition_ms_p50", OPERATOR, [100.0, 120.0], target=200),
        fig("transition_ms_p50", ARGO, [9000.0]),
        fig("step_jobs_per_min", OPERATOR, [700.0], "higher"),
        Figure("engine", "drive-10", "us_per_transition", "runbook-engine", "µs", "lower", [50.0]),
        Figure("engine", "drive-100", "us_per_transition", "runbook-engine", "µs", "lower", [55.0]),
    ]
    samples = [
        Samples("kwok", "chains", "transition_ms", OPERATOR, "ms", [90.0, 110.0]),
        Samples("kwok", "chains", "transition_ms", ARGO, "ms", [9000.0, 9100.0]),
    ]
    write_json(tmp_path / "results.json", figures, samples, {"cores": 2})
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"] == {"cores": 2}
    assert {f["metric"] for f in data["figures"]} >= {"transition_ms_p50", "us_per_transition"}
    assert data["figures"][0]["median"] == 110.0
    written = plots(tmp_path / "out", figures, samples)
    assert {p.name for p in written} == {
        "engine-drive.png",
        "kwok-chains.png",
        "kwok-chains-transition_ms-cdf.png",
    }
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
    assert table(figures).row_count == 4
    md = markdown(figures).splitlines()
    assert len(md) == 2 + 4 and "| 110 [100–120] | 9000 | 81.8x ahead | ✓ <= 200 |" in md[2]


@pytest.mark.parametrize("values", [[], [1.0]])
def test_a_figure_without_a_target_has_no_verdict(values: list[float]) -> None:
    assert fig("t", OPERATOR, values).meets_target() is None


def test_re_measuring_one_scenario_keeps_the_others(tmp_path: Path) -> None:
    from benchmarks.report import keep_others

    old = [
        fig("t", OPERATOR, [1.0]),
        fig("t", ARGO, [9.0]),
        Figure("kwok", "other", "t", OPERATOR, "ms", "lower", [5.0]),
    ]
    write_json(tmp_path / "results.json", old, [], {})
    new = [fig("t", OPERATOR, [2.0])]
    figures, _ = keep_others(tmp_path / "results.json", new, [])
    assert sorted((f.scenario, f.system, f.values[0]) for f in figures) == [
        ("chains", ARGO, 9.0),
        ("chains", OPERATOR, 2.0),
        ("other", OPERATOR, 5.0),
    ]


def test_a_scenario_with_only_other_metrics_still_gets_its_chart(tmp_path: Path) -> None:
    figures = [
        Figure("kwok", "big", "status_kib", OPERATOR, "KiB", "lower", [200.0], 256),
        Figure("kwok", "big", "status_kib", ARGO, "KiB", "lower", [900.0]),
    ]
    written = plots(tmp_path, figures, [])
    assert [p.name for p in written] == ["kwok-big.png"]
    assert written[0].read_bytes().startswith(b"\x89PNG")


def test_no_ratio_without_runs_of_both_systems() -> None:
    assert ahead(fig("t", OPERATOR, []), fig("t", ARGO, [1.0])) == ""
    assert ahead(fig("t", OPERATOR, [1.0]), fig("t", ARGO, [])) == ""
