"""The chat page at `/` in a real headless Chromium (Debian's, driven by Playwright).

Real servers on loopback: the offline model, the fallback chain against the fake
upstream (which scripts fallbacks, mid-answer resets, HTML in the answer, slow
streams), and a keyed server. Each test checks what a person would see. Every page
also fails its test on a script error or a Content-Security-Policy violation, so
the page is proven to run under its own strict CSP.

Screenshots go to the module's tmp dir (an artifact of the run);
`UPDATE_DOCS_SCREENSHOT=1` also copies the desktop one to `docs/screenshot.png`.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent_server.api.app import create_app
from tests.conftest import make_settings
from tests.support.fake_upstream import FakeUpstream, fail, fake_upstream, text
from tests.support.servers import serve_in_thread

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MODELS = ["m1", "m2", "m3"]
KEY = "page-key-0123456789abcdef"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"
WAIT_MS = 15_000


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


try:
    from playwright import sync_api as playwright_api
except ImportError:  # the dev extra; under CI a missing browser driver fails the run
    if _in_ci():
        raise
    pytest.skip("playwright is not installed (pip install -e '.[dev]')", allow_module_level=True)
expect = playwright_api.expect
expect.set_options(timeout=WAIT_MS)  # 5 s by default: too tight on a loaded CI machine


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install -y chromium; .ci/run does it)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def offline_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = make_settings(tmp_path_factory.mktemp("offline"))
    with serve_in_thread(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with fake_upstream() as server:
        yield server


@pytest.fixture
def chain_url(tmp_path: Path, upstream: FakeUpstream) -> Iterator[str]:
    """A fresh server per test (cooldowns from one test must not leak into the next)."""
    upstream.reset()
    settings = make_settings(
        tmp_path,
        openrouter_api_key="sk-test-page",
        openrouter_base_url=upstream.base_url,
        agent_models=MODELS,
        model_timeout_seconds=2.0,
    )
    with serve_in_thread(create_app(settings)) as url:
        yield url


class Tabs:
    """Opens pages in fresh browser contexts and records every script error and CSP
    violation they report."""

    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.contexts: list[Any] = []
        self.problems: list[str] = []

    def open(self, url: str, **context: Any) -> Any:
        ctx = self.browser.new_context(viewport=context.pop("viewport", DESKTOP), **context)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        page.on(
            "console",
            lambda msg: (
                self.problems.append(f"console: {msg.text}")
                if "Content Security Policy" in msg.text
                else None
            ),
        )
        page.goto(url)
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def tabs(browser: Any) -> Iterator[Tabs]:
    opened = Tabs(browser)
    yield opened
    opened.close()
    assert opened.problems == [], opened.problems


def send(page: Any, message: str) -> None:
    page.fill("#input", message)
    page.press("#input", "Enter")


def last_turn(page: Any) -> Any:
    return page.locator(".msg-assistant").last


def wait_done(page: Any, count: int = 1) -> Any:
    """The `count`-th answer's footer (it appears on `done`)."""
    page.locator(".msg-assistant .meta").nth(count - 1).wait_for()
    return page.locator(".msg-assistant").nth(count - 1)


# --- the offline model -----------------------------------------------------------------


def test_calculator_answer_streams_with_a_tool_card(tabs: Tabs, offline_url: str) -> None:
    page = tabs.open(offline_url)
    streamed: list[str] = []
    page.on("request", lambda r: streamed.append(r.url) if r.method == "POST" else None)
    send(page, "Calculate 10 * 20")
    turn = wait_done(page)
    assert streamed == [f"{offline_url}/api/chat/message/stream"]
    expect(turn.locator(".answer")).to_contain_text("200")
    card = turn.locator(".tool-card[data-tool=calculator]")
    expect(card).to_have_count(1)
    expect(card).to_have_class(re.compile(r"\bok\b"))
    expect(card.locator(".tool-name")).to_have_text("calculator")
    expect(card.locator(".tool-args")).to_contain_text("10 * 20")
    expect(card.locator(".tool-preview")).to_have_text("→ 200")
    expect(card.locator(".tool-duration")).to_have_text(re.compile(r"\d ms$"))
    card.locator("summary").click()
    expect(card.locator(".tool-input")).to_contain_text('"expression": "10 * 20"')
    expect(card.locator(".tool-output")).to_contain_text('"result": 200')
    expect(turn.locator(".meta-model")).to_have_text("offline")
    expect(turn.locator(".badge-degraded")).to_have_count(0)
    expect(page.locator("#model-chain")).to_have_text("offline model")
    # The session got its id from `metadata`, its title from the first message.
    assert "#session=" in page.url
    expect(page.locator(".session.active .session-title")).to_have_text("Calculate 10 * 20")
    # The stop button was only there while streaming.
    expect(page.locator("#stop")).to_be_hidden()
    expect(page.locator("#send")).to_be_visible()


