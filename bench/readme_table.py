"""Write README.md's performance tables from the measured results in bench/results/.

Each table sits between ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->`` in README.md and is
rendered only from a results file (``floor.json``, ``cold_start.json``), so the README's figures are
the last measured ones. Usage::

    python bench/readme_table.py           # rewrite the tables in README.md
    python bench/readme_table.py --check   # exit 1 when README.md differs from the results
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"


class ResultsError(Exception):
    """A results file is missing or lacks a figure a table needs."""


def _load(name: str) -> dict[str, Any]:
    path = RESULTS / name
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ResultsError(f"{path}: not a JSON object")
    return doc


def _ms(value: float) -> str:
    return f"{value:.0f} ms"


def floor_table(doc: dict[str, Any]) -> str:
    """The backlog against the floor: wall, CPU, RSS and requests per run, with the ratios."""
    try:
        floor, cm, ratio = doc["floor"], doc["chainmail"], doc["ratio_to_floor"]
        req = doc["requests"]
        before = doc.get("before_perf") or {}
        conc = cm.get("concurrency") or {}
    except KeyError as exc:
        raise ResultsError(f"floor.json lacks {exc}") from None
    rounds = doc.get("rounds", 1)
    lines = [
        f"Median of {rounds} rounds, {doc['date']}, {doc['machine']['cpus']} CPUs, Python {doc['machine']['python']}"
        f" (`bench/results/floor.json`).",
        "",
        "| | wall | CPU | peak RSS | requests per run | runs in flight |",
        "|---|---|---|---|---|---|",
        f"| floor | {floor['wall_s']:.2f} s | {floor['cpu_s']:.2f} CPU-s | {floor['peak_rss_mb']:.0f} MB "
        f"| {req['floor']['total_per_run']:.2f} | {floor['threads']} |",
        f"| `chainmail sweep` | {cm['wall_s']:.2f} s ({ratio['wall']:.2f}×) | {cm['cpu_s']:.2f} CPU-s "
        f"({ratio['cpu']:.2f}×) | {cm['peak_rss_mb']:.0f} MB | {req['chainmail']['total_per_run']:.2f} "
        f"| {conc.get('mode', '?')}, {conc.get('start', '?')} → peak {conc.get('peak', '?')} |",
    ]
    if before:
        lines.append(
            f"| before this work: fixed 4 runs, sequential tags (one round; floor then {before['floor_wall_s']:.2f} s) "
            f"| {before['wall_s']:.2f} s ({before['ratio_wall']:.2f}×) | {before['cpu_s']:.2f} CPU-s | — "
            f"| {before['total_requests_per_run']:.2f} | 4 |")
    per_round = doc.get("per_round") or []
    if per_round:
        lines += ["", "Per round, wall ratio: " + ", ".join(
            f"{r['ratio_wall']:.2f}× (load {r['load_average_1m']:.1f})" for r in per_round) + "."]
    return "\n".join(lines)


def cold_start_table(doc: dict[str, Any]) -> str:
    """Cold start: help, a command's help, an empty sweep and the CLI's import time, before and now."""
    try:
        now = doc["current"]
    except KeyError:
        raise ResultsError("cold_start.json lacks 'current'") from None
    base = doc.get("baseline") or {}

    def row(label: str, key: str) -> str:
        was = _ms(base[key]["median_ms"]) if key in base else "—"
        return f"| {label} | {_ms(now[key]['median_ms'])} (min {_ms(now[key]['min_ms'])}) | {was} |"

    lines = [
        f"Median of {doc.get('repeats', '?')} fresh processes, {doc['date']} (`bench/results/cold_start.json`).",
        "",
        "| | now | before (all commands built) |",
        "|---|---|---|",
        row("`chainmail --help`", "help"),
        row("`chainmail sweep --help`", "sweep_help"),
        row("`chainmail sweep` of an empty namespace (imports, key decryption, two empty LISTs)",
            "sweep_empty_namespace"),
        f"| import of `chainmail._cli` | {_ms(now['import_cli_ms'])} | "
        f"{_ms(base['import_cli_ms']) if 'import_cli_ms' in base else '—'} |",
        f"| imports of a key-file sweep to `tekton,oci` | {_ms(now['import_sweep_path_ms'])} | "
        f"{_ms(base['import_sweep_path_ms']) if 'import_sweep_path_ms' in base else '—'} |",
        row("`python -c pass` (for scale)", "python_bare"),
    ]
    return "\n".join(lines)


TABLES: dict[str, tuple[str, Callable[[dict[str, Any]], str]]] = {
    "floor": ("floor.json", floor_table),
    "cold-start": ("cold_start.json", cold_start_table),
}


def render(readme: str) -> str:
    """``readme`` with every ``bench:NAME`` block replaced by its table."""
    for name, (results, build) in TABLES.items():
        pattern = re.compile(rf"(<!-- bench:{name} -->\n).*?(<!-- /bench:{name} -->)", re.S)
        if not pattern.search(readme):
            raise ResultsError(f"README.md has no <!-- bench:{name} --> block")
        table = build(_load(results))
        readme = pattern.sub(lambda m, t=table: f"{m.group(1)}{t}\n{m.group(2)}", readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if README.md is not up to date")
    args = parser.parse_args(argv)
    current = README.read_text()
    try:
        wanted = render(current)
    except ResultsError as exc:
        print(f"readme_table: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if wanted != current:
            print("readme_table: README.md's performance tables differ from bench/results; "
                  "run python bench/readme_table.py", file=sys.stderr)
            return 1
        return 0
    if wanted != current:
        README.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
