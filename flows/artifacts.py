"""What a run shows in the Prefect UI: a markdown summary per run and a progress bar while it
works. The markdown is built by plain functions (easy to test and to print in a terminal); the
`publish_*` functions hand it to Prefect."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

# How many failures the summary lists one by one; the rest are counted.
MAX_LISTED_FAILURES = 50


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def digitize_markdown(summary: Mapping[str, Any]) -> str:
    """The run summary: counts, speed, stage times, fields by name, failures with reasons."""
    parts = [
        f"# digitize: job {summary['job_id']} {summary['status']}",
        "",
        markdown_table(
            ["documents", "extracted", "failed", "released", "pages", "pages/min", "seconds"],
            [
                [
                    summary["documents"],
                    summary["extracted"],
                    summary["failed"],
                    summary.get("released", 0),
                    summary["pages"],
                    summary["pages_per_minute"],
                    summary["seconds"],
                ]
            ],
        ),
    ]
    discovery = summary.get("discovery")
    if discovery:
        parts += [
            "",
            f"Model version **{summary.get('model_version', '?')}**. Listed {discovery['listed']} "
            f"objects, {discovery['unchanged']} unchanged since an earlier run; registered "
            f"{discovery['registered_new']} new documents. Pages OCR'd now: "
            f"{summary.get('pages_ocred', 0)}, from the OCR cache: {summary.get('pages_cached', 0)}.",
        ]
    archive = summary.get("archive")
    if archive:
        failed = archive.get("failed") or []
        why = "; ".join(f"{f['key']} ({f['reason']})" for f in failed[:MAX_LISTED_FAILURES])
        parts += [
            "",
            f"Archive (searchable PDF, ALTO, hOCR in bucket `{archive['bucket']}`): written for "
            f"{archive['written']} documents, already there for {archive['skipped']}, not "
            f"written for {len(failed)}{': ' + why if why else ''}.",
        ]
    stages = summary.get("stage_seconds")
    if stages:
        parts += [
            "",
            "## Time per stage (seconds, summed over tasks)",
            "",
            markdown_table(list(stages), [[round(v, 2) for v in stages.values()]]),
        ]
    fields = summary.get("fields") or []
    parts += ["", "## Fields by name", ""]
    if fields:
        parts.append(
            markdown_table(
                ["field", "documents", "mean confidence"],
                [[f["name"], f["count"], f["mean_confidence"]] for f in fields],
            )
        )
    else:
        parts.append("No fields stored in this run.")
    failures = summary.get("failures") or []
    parts += ["", f"## Failures ({len(failures)})", ""]
    if failures:
        listed = failures[:MAX_LISTED_FAILURES]
        parts.append(
            markdown_table(["object", "reason"], [[f["key"], f["reason"]] for f in listed])
        )
        if len(failures) > len(listed):
            parts.append(f"\n... and {len(failures) - len(listed)} more.")
    else:
        parts.append("None.")
    return "\n".join(parts) + "\n"


def publish_markdown(markdown: str, key: str, description: str) -> UUID:
    from prefect.artifacts import create_markdown_artifact

    return create_markdown_artifact(markdown=markdown, key=key, description=description)


class Progress:
    """A Prefect progress artifact moved forward as chunks finish."""

    def __init__(self, total: int, key: str, description: str):
        from prefect.artifacts import create_progress_artifact

        self.total, self.done, self.description = max(total, 0), 0, description
        self.artifact_id = create_progress_artifact(
            progress=100.0 if self.total == 0 else 0.0, key=key, description=description
        )

    def advance(self, amount: int = 1) -> float:
        from prefect.artifacts import update_progress_artifact

        self.done += amount
        percent = 100.0 if self.total == 0 else min(100.0, 100.0 * self.done / self.total)
        update_progress_artifact(
            artifact_id=self.artifact_id,
            progress=percent,
            description=f"{self.description}: {self.done}/{self.total}",
        )
        return percent
