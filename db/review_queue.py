"""The review queue as a table: one row per item waiting for a decision, kept up to date, so
that taking the next item is an index walk however many fields the database holds.

An item is in `review_queue` when it belongs to its document's latest extraction, has no
decision other than skip, and either its confidence (the name's most confident row) is below
its threshold or the audit sample drew it. Who may see it (leases, a reviewer's own skips) is
decided when it is taken, not here.

The table is brought up to date before every read (`refresh_queue`), under one row lock so two
refreshes never race:
- incrementally: the documents whose latest extraction was stored since the last refresh are
  queued again from scratch. The window reaches `OVERLAP` further back, because an extraction
  stored by a transaction that started before the last refresh but committed after it carries
  the older time; queuing a document again is idempotent.
- in full: when what decides membership changed (a threshold was set, the active model and so
  the default threshold, or the audit rate), every item is judged again.
A decision removes its item (`db.review_decisions`); a reprocess deletes the old field rows,
and with them their queue rows (ON DELETE CASCADE), until the refresh queues the new ones.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

AUDIT_MODULUS = 10_000
OVERLAP = "1 hour"


def current_items(scope: str) -> str:
    """SQL for the current items of the documents `scope` selects (a condition on the
    extraction `e`, e.g. "e.document_id = :document"): per (document, name) the most confident
    row of the document's latest extraction (an extraction may answer a name twice), with its
    threshold (the field's, else :default_threshold)."""
    return f"""
        SELECT DISTINCT ON (e.document_id, f.name)
            f.id AS field_id, e.document_id, f.name, f.confidence, e.model_version_id,
            e.job_id, e.created_at AS extracted_at,
            COALESCE(t.threshold, :default_threshold) AS threshold
        FROM fields AS f
        JOIN extractions AS e ON e.id = f.extraction_id
        LEFT JOIN review_thresholds AS t ON t.name = f.name
        WHERE {scope} AND NOT EXISTS (
            SELECT 1 FROM extractions AS newer
            WHERE newer.document_id = e.document_id
              AND (newer.created_at, newer.id) > (e.created_at, e.id)
        )
        ORDER BY e.document_id, f.name, f.confidence DESC NULLS LAST, f.id
    """


def _items(scope: str) -> str:
    """The current items of `scope` that belong in the queue; :audit_cutoff binds the sample."""
    return f"""
        SELECT c.document_id, c.name, c.field_id, c.job_id, c.confidence,
               COALESCE(c.confidence, 0) >= c.threshold AS audit
        FROM ({current_items(scope)}) AS c
        WHERE (COALESCE(c.confidence, 0) < c.threshold
               OR mod(abs(hashtextextended(c.field_id::text, 0)), {AUDIT_MODULUS}) < :audit_cutoff)
          AND NOT EXISTS (
            SELECT 1 FROM review_decisions AS rd
            WHERE rd.document_id = c.document_id AND rd.name = c.name AND rd.decision <> 'skip'
          )
    """


_INSERT = """
    INSERT INTO review_queue (document_id, name, field_id, job_id, confidence, audit)
    {items}
    ON CONFLICT (document_id, name) DO UPDATE
        SET field_id = EXCLUDED.field_id, job_id = EXCLUDED.job_id,
            confidence = EXCLUDED.confidence, audit = EXCLUDED.audit
"""

_TOUCHED = (
    "e.document_id IN (SELECT document_id FROM extractions"
    f" WHERE created_at > CAST(:since AS timestamptz) - interval '{OVERLAP}')"
)


QUEUE_ALL = text(_INSERT.format(items=_items("true")))
QUEUE_TOUCHED = text(_INSERT.format(items=_items(_TOUCHED)))
DEQUEUE_TOUCHED = text(
    "DELETE FROM review_queue WHERE document_id IN (SELECT document_id FROM extractions"
    f" WHERE created_at > CAST(:since AS timestamptz) - interval '{OVERLAP}')"
)


def refresh_queue(session: Session, default_threshold: float, audit_rate: float) -> None:
    """Bring `review_queue` up to date (see the module docstring). Runs in the caller's
    transaction; the caller commits."""
    cutoff = round(audit_rate * AUDIT_MODULUS)
    session.execute(
        text("INSERT INTO review_queue_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING")
    )
    # The row lock orders this refresh with the others and with `thresholds_changed`: a
    # threshold set while this refresh runs bumps the version after it, and the next refresh
    # rebuilds.
    state = session.execute(
        text(
            "SELECT refreshed_at, default_threshold, audit_cutoff, thresholds_version,"
            " built_thresholds_version FROM review_queue_state WHERE id = 1 FOR UPDATE"
        )
    ).one()
    params: dict[str, Any] = {"default_threshold": default_threshold, "audit_cutoff": cutoff}
    rebuild = (
        state.refreshed_at is None
        or state.default_threshold != default_threshold
        or state.audit_cutoff != cutoff
        or state.thresholds_version != state.built_thresholds_version
    )
    if rebuild:
        session.execute(text("DELETE FROM review_queue"))
        session.execute(QUEUE_ALL, params)
    else:
        since = {"since": state.refreshed_at}
        session.execute(DEQUEUE_TOUCHED, since)
        session.execute(QUEUE_TOUCHED, {**params, **since})
    session.execute(
        text(
            "UPDATE review_queue_state SET default_threshold = :default_threshold,"
            " audit_cutoff = :audit_cutoff, refreshed_at = now(),"
            " built_thresholds_version = :version WHERE id = 1"
        ),
        {**params, "version": state.thresholds_version},
    )


def thresholds_changed(session: Session) -> None:
    """Say that a field's threshold changed: the next refresh judges every item again."""
    session.execute(
        text(
            "INSERT INTO review_queue_state (id, thresholds_version) VALUES (1, 1)"
            " ON CONFLICT (id) DO UPDATE"
            " SET thresholds_version = review_queue_state.thresholds_version + 1"
        )
    )


def dequeue(session: Session, document_id: int, name: str) -> None:
    session.execute(
        text("DELETE FROM review_queue WHERE document_id = :d AND name = :n"),
        {"d": document_id, "n": name},
    )


# The items a reviewer may take, oldest job first (job ids grow with time; items of no job
# last). Rows another claim is taking right now are skipped, not waited for.
CANDIDATES = """
    SELECT q.document_id, q.name
    FROM review_queue AS q
    JOIN fields AS f ON f.id = q.field_id
    JOIN extractions AS e ON e.id = f.extraction_id
    JOIN model_versions AS mv ON mv.id = e.model_version_id
    WHERE NOT EXISTS (
        SELECT 1 FROM review_leases AS l
        WHERE l.document_id = q.document_id AND l.name = q.name
          AND l.expires_at > now() AND l.reviewer_id <> :reviewer
      )
      AND NOT EXISTS (
        SELECT 1 FROM review_decisions AS rd
        WHERE rd.document_id = q.document_id AND rd.name = q.name
          AND rd.decision = 'skip' AND rd.reviewer_id = :reviewer
      )
      AND (CAST(:field AS text) IS NULL OR q.name = :field)
      AND (CAST(:job AS bigint) IS NULL OR q.job_id = :job)
      AND (CAST(:model AS text) IS NULL OR mv.name = :model)
    ORDER BY q.job_id NULLS LAST, q.document_id, q.name
    LIMIT :limit
    FOR UPDATE OF q SKIP LOCKED
"""

# What waits, per field name and model version, for the dashboard and the queue page.
BACKLOG = """
    SELECT q.name, mv.name AS model_version,
           count(*) FILTER (WHERE NOT q.audit) AS below,
           count(*) FILTER (WHERE q.audit) AS audit
    FROM review_queue AS q
    JOIN fields AS f ON f.id = q.field_id
    JOIN extractions AS e ON e.id = f.extraction_id
    JOIN model_versions AS mv ON mv.id = e.model_version_id
    GROUP BY q.name, mv.name
    ORDER BY q.name, mv.name
"""

__all__ = [
    "BACKLOG",
    "CANDIDATES",
    "current_items",
    "dequeue",
    "refresh_queue",
    "thresholds_changed",
]
