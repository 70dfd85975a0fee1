"""The review application over HTTP (Starlette's test client) against the real PostgreSQL and
S3: sign-in, CSRF, escaping, leases, and what a decision writes. The browser tests
(test_review_browser.py) drive the same app through Chromium."""

from __future__ import annotations

import csv
import io
import logging
import re

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from db import migrate
from db.review import add_reviewer
from flows.cli import main
from flows.clients import object_store, sessions
from flows.review.app import create_app
from flows.review.auth import hash_password
from tests.helpers_review import seed_scene

PASSWORD = "correct horse battery"


@pytest.fixture
def review_app(docflow_env):
    migrate.upgrade(docflow_env.database_url.get_secret_value())
    factory = sessions(docflow_env)
    with factory() as session:
        documents = seed_scene(docflow_env, session, count=2, key_prefix="scans/<b>x</b>-")
        for name in ("alice", "bob"):
            add_reviewer(session, name, hash_password(PASSWORD))
        session.commit()
    app = create_app(docflow_env, factory, object_store(docflow_env))
    return app, factory, documents


def client_for(app) -> TestClient:
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def csrf_of(client: TestClient, path: str = "/login") -> str:
    page = client.get(path)
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def sign_in(client: TestClient, name: str = "alice") -> str:
    token = csrf_of(client)
    response = client.post(
        "/login", data={"name": name, "password": PASSWORD, "csrf_token": token, "next": "/queue"}
    )
    assert response.status_code == 303 and response.headers["location"] == "/queue"
    return csrf_of(client, "/queue")


ROUTES = [
    ("GET", "/queue"),
    ("GET", "/review"),
    ("GET", "/documents/1"),
    ("GET", "/documents/1/pages/0.jpg"),
    ("GET", "/dashboard"),
    ("GET", "/thresholds"),
    ("GET", "/"),
]


def test_without_a_session_every_route_leads_to_sign_in(review_app):
    app, _, _ = review_app
    client = client_for(app)
    for method, path in ROUTES:
        response = client.request(method, path)
        assert response.status_code == 303, path
        assert response.headers["location"].startswith(("/login", "/queue")), path
    for path in ("/review/00000000-0000-0000-0000-000000000000/decide", "/thresholds"):
        token = csrf_of(client)
        response = client.post(path, data={"csrf_token": token, "decision": "accept"})
        assert response.status_code == 303 and response.headers["location"].startswith("/login")
    assert client.get("/login").status_code == 200
    assert client.get("/static/review.css").status_code == 200


def test_forms_need_the_sessions_csrf_token(review_app):
    app, _, _ = review_app
    client = client_for(app)
    assert client.post("/login", data={"name": "alice", "password": PASSWORD}).status_code == 403
    wrong = {"name": "alice", "password": PASSWORD, "csrf_token": "forged"}
    assert client.post("/login", data=wrong).status_code == 403
    token = sign_in(client)
    item = client.get("/review")
    lease = re.search(r'data-token="([^"]+)"', item.text).group(1)
    for data in ({"decision": "accept"}, {"decision": "accept", "csrf_token": token + "x"}):
        assert client.post(f"/review/{lease}/decide", data=data).status_code == 403
    headers = {"X-CSRF-Token": token}
    done = client.post(f"/review/{lease}/decide", data={"decision": "skip"}, headers=headers)
    assert done.status_code == 303


def test_wrong_password_and_passwords_never_logged(review_app, caplog):
    app, _, _ = review_app
    client = client_for(app)
    caplog.set_level(logging.DEBUG)
    token = csrf_of(client)
    response = client.post(
        "/login", data={"name": "alice", "password": "wrong password!", "csrf_token": token}
    )
    assert response.status_code == 401 and "Wrong name or password" in response.text
    sign_in(client)
    assert PASSWORD not in caplog.text and "wrong password!" not in caplog.text


def test_ocr_text_and_keys_are_shown_escaped(review_app):
    app, _, _ = review_app
    client = client_for(app)
    sign_in(client)
    page = client.get("/review")
    assert page.status_code == 200
    assert "<script>alert(" not in page.text and "<b>x</b>" not in page.text
    assert "&lt;script&gt;alert(" in page.text and "&lt;b&gt;x&lt;/b&gt;" in page.text


