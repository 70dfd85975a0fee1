"""Benchmark results: the JSON every `bench/` script writes, and BENCHMARKS.md built from them.

    python -m bench.report [--results bench-results] [--markdown BENCHMARKS.md]

Each benchmark script fills a `BenchResult` (command line, machine, date, and for every measured
configuration the value of each run), prints it as a table and writes it to
`bench-results/<name>.json`. This command turns every result present into its section of
BENCHMARKS.md: command, machine, date, one table per group of configurations with the median
and min–max of the runs and the ratio to the group's baseline, then the paragraph the script
wrote about what the figures mean. Only the text between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->` is rewritten (a section not there yet is appended), so hand-written
sections such as `## OCR` stay as they are. Results of `--quick` runs go to
`bench-results/quick/` and are never picked up unless named with `--results`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import statistics
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench-results"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
# Sections in the order they are appended when BENCHMARKS.md does not hold them yet.
SECTION_ORDER = ("end_to_end", "model_speed", "database", "scaling")


# --- what a script measures -------------------------------------------------------------------


@dataclass
class Measurement:
    """One configuration's figure over several runs (say "tiny, batch 8" in pages/s).

    `baseline` names the row of the same group it is compared with; the ratio is taken run by
    run (run i against run i of the baseline, which ran under the same conditions) and then
    summarised like the values.
    """

    group: str
    label: str
    unit: str
    values: list[float]
    baseline: str | None = None
    detail: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


@dataclass
class BenchResult:
    name: str  # the script's module name: bench.<name>
    title: str  # the section heading in BENCHMARKS.md
    command: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    date: str = ""
    quick: bool = False
    runs: int = 0
    measurements: list[Measurement] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # single numbers and settings
    notes: str = ""  # what the figures mean, in a short paragraph of markdown

    @classmethod
    def start(cls, name: str, title: str, runs: int, quick: bool) -> BenchResult:
        return cls(
            name=name,
            title=title,
            command=" ".join(["python -m", f"bench.{name}", *map(shlex.quote, sys.argv[1:])]),
            machine=describe_machine(),
            date=datetime.date.today().isoformat(),
            quick=quick,
            runs=runs,
        )

    def add(
        self,
        group: str,
        label: str,
        unit: str,
        values: list[float],
        baseline: str | None = None,
        detail: str = "",
    ) -> Measurement:
        measurement = Measurement(group, label, unit, [float(v) for v in values], baseline, detail)
        self.measurements.append(measurement)
        return measurement

    def find(self, group: str, label: str) -> Measurement | None:
        for m in self.measurements:
            if m.group == group and m.label == label:
                return m
        return None

    def ratio(self, measurement: Measurement) -> list[float] | None:
        """Per-run ratio of a measurement to its baseline, or None when it has none."""
        if measurement.baseline is None:
            return None
        base = self.find(measurement.group, measurement.baseline)
        if base is None or base is measurement:
            return None
        pairs = list(zip(measurement.values, base.values, strict=False))
        return [a / b for a, b in pairs if b] or None

    # --- output -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for item, measurement in zip(data["measurements"], self.measurements, strict=True):
            item.update(median=measurement.median, min=measurement.low, max=measurement.high)
            ratios = self.ratio(measurement)
            if ratios:
                item["ratio"] = {
                    "to": measurement.baseline,
                    "values": ratios,
                    "median": statistics.median(ratios),
                    "min": min(ratios),
                    "max": max(ratios),
                }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        keys = {"group", "label", "unit", "values", "baseline", "detail"}
        measurements = [
            Measurement(**{k: v for k, v in m.items() if k in keys}) for m in data["measurements"]
        ]
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**{**fields, "measurements": measurements})

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")

    def publish(self, out: Path | None = None) -> Path:
        """Print the tables and write the JSON where it belongs (`result_path`); its path."""
        self.print()
        path = result_path(self.name, self.quick, out)
        self.write(path)
        print(f"written {path}")
        return path

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        console = Console(width=160)
        for group in self.groups():
            table = Table(title=f"{self.title}: {group}" if group else self.title)
            for column in ("configuration", "unit", "median", "min–max", "ratio", "detail"):
                table.add_column(
                    column, justify="left" if column in ("configuration", "detail") else "right"
                )
            for m in self.measurements:
                if m.group != group:
                    continue
                table.add_row(m.label, m.unit, number(m.median), spread(m.values),
                              ratio_text(self.ratio(m), m.baseline), m.detail)  # fmt: skip
            console.print(table)
        for key, value in self.figures.items():
            console.print(f"{key}: {value}")
        if self.notes:
            console.print(self.notes)

    def groups(self) -> list[str]:
        return list(dict.fromkeys(m.group for m in self.measurements))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`--runs`, `--quick` and `--out`, the same in every benchmark script."""
    parser.add_argument("--runs", type=int, help="timed runs, median reported (default 3; "
                        "fewer with --quick)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a small smoke run of the script")
    parser.add_argument("--out", type=Path, help="result JSON (default bench-results/NAME.json)")