def test_enter_sends_and_shift_enter_adds_a_line(tabs: Tabs, offline_url: str) -> None:
    page = tabs.open(offline_url)
    page.focus("#input")
    page.keyboard.type("what is 6 * 7?")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("thanks")
    assert page.input_value("#input") == "what is 6 * 7?\nthanks"
    # Enter that ends an IME composition (Korean, Japanese, Chinese) only commits the text.
    page.locator("#input").evaluate(
        "el => el.dispatchEvent(new KeyboardEvent('keydown', "
        "{key: 'Enter', isComposing: true, bubbles: true, cancelable: true}))"
    )
    expect(page.locator(".msg-user")).to_have_count(0)
    page.keyboard.press("Enter")
    turn = wait_done(page)
    expect(page.locator(".msg-user .bubble")).to_have_text("what is 6 * 7?\nthanks")
    expect(turn.locator(".answer")).not_to_be_empty()
    assert page.input_value("#input") == ""


def test_reload_then_pick_the_session_from_the_list_and_delete_it(
    tabs: Tabs, offline_url: str
) -> None:
    page = tabs.open(offline_url)
    send(page, "Calculate 12 * 12")
    wait_done(page)
    send(page, "What is 100 / 4?")
    wait_done(page, 2)
    session_id = page.url.split("#session=", 1)[1]

    page.goto(offline_url)  # a fresh page: no session open
    expect(page.locator("#welcome")).to_be_visible()
    expect(page.locator(".msg")).to_have_count(0)
    item = page.locator(f".session[data-id='{session_id}']")
    expect(item.locator(".session-when")).to_contain_text("2 turns")
    item.locator(".session-open").click()
    expect(page.locator(".msg-user")).to_have_count(2)
    expect(page.locator(".msg-user").first).to_have_text("Calculate 12 * 12")
    answers = page.locator(".msg-assistant .answer")
    expect(answers.first).to_contain_text("144")
    expect(answers.nth(1)).to_contain_text("25")
    expect(page.locator(".msg-assistant").first.locator(".tool-name")).to_have_text("calculator")
    expect(page.locator("#title")).to_have_text("Calculate 12 * 12")
    expect(page).to_have_title("Calculate 12 * 12 · agent-server")
    expect(item).to_have_class(re.compile(r"\bactive\b"))

    # The conversation continues in the reloaded session.
    send(page, "Calculate 2 * 3")
    expect(page.locator(".msg-assistant .answer").nth(2)).to_contain_text("6")
    wait_done(page, 3)
    assert page.url.endswith(f"#session={session_id}")
    expect(item.locator(".session-when")).to_contain_text("3 turns")

    # New chat, then delete (two clicks) the old one: gone from the list and the server.
    page.click("#new-session")
    expect(page.locator(".msg")).to_have_count(0)
    expect(page.locator("#title")).to_have_text("New chat")
    delete = item.locator(".session-delete")
    delete.click()
    expect(delete).to_have_text("Delete")
    delete.click()
    expect(item).to_have_count(0)
    assert httpx.get(f"{offline_url}/api/chat/history/{session_id}").status_code == 404


