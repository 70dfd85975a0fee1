"""The figures of `bench.soak`, read from PostgreSQL once every run has ended: printed as
tables (rich) and as the markdown of its BENCHMARKS.md section."""

from __future__ import annotations

import datetime
import os
import re
import shlex
import sys
from collections import Counter
from typing import Any

from bench.report import machine_text
from bench.soak_inputs import BAD_KINDS, PREFIX, Item

RUN_COLUMNS = (
    "run",
    "worker",
    "prefect_state",
    "job",
    "job_status",
    "seen",
    "extracted",
    "failed",
    "seconds",
    "error",
)

DOCUMENTS = """
SELECT s.key, d.id, d.status, d.last_error, d.attempts,
       (SELECT count(*) FROM extractions e WHERE e.document_id = d.id) AS extractions,
       (SELECT count(*) FROM pages p WHERE p.document_id = d.id) AS pages
FROM document_sources s JOIN documents d ON d.id = s.document_id
WHERE s.key LIKE :pattern
"""

# What counts as a duplicate, each must be 0. The schema forbids the first and the third (unique
# constraints) and a second store replaces the first, so the last is the one that can tell
# work stored twice: every job counts the documents it stored, in the same transaction.
DUPLICATES = {
    "extractions per document and model version > 1": """
        SELECT count(*) FROM (SELECT 1 FROM extractions GROUP BY document_id, model_version_id
                              HAVING count(*) > 1) x""",
    "fields per extraction and name > 1": """
        SELECT count(*) FROM (SELECT 1 FROM fields GROUP BY extraction_id, name
                              HAVING count(*) > 1) x""",
    "pages per document and index > 1": """
        SELECT count(*) FROM (SELECT 1 FROM pages GROUP BY document_id, page_index
                              HAVING count(*) > 1) x""",
    "extractions whose field rows differ from their field count": """
        SELECT count(*) FROM extractions e
        WHERE e.field_count <> (SELECT count(*) FROM fields f WHERE f.extraction_id = e.id)""",
    "documents stored by more than one run (jobs' extracted counts - documents extracted)": """
        SELECT greatest(0, (SELECT coalesce(sum(documents_extracted), 0) FROM jobs
                            WHERE kind = 'digitize')
                         - (SELECT count(*) FROM documents WHERE status = 'extracted'))""",
}


def reason_class(reason: str | None) -> str:
    """The kind of a failure: the reader's error code ("damaged_document"), an exception's
    type, or "gave up after N attempts (<the last reason's class>)"."""
    if not reason:
        return "(no reason)"
    gave_up = re.match(r"gave up after (\d+) attempts: (.*)", reason, re.S)
    if gave_up:
        return f"gave up after {gave_up[1]} attempts ({reason_class(gave_up[2])})"
    code = re.match(r"([a-z_]+|[A-Z]\w*(?:Error|Exception)): ", reason)
    if code:
        return code[1]
    if reason.startswith("the run working on it stopped"):
        return "its run stopped without finishing it"
    return reason[:60]


def report(
    soak: Any,
    items: list[Item],
    machine: dict[str, Any],
    wall_seconds: float,
    ocr_cache: tuple[int, int],
    args: Any,
) -> dict[str, Any]:
    """The figures (also returned, for --out), from the database once every run has ended;
    `machine` was described before the soak started."""
    rows = {row.key: row for row in soak.query(DOCUMENTS, pattern=PREFIX + "%")}
    final = {"extracted", "failed"}
    kinds = {item.key: item.kind for item in items}
    statuses = Counter(row.status for row in rows.values())
    failed = Counter(reason_class(r.last_error) for r in rows.values() if r.status == "failed")

    bad_kinds: dict[str, dict[str, Any]] = {}
    for kind, expected in BAD_KINDS.items():
        mine = [rows.get(key) for key, k in kinds.items() if k == kind]
        outcomes = Counter(
            "no document" if row is None else f"{row.status}: {reason_class(row.last_error)}"
            for row in mine
        )
        bad_kinds[kind] = {
            "count": len(mine),
            "expected": expected,
            "as_expected": outcomes.pop(f"failed: {expected}", 0),
            "otherwise": dict(outcomes),
        }
    good_keys = [key for key, kind in kinds.items() if kind == "good"]
    good_not_extracted = {
        key: "no document" if key not in rows else f"{rows[key].status}: {rows[key].last_error}"
        for key in good_keys
        if key not in rows or rows[key].status != "extracted"
    }

    duplicates = {label: soak.scalar(sql) for label, sql in DUPLICATES.items()}
    lost_keys = sorted(k for k in kinds if k not in rows or rows[k].status not in final)
    without_extraction = sorted(
        k for k, r in rows.items() if r.status == "extracted" and r.extractions != 1
    )
    lost = {
        "objects with no document in a final state": len(lost_keys),
        "extracted documents without their extraction": len(without_extraction),
    }
    jobs = soak.query(
        "SELECT status, count(*) AS n FROM jobs WHERE kind = 'digitize' GROUP BY status"
    )
    runs = []
    for run in soak.runs:
        job = soak.job(run)
        seconds = None
        if job is not None and job.finished_at is not None and job.status != "crashed":
            seconds = round((job.finished_at - job.started_at).total_seconds(), 1)
        runs.append(
            {
                "run": run.label,
                "worker": run.worker + (" (killed)" if run.killed else ""),
                "prefect_state": run.state,
                "job": None if job is None else job.id,
                "job_status": None if job is None else job.status,
                "seen": None if job is None else job.documents_seen,
                "extracted": None if job is None else job.documents_extracted,
                "failed": None if job is None else job.documents_failed,
                "seconds": seconds,
                "error": None if job is None or not job.error else job.error[:160],
            }
        )
    models = soak.query(
        "SELECT DISTINCT m.name, m.uri FROM extractions e "
        "JOIN model_versions m ON m.id = e.model_version_id"
    )
    figures: dict[str, Any] = {
        "command": " ".join(["python -m bench.soak", *map(shlex.quote, sys.argv[1:])]),
        "machine": machine,
        "date": datetime.date.today().isoformat(),
        "objects": len(items),
        "good": len(good_keys),
        "bad": len(items) - len(good_keys),
        "documents_by_status": dict(statuses),
        "extracted": statuses.get("extracted", 0),
        "failed": statuses.get("failed", 0),
        "failed_by_reason": dict(failed.most_common()),
        "bad_kinds": bad_kinds,
        "good_not_extracted": good_not_extracted,
        "duplicated": sum(duplicates.values()),
        "duplicates": duplicates,
        "lost": sum(lost.values()),
        "lost_detail": lost,
        "lost_keys": (lost_keys + without_extraction)[:20],
        "jobs_by_status": {row.status: row.n for row in jobs},
        "runs": runs,
        "kill": soak.kill,
        "follow_up_runs": sum(run["run"].startswith("C") for run in runs),
        "wall_seconds": round(wall_seconds, 1),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "ocr_cache_entries": {"before": ocr_cache[0], "after": ocr_cache[1]},
        "models": [f"{m.name} ({m.uri})" for m in models],
        "settings": {
            "chunk_size": args.chunk_size,
            "claim_ttl_seconds": args.claim_ttl,
            "torch_threads_per_run": args.torch_threads,
            "max_attempts": 3,
        },
    }
    print_tables(figures)
    print()
    print(markdown(figures))
    return figures


