"""The search page in a real headless Chromium (Debian's, driven by Playwright) against a real `rag serve`.

scripts/test.sh installs Chromium and a CJK font when they are missing (scripts/browser.sh).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUESTION = "外国人可以用哪些证件绑定医保电子凭证"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if CHROMIUM is None:
        pytest.fail("no chromium on PATH: run `bash scripts/browser.sh` (as root) to install it with a CJK font")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(params=["en-US", "zh-CN"])
def page(browser: object, request: pytest.FixtureRequest) -> Iterator[object]:
    context = browser.new_context(locale=request.param, viewport={"width": 1200, "height": 900})  # type: ignore[attr-defined]
    page = context.new_page()
    page.set_default_timeout(30000)
    yield page
    context.close()


def test_a_deep_link_shows_marked_answers_and_the_cited_span_in_its_document(page: object, server: httpx.Client) -> None:
    answer = server.get("/search", params={"q": QUESTION, "top_k": 3}).json()
    page.goto(f"{server.base_url}/?q={quote(QUESTION)}&k=3")  # type: ignore[attr-defined]
    page.wait_for_selector(".hit mark")  # type: ignore[attr-defined]
    assert page.locator(".hit").count() == 3  # type: ignore[attr-defined]
    assert page.locator("#k").input_value() == "3"  # type: ignore[attr-defined]
    first = answer["passages"][0]
    c, h = first["citation"], first["highlight"]
    assert page.locator(".hit mark").first.text_content() == first["text"][h["start"] - c["start"] : h["end"] - c["start"]]  # type: ignore[attr-defined]
    assert page.locator("#notice").is_hidden()  # type: ignore[attr-defined]
    page.locator(".open").first.click()  # type: ignore[attr-defined]
    page.wait_for_selector("#doc-text mark#cited")  # type: ignore[attr-defined]
    assert page.locator("#doc-text mark#cited").text_content() == first["text"]  # type: ignore[attr-defined]
    page.keyboard.press("Escape")  # type: ignore[attr-defined]
    assert not page.locator("#doc").evaluate("d => d.open")  # type: ignore[attr-defined]


def test_searching_updates_the_link_and_works_from_the_keyboard(page: object, server: httpx.Client) -> None:
    page.goto(str(server.base_url))  # type: ignore[attr-defined]
    page.wait_for_function("document.activeElement && document.activeElement.id === 'q'")  # type: ignore[attr-defined]
    page.keyboard.type("Can a foreigner activate it through Alipay?")  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    page.wait_for_selector(".hit mark")  # type: ignore[attr-defined]
    assert "q=Can+a+foreigner" in page.url and "k=5" in page.url  # type: ignore[attr-defined]
    assert page.locator(".hit").count() == 5  # type: ignore[attr-defined]


def test_an_unanswerable_question_is_said_plainly(page: object, server: httpx.Client) -> None:
    page.goto(f"{server.base_url}/?q={quote('红烧肉怎么做')}")  # type: ignore[attr-defined]
    page.wait_for_selector("#notice:not([hidden])")  # type: ignore[attr-defined]
    text = page.locator("#notice").text_content()  # type: ignore[attr-defined]
    assert "do not answer" in text or "没有这个问题的答案" in text


@pytest.mark.parametrize("kind", ["too-long", "network"])
def test_errors_are_in_the_users_words(page: object, server: httpx.Client, kind: str) -> None:
    if kind == "network":
        page.route("**/search?*", lambda route: route.abort())  # type: ignore[attr-defined]
        question = QUESTION
    else:
        question = "外国人如何激活医保电子凭证" * 40
    page.goto(f"{server.base_url}/?q={quote(question)}")  # type: ignore[attr-defined]
    page.wait_for_selector(".error")  # type: ignore[attr-defined]
    message = page.locator(".error").text_content()  # type: ignore[attr-defined]
    expected = {"too-long": ("too long", "太长"), "network": ("Cannot reach", "无法连接")}[kind]
    assert any(e in message for e in expected), message
    assert "q:" not in message and "question:" not in message and "..." not in page.locator("#status").text_content()  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [360, 390])
def test_a_phone_viewport_has_no_horizontal_scroll(browser: object, server: httpx.Client, width: int) -> None:
    context = browser.new_context(locale="zh-CN", viewport={"width": width, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{server.base_url}/?q={quote(QUESTION)}&k=5")
    page.wait_for_selector(".hit mark")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    title = page.locator("h1")
    assert title.text_content() == "向文档提问" and title.bounding_box()["height"] < 60  # one line: not broken mid-word
    page.locator(".open").first.click()
    page.wait_for_selector("#doc-text mark#cited")
    assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    context.close()
