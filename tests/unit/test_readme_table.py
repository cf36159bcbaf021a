"""bench/readme_table.py: README.md's performance tables come from bench/results/, and match them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from tooling import REPO

SCRIPT = REPO / "bench" / "readme_table.py"


@pytest.fixture(scope="module")
def table() -> Any:
    spec = importlib.util.spec_from_file_location("readme_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["readme_table"] = module
    spec.loader.exec_module(module)
    return module


def test_readme_tables_match_the_committed_results(table: Any) -> None:
    assert table.main(["--check"]) == 0, "run: python bench/readme_table.py"


def floor_doc() -> dict[str, Any]:
    return {
        "date": "2026-01-01T00:00:00Z", "rounds": 3, "machine": {"cpus": 2, "python": "3.11.7"},
        "floor": {"wall_s": 2.0, "cpu_s": 1.0, "peak_rss_mb": 45.2, "threads": 4},
        "chainmail": {"wall_s": 2.6, "cpu_s": 2.2, "peak_rss_mb": 90.4,
                      "concurrency": {"mode": "adaptive", "start": 4, "peak": 11}},
        "ratio_to_floor": {"wall": 1.3, "cpu": 2.2},
        "requests": {"floor": {"total_per_run": 11.05}, "chainmail": {"total_per_run": 17.15}},
        "per_round": [{"ratio_wall": 1.3, "load_average_1m": 0.5}],
    }


def test_the_floor_table_shows_the_measured_figures(table: Any) -> None:
    text = table.floor_table(floor_doc())
    assert "| floor | 2.00 s | 1.00 CPU-s | 45 MB | 11.05 | 4 |" in text
    assert "| `chainmail sweep` | 2.60 s (1.30×) | 2.20 CPU-s (2.20×) | 90 MB | 17.15 | adaptive, 4 → peak 11 |" in text
    assert "Median of 3 rounds" in text and "1.30× (load 0.5)" in text


def test_render_replaces_only_the_marked_blocks(table: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(table, "_load", lambda name: floor_doc() if name == "floor.json" else {
        "date": "d", "repeats": 3, "current": {k: {"median_ms": 70.0, "min_ms": 60.0}
                                               for k in ("help", "sweep_help", "sweep_empty_namespace", "python_bare")}
        | {"import_cli_ms": 50.0, "import_sweep_path_ms": 150.0}})
    readme = ("intro\n<!-- bench:floor -->\nstale figures\n<!-- /bench:floor -->\nmiddle\n"
              "<!-- bench:cold-start -->\n<!-- /bench:cold-start -->\nend\n")
    out = table.render(readme)
    assert out.startswith("intro\n<!-- bench:floor -->\nMedian of 3 rounds") and "stale figures" not in out
    assert "| `chainmail --help` | 70 ms (min 60 ms) | — |" in out and out.endswith("<!-- /bench:cold-start -->\nend\n")
    with pytest.raises(table.ResultsError):
        table.render("no markers")


def test_a_missing_results_file_is_a_clear_error(table: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(table, "RESULTS", tmp_path)
    with pytest.raises(table.ResultsError, match="floor.json"):
        table._load("floor.json")