def print_tables(figures: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    summary = Table(title="Soak: what became of every object under " + PREFIX)
    summary.add_column("figure")
    summary.add_column("value", justify="right")
    for label, value in summary_rows(figures):
        summary.add_row(label, str(value))
    console.print(summary)

    reasons = Table(title="failed, by reason class")
    reasons.add_column("reason class")
    reasons.add_column("documents", justify="right")
    for reason, count in figures["failed_by_reason"].items():
        reasons.add_row(reason, str(count))
    console.print(reasons)

    kinds = Table(title="bad inputs, by kind")
    for column in ("kind", "count", "must end", "did", "otherwise"):
        kinds.add_column(column)
    for kind, row in figures["bad_kinds"].items():
        otherwise = ", ".join(f"{k} ×{n}" for k, n in row["otherwise"].items()) or "-"
        kinds.add_row(kind, str(row["count"]), row["expected"], str(row["as_expected"]), otherwise)
    console.print(kinds)

    runs = Table(title="runs")
    for column in RUN_COLUMNS:
        runs.add_column(column)
    for run in figures["runs"]:
        runs.add_row(*(str(run[c]) if run[c] is not None else "-" for c in RUN_COLUMNS))
    console.print(runs)
    for label, count in figures["duplicates"].items():
        console.print(f"duplicated: {label}: {count}")
    for label, count in figures["lost_detail"].items():
        console.print(f"lost: {label}: {count}")
    if figures["lost_keys"]:
        console.print("lost, first keys: " + ", ".join(figures["lost_keys"]))
    for key, what in list(figures["good_not_extracted"].items())[:10]:
        console.print(f"[yellow]good document not extracted[/]: {key}: {what}")


def summary_rows(figures: dict[str, Any]) -> list[tuple[str, Any]]:
    kill = figures["kill"]
    killed = (
        f"run {kill['run']} on worker {kill['worker']}, {kill['seconds_after_start']} s in, "
        f"{kill['documents_in_hand']} documents in hand, {kill['documents_stored_before']} stored"
        if kill
        else "none"
    )
    cache = figures["ocr_cache_entries"]
    return [
        ("objects under the prefix", figures["objects"]),
        ("good / bad", f"{figures['good']} / {figures['bad']}"),
        ("extracted", figures["extracted"]),
        ("failed with a reason", figures["failed"]),
        ("good documents not extracted", len(figures["good_not_extracted"])),
        ("duplicated (must be 0)", figures["duplicated"]),
        ("lost (must be 0)", figures["lost"]),
        ("jobs by status", ", ".join(f"{k} {v}" for k, v in figures["jobs_by_status"].items())),
        ("runs (follow-ups)", f"{len(figures['runs'])} ({figures['follow_up_runs']})"),
        ("killed", killed),
        (
            "docflow-extract slots taken at the kill / free again after (s)",
            f"{kill.get('extract_slots_taken_at_kill')} / {kill.get('extract_slot_free_after_s')}",
        ),
        ("wall time, first run created to last run ended (s)", figures["wall_seconds"]),
        ("load average (1 min) at the end", figures["load_average_1m_at_end"]),
        (
            "OCR cache entries before / after (no OCR ran if equal)",
            f"{cache['before']} / {cache['after']}",
        ),
        ("model", "; ".join(figures["models"]) or "-"),
    ]


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "```",
        figures["command"],
        "```",
        "",
        f"Machine: {machine_text(figures['machine'])}. Date: {figures['date']}.",
        "",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in summary_rows(figures)]
    lines += ["", "| failed, by reason class | documents |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in figures["failed_by_reason"].items()]
    lines += ["", "| bad input | count | must end | did |", "|---|---|---|---|"]
    for kind, row in figures["bad_kinds"].items():
        lines.append(f"| {kind} | {row['count']} | {row['expected']} | {row['as_expected']} |")
    lines += [
        "",
        "| run | worker | Prefect state | job status | seen | extracted | failed | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in figures["runs"]:
        cells = ("run", "worker", "prefect_state", "job_status", "seen", "extracted", "failed")
        values = [str(run[c]) if run[c] is not None else "-" for c in (*cells, "seconds")]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)
