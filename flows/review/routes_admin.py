"""The dashboard (what the audit measured, the backlog, the pace, what the next fine-tune will
learn from) and the per-field thresholds that decide what goes to review."""

from __future__ import annotations

from itertools import groupby

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from markupsafe import Markup

from db.review import default_threshold, set_threshold, thresholds
from db.review_stats import (
    audit_reliability,
    decisions_by_reviewer,
    decisions_per_hour,
    labels_for_next_finetune,
    review_backlog,
)
from flows.review.app import Database, render, review_context
from flows.review.charts import reliability_svg

router = APIRouter()


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, session: Database) -> HTMLResponse:
    settings = review_context(request).settings
    rows = audit_reliability(session)
    charts = []
    for (name, version), group in groupby(rows, key=lambda r: (r.name, r.model_version)):
        buckets = [(r.low, r.high, r.count, r.accepted) for r in group]
        title = f"{name} · {version or 'deleted version'}"
        # reliability_svg escapes every text it draws: the SVG is safe to insert as it is
        charts.append((title, Markup(reliability_svg(buckets, title=title))))
    hours = decisions_per_hour(session)
    return render(
        request,
        "dashboard.html",
        charts=charts,
        backlog=review_backlog(session, audit_rate=settings.review_audit_rate),
        hours=hours,
        decisions_today=sum(h.decisions for h in hours),
        reviewers=decisions_by_reviewer(session),
        next_finetune=labels_for_next_finetune(session),
    )


@router.get("/thresholds", response_class=HTMLResponse)
def thresholds_page(request: Request, session: Database) -> HTMLResponse:
    # The audit rate the queue is kept at: another rate would make the queue rebuild itself.
    settings = review_context(request).settings
    names = [row.name for row in review_backlog(session, audit_rate=settings.review_audit_rate)]
    return render(
        request,
        "thresholds.html",
        thresholds=thresholds(session, names),
        default=default_threshold(session),
    )


@router.post("/thresholds")
async def thresholds_save(request: Request, session: Database) -> Response:
    form = await request.form()
    name = str(form.get("name", "")).strip()
    raw = str(form.get("threshold", "")).strip()
    if not name:
        raise HTTPException(400, "a threshold needs a field name")
    try:
        value = float(raw) if raw else None
        set_threshold(session, name, value, request.session.get("reviewer", "?"))
    except ValueError as error:
        raise HTTPException(400, f"a threshold is a number from 0 to 1: {error}") from error
    session.commit()
    return RedirectResponse("/thresholds", status_code=303)


__all__ = ["router"]
