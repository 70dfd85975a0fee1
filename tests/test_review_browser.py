"""The review application in a real browser: Debian's chromium, headless, driven by Selenium
through chromium-driver, against the app served by uvicorn on the real PostgreSQL and S3.

The documents are synthetic receipts (docformer.synth) with their exact OCR words in the OCR
cache, extracted with a wrong total, an unsure date and an invoice number that is not on the
page: a reviewer signs in, accepts, marks absent and corrects by clicking the page's words,
all from the keyboard, and the labels and current_fields follow. The review screen's
screenshot is written under the test's temporary folder (and to $DOCFLOW_REVIEW_SCREENSHOT
when set: `make review-screenshot` makes docs/review-screen.png that way).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from decimal import Decimal

import pytest
import sqlalchemy as sa
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from db import migrate
from db.review import add_reviewer
from docformer.grounding import ground_answer
from docformer.io import sniff_media_type
from docformer.synth.generator import render_document
from flows.clients import object_store, sessions
from flows.review.app import create_app
from flows.review.auth import hash_password
from tests.helpers_review import seed_model, seed_page_with_ocr

PASSWORD = "correct horse battery"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def seed_receipts(settings, session, count: int) -> list[dict]:
    """`count` synthetic receipts in the inbox with their OCR cached, each extracted with the
    date right but unsure, an invoice number the page does not print, and a wrong total."""
    store = object_store(settings)
    for bucket in (settings.inbox_bucket, settings.artifact_bucket):
        store.ensure_bucket(bucket)
    model = seed_model(session)
    seeded = []
    for index in range(count):
        receipt = render_document("receipt", 11, index, True)
        data, ocr = receipt.encode(), receipt.ocr
        key = f"scans/{receipt.name}.{sniff_media_type(data).split('/')[1]}"
        total = ground_answer(receipt.fields["total"], ocr)
        date = ground_answer(receipt.fields["date"], ocr)
        wrong_total = str(Decimal(receipt.fields["total"]) + 1)
        fields = [
            {
                "name": "date",
                "value": receipt.fields["date"],
                "confidence": 0.62,
                "page": 0,
                "box": list(date.box),
            },
            {"name": "invoice_number", "value": "NOT-PRINTED-1", "confidence": 0.31},
            {
                "name": "total",
                "value": wrong_total,
                "value_num": Decimal(wrong_total),
                "confidence": 0.44,
                "page": 0,
                "box": list(total.box),
            },
        ]
        document = seed_page_with_ocr(session, model, settings, key, data, fields, ocr)
        seeded.append({"document": document, "fields": receipt.fields, "total_words": total})
    return seeded


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def review_server(docflow_env):
    """The app on a free local port, with two reviewers and two receipts; the audit sample is
    off so the queue is exactly the unsure fields."""
    settings = docflow_env.model_copy(update={"review_audit_rate": 0.0})
    migrate.upgrade(settings.database_url.get_secret_value())
    factory = sessions(settings)
    with factory() as session:
        receipts = seed_receipts(settings, session, 2)
        for name in ("alice", "bob"):
            add_reviewer(session, name, hash_password(PASSWORD))
        session.commit()
    app = create_app(settings, factory, object_store(settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the review application did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", factory, receipts
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browsers(tmp_path):
    started = []

    def start() -> webdriver.Chrome:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",  # the suite may run as root
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
            f"--user-data-dir={tmp_path / f'chromium-{len(started)}'}",
        ):
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.quit()


def sign_in(driver: webdriver.Chrome, base: str, name: str) -> None:
    driver.get(f"{base}/review")
    assert "/login" in driver.current_url
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD + Keys.ENTER)
    WebDriverWait(driver, 20).until(EC.presence_of_element_located((By.ID, "item")))


def current_item(driver: webdriver.Chrome) -> tuple[str, str]:
    item = driver.find_element(By.ID, "item")
    return item.get_attribute("data-token"), item.get_attribute("data-name")


def press(driver: webdriver.Chrome, keys: str) -> None:
    webdriver.ActionChains(driver).send_keys(keys).perform()


def wait_for_next(driver: webdriver.Chrome, token: str) -> None:
    WebDriverWait(driver, 20).until(
        lambda d: d.find_element(By.ID, "item").get_attribute("data-token") != token
    )


def test_a_reviewer_works_through_the_queue_with_the_keyboard(review_server, browsers, tmp_path):
    base, factory, receipts = review_server
    driver = browsers()
    sign_in(driver, base, "alice")

    # the first receipt's date: right, accepted with "a"
    token, name = current_item(driver)
    assert name == "date"
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script(
            "const i = document.querySelector('.page img'); return i && i.complete && i.naturalWidth > 0"
        )
    )
    screenshot = tmp_path / "review-screen.png"
    driver.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("DOCFLOW_REVIEW_SCREENSHOT"):  # for the README: 256 colours suffice
        with Image.open(screenshot) as image:
            small = image.convert("RGB").resize((1120, round(image.height * 1120 / image.width)))
            small.quantize(256).save(os.environ["DOCFLOW_REVIEW_SCREENSHOT"], optimize=True)
    press(driver, "a")
    wait_for_next(driver, token)

    # its invoice number is not on the page: "n"
    token, name = current_item(driver)
    assert name == "invoice_number"
    press(driver, "n")
    wait_for_next(driver, token)

    # its total is wrong: click the words that print it, then Enter
    token, name = current_item(driver)
    assert name == "total"
    first = receipts[0]
    for index in first["total_words"].word_indices:
        driver.find_element(By.CSS_SELECTOR, f'button.word[data-i="{index}"]').click()
    value = driver.find_element(By.CSS_SELECTOR, "#item input[name=value]")
    assert value.get_attribute("value") == " ".join(
        driver.find_element(By.CSS_SELECTOR, f'button.word[data-i="{i}"]').get_attribute(
            "data-text"
        )
        for i in first["total_words"].word_indices
    )
    value.send_keys(Keys.ENTER)
    wait_for_next(driver, token)
    assert current_item(driver)[1] == "date"  # the second receipt

    document_id = first["document"].document_id
    with factory() as session:
        labels = dict(
            session.execute(
                sa.text(
                    "SELECT name, value FROM labels WHERE document_id = :d AND source = 'review'"
                ),
                {"d": document_id},
            ).all()
        )
        shown = {
            row.name: row
            for row in session.execute(
                sa.text(
                    "SELECT name, value, value_num, review_status, corrected, box"
                    " FROM current_fields WHERE document_id = :d"
                ),
                {"d": document_id},
            )
        }
    total = first["fields"]["total"]
    assert labels["date"] == first["fields"]["date"] and labels["invoice_number"] == ""
    assert Decimal(labels["total"].replace(",", "").lstrip("RM$₹€ ")) == Decimal(total)
    assert shown["date"].review_status == "accepted" and not shown["date"].corrected
    assert shown["invoice_number"].value is None and shown["invoice_number"].corrected
    assert shown["total"].review_status == "corrected" and shown["total"].value_num == Decimal(
        total
    )
    assert shown["total"].box == list(first["total_words"].box)


def test_two_browsers_never_get_the_same_item(review_server, browsers):
    base, factory, _ = review_server
    alice, bob = browsers(), browsers()
    sign_in(alice, base, "alice")
    sign_in(bob, base, "bob")
    decided = []
    for _ in range(3):  # two receipts of three unsure fields: six items, three each
        held = {}
        for name, driver in (("alice", alice), ("bob", bob)):
            item = driver.find_element(By.ID, "item")
            held[name] = (item.get_attribute("data-document"), item.get_attribute("data-name"))
        assert held["alice"] != held["bob"]  # held at the same moment, never the same item
        for driver in (alice, bob):
            token, _ = current_item(driver)
            press(driver, "a")
            wait_for_next(driver, token)
        decided += held.values()
    assert len(set(decided)) == 6
    for driver in (alice, bob):
        assert driver.find_element(By.ID, "item").get_attribute("data-empty") == "1"
    with factory() as session:
        rows = session.execute(
            sa.text("SELECT document_id, name, count(*) FROM review_decisions GROUP BY 1, 2")
        ).all()
    assert len(rows) == 6 and {count for _, _, count in rows} == {1}
