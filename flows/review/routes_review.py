"""The review screens: the queue, one item at a time, a whole document, and the page images.

An item's screen shows the page with the field's box, the page zoomed to the box, the model's
value, its normalised form and confidence, and the page's OCR words to click into a
correction. A decision posts to `/review/{token}/decide`; with JavaScript the answer is the
next item's HTML (`fragment=1`), without it a redirect to the next item.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy import text
from sqlalchemy.orm import Session

from db.models_review import ReviewDecisionKind
from db.review import QueueFilter, ReviewItem, claim_document, claim_next
from db.review_decisions import LeaseLost, decide
from flows.review.app import (
    Database,
    ReviewerId,
    correction_from_words,
    normalized,
    parse_token,
    render,
    review_context,
)

router = APIRouter()


def queue_filter(field: str | None, job: str | None, model: str | None) -> QueueFilter:
    try:
        job_id = int(job) if job else None
    except ValueError as error:
        raise HTTPException(400, "job is a job id (a number)") from error
    return QueueFilter(field=field or None, job_id=job_id, model_version=model or None)


def filter_query(queue: QueueFilter) -> str:
    values = {"field": queue.field, "job": queue.job_id, "model": queue.model_version}
    return urlencode({k: v for k, v in values.items() if v is not None})


def page_engines(session: Session, document_id: int) -> dict[int, str]:
    rows = session.execute(
        text(
            "SELECT page_index, ocr_engine FROM pages WHERE document_id = :d"
            " AND ocr_engine IS NOT NULL"
        ),
        {"d": document_id},
    ).all()
    return {row.page_index: row.ocr_engine for row in rows}


def prepare_pages(request: Request, session: Session, item: ReviewItem) -> str | None:
    """Render the item's document into the page cache; the reason when it cannot be read."""
    from docformer.io import DocumentError
    from flows.storage import StorageError

    try:
        review_context(request).pages.ensure(
            item.source_bucket,
            item.source_key,
            item.sha256,
            page_engines(session, item.document_id),
        )
    except (DocumentError, StorageError) as error:
        return f"The document cannot be shown: {error}"
    return None


def item_values(request: Request, session: Session, item: ReviewItem) -> dict[str, Any]:
    problem = prepare_pages(request, session, item)
    page = item.page if item.page is not None else 0
    words = review_context(request).pages.words(item.sha256, page)
    return {
        "item": item,
        "page": page,
        "page_words": words,
        "problem": problem,
        "typed": normalized(item.name, item.value) if item.value else {},
    }


@router.get("/queue", response_class=HTMLResponse)
def queue_page(
    request: Request,
    session: Database,
    field: str | None = None,
    job: str | None = None,
    model: str | None = None,
) -> HTMLResponse:
    from db.review_stats import review_backlog

    queue = queue_filter(field, job, model)
    settings = review_context(request).settings
    backlog = review_backlog(session, audit_rate=settings.review_audit_rate)
    return render(request, "queue.html", backlog=backlog, queue=queue, query=filter_query(queue))


@router.get("/review", response_class=HTMLResponse)
def review_next(
    request: Request,
    reviewer_id: ReviewerId,
    session: Database,
    field: str | None = None,
    job: str | None = None,
    model: str | None = None,
    fragment: int = 0,
) -> HTMLResponse:
    """The reviewer's next item (leased to them), or the end of the queue."""
    queue = queue_filter(field, job, model)
    settings = review_context(request).settings
    item = claim_next(
        session,
        reviewer_id,
        queue,
        audit_rate=settings.review_audit_rate,
        lease_seconds=settings.review_lease_seconds,
    )
    values = item_values(request, session, item) if item else {"item": None}
    template = "item.html" if fragment else "review.html"
    return render(request, template, query=filter_query(queue), **values)