def result_path(name: str, quick: bool, out: Path | None) -> Path:
    """Where a result goes: `--out`, else bench-results/ (bench-results/quick/ for --quick, so a
    smoke run never replaces a real result)."""
    if out is not None:
        return out
    return (RESULTS_DIR / "quick" if quick else RESULTS_DIR) / f"{name}.json"


def describe_machine() -> dict[str, Any]:
    """What the figures were measured on: processor, cores, memory, load, versions, GPU."""
    machine: dict[str, Any] = {
        "arch": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    try:
        import psutil

        machine["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover - psutil is a dependency
        pass
    if hasattr(os, "getloadavg"):
        # Other work on the machine changes every figure; the load says how busy it was.
        machine["load_average_1m"] = round(os.getloadavg()[0], 2)
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        machine["torch"] = torch.__version__
        machine["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            machine["gpu"] = torch.cuda.get_device_name(0)
    return machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_text(machine: dict[str, Any]) -> str:
    parts = [
        f"{machine.get('arch', '?')} {machine.get('cpu', '?')}",
        f"{machine.get('cores')} cores",
    ]
    if "memory_gib" in machine:
        parts.append(f"{machine['memory_gib']} GiB")
    parts.append(f"GPU: {machine['gpu']}" if machine.get("gpu") else "no GPU")
    parts.append(f"Python {machine.get('python')}")
    if machine.get("torch"):
        threads = machine.get("torch_threads")
        parts.append(f"torch {machine['torch']} ({threads} thread{'s' * (threads != 1)})")
    if "load_average_1m" in machine:
        parts.append(f"load average {machine['load_average_1m']} at the start")
    return ", ".join(parts)


# --- numbers ----------------------------------------------------------------------------------


def number(value: float) -> str:
    """Three significant figures, whole numbers with thousands separators from 100 up."""
    if value != value:  # NaN
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def spread(values: list[float]) -> str:
    return f"{number(min(values))}–{number(max(values))}"


def ratio_text(ratios: list[float] | None, baseline: str | None) -> str:
    if not ratios:
        return ""
    text = f"{statistics.median(ratios):.3f}"
    if len(ratios) > 1:
        text += f" ({min(ratios):.3f}–{max(ratios):.3f})"
    return f"{text} × {baseline}"


# --- BENCHMARKS.md ----------------------------------------------------------------------------


def section_markdown(result: BenchResult) -> str:
    lines = [f"## {result.title}", ""]
    if result.quick:
        lines += ["*Quick run (`--quick`): a smoke test of the script, not the benchmark.*", ""]
    lines += ["```", result.command, "```", ""]
    lines += [
        f"Machine: {machine_text(result.machine)}.",
        f"Date: {result.date}. "
        + (f"Median of {result.runs} runs, min–max beside it." if result.runs > 1 else "One run."),
        "",
    ]
    for group in result.groups():
        rows = [m for m in result.measurements if m.group == group]
        with_ratio = any(result.ratio(m) for m in rows)
        with_detail = any(m.detail for m in rows)
        if group:
            lines += [f"**{group}**", ""]
        header = ["", "median", "min–max"] + ["ratio"] * with_ratio + [""] * with_detail
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for m in rows:
            cells = [f"{m.label} ({m.unit})", number(m.median), spread(m.values)]
            if with_ratio:
                cells.append(ratio_text(result.ratio(m), m.baseline))
            if with_detail:
                cells.append(m.detail)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if result.figures:
        lines += ["| setting or figure | value |", "|---|---|"]
        lines += [f"| {key} | {value} |" for key, value in result.figures.items()]
        lines.append("")
    if result.notes:
        lines += [result.notes.strip(), ""]
    return "\n".join(lines).rstrip() + "\n"


def replace_section(markdown: str, name: str, body: str) -> str:
    """`markdown` with the block between this section's markers replaced (or appended)."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body}{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if pattern.search(markdown):
        return pattern.sub(lambda _: block, markdown, count=1)
    return markdown.rstrip("\n") + "\n\n" + block + "\n"


def load_results(folder: Path) -> list[BenchResult]:
    results = []
    for path in sorted(folder.glob("*.json")):
        try:
            results.append(BenchResult.from_dict(json.loads(path.read_text())))
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            print(f"{path}: not a benchmark result ({error}); skipped", file=sys.stderr)
    order = {name: i for i, name in enumerate(SECTION_ORDER)}
    return sorted(results, key=lambda r: order.get(r.name, len(order)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR)
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS_MD)
    args = parser.parse_args(argv)

    results = load_results(args.results)
    if not results:
        print(f"no results in {args.results}; nothing to do")
        return 0
    markdown = args.markdown.read_text() if args.markdown.exists() else "# Benchmarks\n"
    for result in results:
        markdown = replace_section(markdown, result.name, section_markdown(result))
        print(f"{args.markdown}: section {result.name} from {result.date}")
    args.markdown.write_text(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
