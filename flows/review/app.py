"""The review application: a FastAPI app rendering Jinja2 templates, reading and writing
PostgreSQL through `db.review` and page images through the object store.

Every route but the sign-in page and the static files needs a signed-in reviewer (anything
else is sent to sign in), and every POST needs the session's CSRF token (`auth.check_csrf`).
The review screen works without JavaScript (forms post and redirect); with it, `review.js`
posts decisions in the background and swaps in the next item, and adds keyboard shortcuts
and OCR words that click into the correction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware.sessions import SessionMiddleware

from db.review import release, reviewer_by_id, reviewer_by_name
from docformer.grounding import union_box
from docformer.normalization import normalize_field
from flows.review.auth import check_csrf, csrf_token, session_secret, verify_password
from flows.review.pages import PageCache
from flows.settings import Settings, reveal
from flows.storage import ObjectStore

HERE = Path(__file__).resolve().parent
PUBLIC_PATHS = ("/login", "/static/")
SESSION_COOKIE = "docflow_review"
SESSION_MAX_AGE = 12 * 3600  # one working day; the lease, not the session, limits an item


@dataclass(frozen=True)
class ReviewContext:
    settings: Settings
    sessions: sessionmaker[Session]
    pages: PageCache


class SignInRequired(Exception):
    pass


def create_app(settings: Settings, sessions: sessionmaker[Session], store: ObjectStore) -> FastAPI:
    """The application for `settings`' database and buckets. `docflow review` serves it with
    uvicorn; behind a proxy, serve it with `--proxy-headers` (deploy/compose.yaml does)."""
    home = Path(settings.home).expanduser().resolve()
    context = ReviewContext(
        settings,
        sessions,
        PageCache(
            store, settings.artifact_bucket, home / "review-cache", settings.max_document_bytes
        ),
    )
    secret = settings.review_secret_key
    app = FastAPI(title="docflow review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.review = context
    app.add_middleware(
        SessionMiddleware,
        secret_key=session_secret(reveal(secret) if secret else None, home),
        session_cookie=SESSION_COOKIE,
        max_age=SESSION_MAX_AGE,
        same_site="strict",
        https_only=settings.review_https_only,
    )
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(SignInRequired)
    async def sign_in(request: Request, _: SignInRequired) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)

    from flows.review import routes_admin, routes_review

    app.include_router(public_router())
    app.include_router(routes_review.router, dependencies=[Depends(require_reviewer)])
    app.include_router(routes_admin.router, dependencies=[Depends(require_reviewer)])
    return app


templates = Jinja2Templates(directory=str(HERE / "templates"))


def place(box: Any, page: Any) -> str:
    """CSS that puts a page-pixel box on the page image, in percent of the page."""
    x0, y0, x1, y1 = box
    w, h = page.width or 1, page.height or 1
    return (
        f"left:{100 * x0 / w:.3f}%;top:{100 * y0 / h:.3f}%;"
        f"width:{100 * (x1 - x0) / w:.3f}%;height:{100 * (y1 - y0) / h:.3f}%"
    )


def boxes_on(items: Any, page: int) -> list[tuple[str, Any]]:
    """(name, box) of the items whose box is on `page`."""
    return [(i.name, i.box) for i in items if i.box is not None and (i.page or 0) == page]


templates.env.filters.update(place=place, boxes_on=boxes_on)


def render(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
    values.setdefault("reviewer", request.session.get("reviewer"))
    values["csrf_token"] = csrf_token(request)
    return templates.TemplateResponse(request, name, values, status_code=status_code)


def review_context(request: Request) -> ReviewContext:
    return request.app.state.review


def db(request: Request):
    with review_context(request).sessions() as session:
        yield session


def require_reviewer(request: Request, _csrf: Annotated[None, Depends(check_csrf)]) -> int:
    """The signed-in reviewer's id; a reviewer removed or disabled since signing in is sent to
    sign in again. CSRF is checked first, so a forged POST gets a 403 either way."""
    reviewer_id = request.session.get("reviewer_id")
    if reviewer_id is None:
        raise SignInRequired()
    with review_context(request).sessions() as session:
        reviewer = reviewer_by_id(session, reviewer_id)
        enabled = reviewer is not None and not reviewer.disabled
    if not enabled:
        request.session.clear()
        raise SignInRequired()
    return reviewer_id


# The dependencies routes declare: a database session, and the signed-in reviewer's id.
Database = Annotated[Session, Depends(db)]
ReviewerId = Annotated[int, Depends(require_reviewer)]


def safe_next(target: str | None) -> str:
    """Only a path of this application: never another site (an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/queue"
    return target


def public_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(check_csrf)])

    @router.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str | None = None) -> HTMLResponse:
        return render(request, "login.html", next=safe_next(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", "")), str(form.get("password", ""))
        target = safe_next(str(form.get("next", "")))
        with review_context(request).sessions() as session:
            row = reviewer_by_name(session, name)
        if not verify_password(row.password_hash if row else None, password) or row.disabled:
            return render(
                request,
                "login.html",
                status_code=401,
                next=target,
                error="Wrong name or password.",
            )
        request.session.clear()  # a new session: nothing carried over from before sign-in
        request.session.update({"reviewer_id": row.id, "reviewer": name})
        return RedirectResponse(target, status_code=303)

    @router.post("/logout")
    def logout(request: Request) -> Response:
        reviewer_id = request.session.get("reviewer_id")
        if reviewer_id is not None:
            with review_context(request).sessions() as session:
                release(session, reviewer_id)
                session.commit()
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    @router.get("/")
    def home() -> Response:
        return RedirectResponse("/queue", status_code=303)

    return router


def correction_from_words(
    request: Request, document_id: int, sha256: str, page: int | None, word_ids: str
) -> tuple[str, int | None, tuple[int, int, int, int] | None]:
    """The words a reviewer clicked (`word_ids`: "3,4,5" on `page`): their text, the page and
    the box around them, from the page's OCR as the server has it."""
    if page is None or not word_ids.strip():
        return "", None, None
    words = review_context(request).pages.words(sha256, page)
    if words is None:
        return "", None, None
    try:
        chosen = [words.words[int(i)] for i in word_ids.split(",") if i.strip()]
    except (ValueError, IndexError) as error:
        raise HTTPException(400, "unknown OCR word") from error
    if not chosen:
        return "", None, None
    return (
        " ".join(w["text"] for w in chosen),
        page,
        union_box([tuple(w["box"]) for w in chosen]),
    )


def normalized(name: str, value: str) -> dict[str, Any]:
    typed = normalize_field(name, value)
    return {"value_num": typed.value_num, "value_date": typed.value_date}


def parse_token(token: str) -> uuid.UUID:
    try:
        return uuid.UUID(token)
    except ValueError as error:
        raise HTTPException(404, "no such item") from error


__all__ = ["create_app"]