@router.post("/review/{token}/decide")
async def review_decide(
    request: Request,
    reviewer_id: ReviewerId,
    session: Database,
    token: str,
) -> Response:
    form = await request.form()
    decision = str(form.get("decision", ""))
    if decision not in {kind.value for kind in ReviewDecisionKind}:
        raise HTTPException(400, f"unknown decision {decision!r}")
    lease = parse_token(token)
    item_row = session.execute(
        text(
            "SELECT l.document_id, d.sha256, l.name FROM review_leases AS l"
            " JOIN documents AS d ON d.id = l.document_id WHERE l.token = :t"
        ),
        {"t": lease},
    ).one_or_none()
    value = " ".join(str(form.get("value", "")).split())
    page, box = None, None
    if item_row is not None and decision == ReviewDecisionKind.CORRECT:
        page_text = form.get("page")
        page_index = int(page_text) if page_text not in (None, "") else None
        clicked, page, box = correction_from_words(
            request, item_row.document_id, item_row.sha256, page_index, str(form.get("words", ""))
        )
        if not value:
            value = clicked
        elif clicked and value != clicked:
            box = None  # typed over the clicked words: the box no longer shows the value
    name = item_row.name if item_row is not None else ""
    try:
        decide(
            session,
            reviewer_id,
            lease,
            decision,
            value=value or None,
            normalized=normalized(name, value) if value else None,
            page=page,
            box=box,
        )
    except LeaseLost as error:
        return decision_problem(request, 409, str(error))
    except ValueError as error:
        return decision_problem(request, 400, str(error))
    back = str(form.get("back", ""))
    if back.startswith("/documents/"):
        target = back
    else:
        query = str(form.get("query", ""))
        target = "/review" + (f"?{query}" if query else "")
    if form.get("fragment"):
        separator = "&" if "?" in target else "?"
        return RedirectResponse(f"{target}{separator}fragment=1", status_code=303)
    return RedirectResponse(target, status_code=303)


def decision_problem(request: Request, status: int, message: str) -> HTMLResponse:
    return render(request, "problem.html", status_code=status, message=message)


@router.get("/documents/{document_id}", response_class=HTMLResponse)
def review_document(
    request: Request,
    reviewer_id: ReviewerId,
    session: Database,
    document_id: int,
) -> HTMLResponse:
    """Every field of one document at once, each leased to this reviewer."""
    settings = review_context(request).settings
    items, held = claim_document(
        session, reviewer_id, document_id, lease_seconds=settings.review_lease_seconds
    )
    if not items and not held:
        raise HTTPException(404, "no extraction of this document to review")
    problem = prepare_pages(request, session, items[0]) if items else None
    sha256 = items[0].sha256 if items else ""
    page_count = max(1, items[0].page_count or 1) if items else 1
    pages = [(i, review_context(request).pages.words(sha256, i)) for i in range(page_count)]
    return render(
        request,
        "document.html",
        items=items,
        held=held,
        document_id=document_id,
        pages=pages,
        sha256=sha256,
        problem=problem,
        typed={i.name: normalized(i.name, i.value) if i.value else {} for i in items},
    )


@router.get("/documents/{document_id}/pages/{page}.jpg")
def page_image(
    request: Request,
    session: Database,
    document_id: int,
    page: int,
    crop: str | None = None,
) -> Response:
    """A page as the reviewer sees it, or with `crop=x0,y0,x1,y1` the part around a box."""
    sha256 = session.execute(
        text("SELECT sha256 FROM documents WHERE id = :d"), {"d": document_id}
    ).scalar_one_or_none()
    pages = review_context(request).pages
    path = pages.image_path(sha256, page) if sha256 else None
    if path is None:
        raise HTTPException(404, "this page has not been prepared for review")
    headers = {"Cache-Control": "private, max-age=3600"}
    if crop:
        try:
            box = tuple(int(v) for v in crop.split(","))
        except ValueError as error:
            raise HTTPException(400, "crop is x0,y0,x1,y1") from error
        if len(box) != 4:
            raise HTTPException(400, "crop is x0,y0,x1,y1")
        data = pages.crop(sha256, page, box)
        if data is None:
            raise HTTPException(404, "nothing to show there")
        return Response(data, media_type="image/jpeg", headers=headers)
    return FileResponse(path, media_type="image/jpeg", headers=headers)


__all__ = ["router"]