def test_page_csp_forbids_inline_script_and_the_page_runs_under_it(
    tabs: Tabs, offline_url: str
) -> None:
    response = httpx.get(f"{offline_url}/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    script = httpx.get(f"{offline_url}/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.headers["content-security-policy"] == csp
    # The API keeps its own, stricter policy.
    api_csp = httpx.get(f"{offline_url}/api/tools").headers["content-security-policy"]
    assert api_csp.startswith("default-src 'none'")
    # Nothing else appears at the root: the Agent Protocol owns it.
    assert httpx.get(f"{offline_url}/index.html").status_code == 404
    for path in ("/static/nope.js", "/static/../router.py", "/static/%2e%2e/router.py"):
        missing = httpx.get(f"{offline_url}{path}")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    # The page under that policy: loads, streams a turn, reports no violation (`tabs`).
    page = tabs.open(offline_url)
    send(page, "What is (3 + 4) * 2?")
    expect(wait_done(page).locator(".answer")).to_contain_text("14")


def test_screenshots_desktop_dark_and_phone(tabs: Tabs, offline_url: str, shots: Path) -> None:
    """A conversation worth a screenshot: earlier sessions in the list, a knowledge-base
    hit, an open tool card. No animation mid-flight (reduced motion)."""
    httpx.post(
        f"{offline_url}/api/documents",
        json={
            "title": "Model fallback",
            "content": "When a model is rate-limited or fails, agent-server falls back to the "
            "next model in AGENT_MODELS and reports each hop as a fallback event.",
        },
    ).raise_for_status()
    for question in ("What is 1234 * 5678?", "Search for checkpoints"):
        httpx.post(f"{offline_url}/api/chat/message", json={"message": question}, timeout=30)
    page = tabs.open(offline_url, viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    for n, question in enumerate(
        ["Calculate 10 * 20", "Search for fallback", "What is (3 + 4) * 2?"], start=1
    ):
        send(page, question)
        wait_done(page, n)
    search = page.locator(".tool-card[data-tool=search]")
    expect(search.locator(".tool-preview")).to_have_text("→ 1 result: Model fallback")
    page.locator(".tool-card summary").first.click()
    expect(page.locator(".tool-card").first.locator(".tool-output")).to_contain_text("200")
    page.locator("#input").blur()
    page.locator(".messages").evaluate("el => { el.scrollTop = 0; }")
    desktop = shots / "desktop.png"
    page.screenshot(path=str(desktop))
    assert desktop.stat().st_size > 20_000
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(desktop, DOCS_SCREENSHOT)

    dark = tabs.open(offline_url + "/" + page.url.split("/", 3)[3], color_scheme="dark")
    expect(dark.locator(".msg-assistant .answer").first).to_contain_text("200")
    background = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(17, 18, 25)", background
    dark.screenshot(path=str(shots / "desktop-dark.png"))

    phone = tabs.open(
        offline_url, viewport=PHONE, is_mobile=True, has_touch=True, reduced_motion="reduce"
    )
    expect(phone.locator("#menu")).to_be_visible()
    sidebar_box = phone.locator("#sidebar").bounding_box()
    assert sidebar_box is not None and sidebar_box["x"] + sidebar_box["width"] <= 0
    send(phone, "Calculate 10 * 20")
    expect(wait_done(phone).locator(".answer")).to_contain_text("200")
    composer = phone.locator(".composer-box").bounding_box()
    assert composer is not None and composer["x"] >= 0
    assert composer["x"] + composer["width"] <= PHONE["width"]
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    phone.screenshot(path=str(shots / "phone.png"))
    phone.click("#menu")
    expect(phone.locator("#sidebar")).to_have_class(re.compile(r"\bopen\b"))
    expect(phone.locator(".session-title").first).to_be_in_viewport()
    phone.screenshot(path=str(shots / "phone-sessions.png"))
    phone.click("#scrim", position={"x": 370, "y": 400})
    expect(phone.locator("#sidebar")).not_to_have_class(re.compile(r"\bopen\b"))


# --- the fallback chain against the fake upstream --------------------------------------


def test_fallback_hop_is_shown(tabs: Tabs, chain_url: str, upstream: FakeUpstream) -> None:
    upstream.script("m1", fail("server_error", status=500))
    upstream.script("m2", text("Answered by **m2** after a hop."))
    page = tabs.open(chain_url)
    send(page, "hello")
    turn = wait_done(page)
    expect(turn.locator(".note-fallback")).to_have_text(
        re.compile(r"m1 failed \(server_error\) → m2$")
    )
    expect(turn.locator(".answer strong")).to_have_text("m2")
    expect(turn.locator(".answer")).to_have_text("Answered by m2 after a hop.")
    expect(turn.locator(".meta-model")).to_have_text("m2")
    expect(turn.locator(".meta-fallback")).to_have_text("1 fallback")
    expect(turn.locator(".answer.discarded")).to_have_count(0)
    assert upstream.models_tried() == ["m1", "m2"]


def test_reset_discards_the_partial_answer_visibly(
    tabs: Tabs, chain_url: str, upstream: FakeUpstream
) -> None:
    upstream.script("m1", fail("drop", text="one two three four five", drop_after_tokens=2))
    upstream.script("m2", text("a complete answer"))
    page = tabs.open(chain_url)
    send(page, "hello")
    turn = wait_done(page)
    discarded = turn.locator(".answer.discarded")
    expect(discarded).to_have_text("one two")
    assert "line-through" in discarded.evaluate("el => getComputedStyle(el).textDecorationLine")
    expect(turn.locator(".note-reset")).to_have_text(
        re.compile(r"m1 failed mid-answer \(connection\): retrying with the next model")
    )
    expect(turn.locator(".answer:not(.discarded)")).to_have_text("a complete answer")
    expect(turn.locator(".meta-model")).to_have_text("m2")


def test_every_model_rate_limited_answers_degraded(
    tabs: Tabs, chain_url: str, upstream: FakeUpstream
) -> None:
    for model in MODELS:
        upstream.script(model, fail("rate_limit", retry_after="1"))
    page = tabs.open(chain_url)
    send(page, "Calculate 2 + 3")
    turn = wait_done(page)
    expect(turn.locator(".badge-degraded")).to_have_text("degraded")
    expect(turn.locator(".meta-model")).to_have_text("offline")
    # Two trails: the first call's 429s, then (after the tool ran) the cooldowns.
    expect(turn.locator(".note-fallback")).to_have_text(
        [
            re.compile(r"^↪m1 failed \(rate_limit\) → .* → no model left$"),
            re.compile("cooling_down"),
        ]
    )
    expect(turn.locator(".answer")).to_contain_text("5")


def test_every_model_failing_is_a_clear_error(
    tabs: Tabs, chain_url: str, upstream: FakeUpstream
) -> None:
    for model in MODELS:
        upstream.script(model, fail("server_error", status=502))
    page = tabs.open(chain_url)
    send(page, "hello")
    error = last_turn(page).locator(".error-box")
    expect(error.locator("strong")).to_have_text("No model is available")
    expect(error).to_contain_text("every configured model failed")  # the server's message
    expect(last_turn(page).locator(".note-fallback")).to_have_text(
        re.compile(
            r"m1 failed \(server_error\) → m2 failed \(server_error\) → "
            r"m3 failed \(server_error\) → no model left$"
        )
    )
    expect(page.locator("#send")).to_be_visible()


def test_html_in_the_answer_renders_as_text(
    tabs: Tabs, chain_url: str, upstream: FakeUpstream
) -> None:
    upstream.script(
        "m1",
        text(
            "Look: <img src=x onerror=window.__pwned=1> and <script>window.__pwned=2</script> "
            "[click](javascript:window.__pwned=3) [docs](https://example.org/x) `<b>code</b>`"
        ),
    )
    page = tabs.open(chain_url)
    send(page, "show me html")
    answer = wait_done(page).locator(".answer")
    expect(answer).to_contain_text("<img src=x onerror=window.__pwned=1>")
    expect(answer).to_contain_text("<script>window.__pwned=2</script>")
    expect(answer.locator("code")).to_have_text("<b>code</b>")
    assert answer.locator("img, script, b").count() == 0
    assert page.locator(".msg img").count() == 0
    links = answer.locator("a")
    expect(links).to_have_count(1)  # the javascript: link stays text
    expect(links).to_have_attribute("href", "https://example.org/x")
    expect(links).to_have_attribute("rel", "noopener noreferrer nofollow")
    expect(answer).to_contain_text("[click](javascript:window.__pwned=3)")
    assert page.evaluate("window.__pwned === undefined")


def test_markdown_blocks_render(tabs: Tabs, chain_url: str, upstream: FakeUpstream) -> None:
    upstream.script(
        "m1",
        text(
            "## Result\n\n- first *item*\n- second\n\n1. one\n2. two\n\n"
            "| a | b |\n|---|--:|\n| 1 | 2 |\n\n```python\nprint('<hi>')\n```\n\n> quoted"
        ),
    )
    page = tabs.open(chain_url)
    send(page, "format it")
    answer = wait_done(page).locator(".answer")
    expect(answer.locator("h4")).to_have_text("Result")
    expect(answer.locator("ul > li")).to_have_count(2)
    expect(answer.locator("ul em")).to_have_text("item")
    expect(answer.locator("ol > li")).to_have_text(["one", "two"])
    expect(answer.locator("table td")).to_have_text(["1", "2"])
    expect(answer.locator("td.align-right")).to_have_text("2")
    expect(answer.locator("pre code.language-python")).to_have_text("print('<hi>')")
    expect(answer.locator("blockquote")).to_have_text("quoted")


def test_stop_cancels_the_stream(tabs: Tabs, chain_url: str, upstream: FakeUpstream) -> None:
    words = " ".join(f"word{n}" for n in range(200))
    upstream.script("m1", text(words, tokens_per_second=10))
    page = tabs.open(chain_url)
    send(page, "talk slowly")
    answer = last_turn(page).locator(".answer")
    expect(answer).to_contain_text("word1")
    expect(page.locator("#stop")).to_be_visible()
    page.click("#stop")
    expect(last_turn(page).locator(".note-stopped")).to_be_visible()
    expect(page.locator("#send")).to_be_visible()
    assert "word199" not in answer.inner_text()
    expect(last_turn(page).locator(".meta")).to_have_count(0)


def test_busy_session_shows_the_servers_409(
    tabs: Tabs, chain_url: str, upstream: FakeUpstream
) -> None:
    page = tabs.open(chain_url)
    send(page, "hello")
    wait_done(page)
    session_id = page.url.split("#session=", 1)[1]
    upstream.script("m1", text(" ".join(["slow"] * 300), tokens_per_second=10))
    send(page, "a long one")
    expect(last_turn(page).locator(".answer")).to_contain_text("slow")

    other = tabs.open(f"{chain_url}/#session={session_id}")
    expect(other.locator(".msg-user")).to_have_count(1)
    send(other, "me too")
    error = last_turn(other).locator(".error-box")
    expect(error).to_contain_text("This conversation is busy")
    expect(error).to_contain_text("busy")
    page.click("#stop")


# --- keys and limits -----------------------------------------------------------------


def test_401_shows_the_key_field_and_the_key_then_works(tabs: Tabs, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agent_api_keys=[KEY])
    with serve_in_thread(create_app(settings)) as url:
        page = tabs.open(url)
        panel = page.locator("#key-panel")
        expect(panel).to_be_visible()  # listing sessions already needed a key
        expect(page.locator("#key-message")).to_contain_text("API key is required")
        page.locator("#key-panel").evaluate("el => { el.hidden = true; }")
        send(page, "Calculate 10 * 20")
        expect(panel).to_be_visible()  # the message got a 401: back to the key field
        assert page.input_value("#input") == "Calculate 10 * 20"
        expect(page.locator(".msg")).to_have_count(0)

        page.fill("#api-key", "wrong-key")
        page.press("#api-key", "Enter")
        expect(page.locator("#key-message")).to_contain_text("invalid or revoked")

        page.fill("#api-key", KEY)
        page.press("#api-key", "Enter")
        expect(panel).to_be_hidden()
        turn = wait_done(page)  # the message went again with the key
        expect(turn.locator(".answer")).to_contain_text("200")
        assert page.evaluate("localStorage.getItem('agent-server.api-key')") == KEY
        page.reload()
        expect(page.locator(".session")).to_have_count(1)
        expect(panel).to_be_hidden()


def test_429_shows_the_servers_message(tabs: Tabs, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=1)
    with serve_in_thread(create_app(settings)) as url:
        page = tabs.open(url)
        send(page, "Calculate 1 + 1")
        wait_done(page)
        send(page, "Calculate 2 + 2")
        error = last_turn(page).locator(".error-box")
        expect(error).to_contain_text(re.compile(r"Slow down \(retry in \d+s\)"))
        expect(error).to_contain_text("message requests per minute; slow down")