def test_a_correction_from_clicked_words_reaches_labels_and_current_fields(review_app, capsys):
    app, factory, documents = review_app
    client = client_for(app)
    token = sign_in(client)
    page = client.get("/review?field=total")
    lease = re.search(r'data-token="([^"]+)"', page.text).group(1)
    assert client.get("/documents/1/pages/0.jpg").headers["content-type"] == "image/jpeg"
    answer = client.post(
        f"/review/{lease}/decide",
        data={
            "decision": "correct",
            "csrf_token": token,
            "page": "0",
            "words": "5",
            "query": "field=total",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/review?field=total"
    # submitting the same form again writes nothing
    again = client.post(
        f"/review/{lease}/decide", data={"decision": "correct", "csrf_token": token, "value": "1"}
    )
    assert again.status_code == 303
    with factory() as session:
        labels = session.execute(sa.text("SELECT name, value, source FROM labels")).all()
        assert labels == [("total", "19.00", "review")]
        shown = session.execute(
            sa.text(
                "SELECT value, value_num, corrected, box FROM current_fields"
                " WHERE name = 'total' AND document_id = :d"
            ),
            {"d": documents[0].document_id},
        ).one()
        assert (shown.value, str(shown.value_num), shown.corrected) == ("19.00", "19.00", True)
        assert shown.box == [300, 300, 380, 330]
        assert session.execute(sa.text("SELECT count(*) FROM review_decisions")).scalar() == 1
    # the export shows the corrected value, and says it was corrected
    capsys.readouterr()
    assert main(["export", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    totals = {row["document_id"]: row for row in rows if row["name"] == "total"}
    corrected = totals[str(documents[0].document_id)]
    assert (corrected["value"], corrected["corrected"]) == ("19.00", "True")
    assert totals[str(documents[1].document_id)]["corrected"] == "False"


def test_a_reviewer_cannot_decide_on_another_reviewers_lease(review_app):
    app, _, _ = review_app
    alice, bob = client_for(app), client_for(app)
    sign_in(alice)
    bob_token = sign_in(bob, "bob")
    lease_a = re.search(r'data-token="([^"]+)"', alice.get("/review").text).group(1)
    lease_b = re.search(r'data-token="([^"]+)"', bob.get("/review").text).group(1)
    assert lease_a != lease_b
    refused = bob.post(
        f"/review/{lease_a}/decide", data={"decision": "accept", "csrf_token": bob_token}
    )
    assert refused.status_code == 409


def test_whole_document_dashboard_and_thresholds_render(review_app):
    app, _, documents = review_app
    client = client_for(app)
    token = sign_in(client)
    page = client.get(f"/documents/{documents[0].document_id}")
    assert page.status_code == 200
    assert page.text.count('class="decide field-row"') == 3  # company, date, total
    saved = client.post(
        "/thresholds", data={"name": "total", "threshold": "0.3", "csrf_token": token}
    )
    assert saved.status_code == 303
    assert 'value="0.3"' in client.get("/thresholds").text
    dashboard = client.get("/dashboard")
    assert dashboard.status_code == 200 and "The next fine-tune" in dashboard.text


def test_reviewers_command_adds_lists_and_disables(review_app, monkeypatch, capsys):
    app, factory, _ = review_app
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert main(["reviewers", "add", "carol", "--password-stdin"]) == 0
    assert "a long enough password" not in capsys.readouterr().out
    client = client_for(app)
    token = csrf_of(client)
    signed_in = client.post(
        "/login",
        data={"name": "carol", "password": "a long enough password", "csrf_token": token},
    )
    assert signed_in.status_code == 303
    assert main(["reviewers", "list"]) == 0
    assert "carol" in capsys.readouterr().out
    assert main(["reviewers", "disable", "carol"]) == 0
    # disabled: the session she holds ends at her next request
    assert client.get("/queue").headers["location"].startswith("/login")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["reviewers", "add", "dave", "--password-stdin"]) == 1
    with factory() as session:
        names = session.execute(sa.text("SELECT name FROM reviewers ORDER BY name")).scalars()
        assert list(names) == ["alice", "bob", "carol"]
