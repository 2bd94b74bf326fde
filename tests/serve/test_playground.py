"""The playground page (``GET /playground``) of the session app, in a real browser.

Headless Chromium from the distribution's packages (``chromium`` + ``chromium-driver``; ``.ci/run``
installs them), driven over WebDriver by selenium with the system chromedriver named explicitly,
so nothing downloads a browser. The browser test runs the page the way a person does: the API key
prompt (the session app has a key), a file that is too big, a synthetic clip uploaded from disk, a
question whose answer grows while it streams and ends equal to the non-streamed answer of the
official ``openai`` client for the same request, the thumbnails of the frames the model saw (seeked
from a ``<video>`` element to each timestamp of the response), a second turn, and an API error shown
as the API states it. It saves a screenshot under the test's tmp dir, or as ``docs/playground.png``
with ``VIDEOLMM_PLAYGROUND_SCREENSHOT=1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from serve_helpers import API_KEY, LNV, REPO, TEST_LIMITS, TRAINED, ServeApp, data_url

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOT_ENV = "VIDEOLMM_PLAYGROUND_SCREENSHOT"
SECTION = "Playground"
FRAMES = 6
TOKENS = 48
QUESTIONS = ("What colour is the moving square?", "Which way does it move?", "Why?")
#: The questions the trained tiny checkpoint was trained on (videolmm.toy.train.recipe.QUESTIONS).
TRAINED_QUESTIONS = ("What colour is the moving square? Answer with one word.",
                     "Which way does the square move? Answer with one word.")  # fmt: skip


def _page_config(html: str) -> dict[str, Any]:
    match = re.search(r'<script type="application/json" id="config">(.*?)</script>', html, re.S)
    assert match, "the page embeds no config"
    return json.loads(match.group(1))


def test_the_page_is_served_without_the_key_and_holds_no_secret(serve_app: ServeApp, reliability) -> None:
    page = httpx.get(f"{serve_app.base_url}/playground", timeout=30)
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert API_KEY not in page.text and "sk-" not in page.text and str(serve_app.media_root) not in page.text
    limits = _page_config(page.text)["limits"]
    assert limits == {k: getattr(serve_app.args.limits, k) for k in limits}
    assert limits["max_data_url_bytes"] == TEST_LIMITS["max_data_url_bytes"]
    # the routes the page calls still want the key
    models = httpx.get(f"{serve_app.base_url}/v1/models", timeout=30)
    assert models.status_code == 401
    reliability(
        SECTION,
        "GET /playground without the API key",
        "API",
        "200 HTML holding no secret; the API routes it calls still answer 401 without the key",
        f"{page.status_code} {page.headers['content-type']}, key in page: {API_KEY in page.text}; "
        f"GET /v1/models without the key: {models.status_code} {models.json()['error']['message']}",
    )


def test_the_page_inlines_its_parts_and_allows_only_them() -> None:
    from videolmm.serve.config import LimitsConfig
    from videolmm.serve.playground import render

    page = render(LimitsConfig(max_tokens=77))
    assert _page_config(page.html)["limits"]["max_tokens"] == 77
    assert "/*STYLE*/" not in page.html and "/*SCRIPT*/" not in page.html and "/*CONFIG*/" not in page.html
    # the CSP names the hash of exactly the inline script and style the page holds
    for tag, directive in (("script", "script-src"), ("style", "style-src")):
        inline = re.findall(rf"<{tag}>(.*?)</{tag}>", page.html, re.S)
        assert len(inline) == 1
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]
    assert "http://" not in page.html and "https://" not in page.html  # no CDN: nothing loads from elsewhere


# ------------------------------------------------------------------------------------ the browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (no sandbox: the tests run as root), a small window; quit at the end."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"Chromium is not installed ({', '.join(missing)} missing; apt-get install chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,960",
    ):
        options.add_argument(arg)
    # both paths given: selenium-manager never runs, nothing is downloaded
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, what: str, timeout: float = 60) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition, message=what)


def _set(driver: Any, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(value)


def _answer_state(driver: Any) -> str | None:
    return driver.execute_script(
        "const a = document.querySelector('#chat .msg.assistant:last-child'); return a ? a.dataset.state : null;"
    )


# Records the answer's length at every DOM change, inside the page (a poll from here would miss deltas
# that arrive milliseconds apart).
WATCH_ANSWER = """
window.__lengths = [];
new MutationObserver(() => {
  const t = document.querySelector('#chat .msg.assistant:last-child .text');
  if (t) window.__lengths.push(t.textContent.length);
}).observe(document.getElementById('chat'), {childList: true, subtree: true, characterData: true});
"""


def _ask(driver: Any, question: str) -> dict[str, Any]:
    """Type a question, send it, wait for the streamed answer; its text, lengths seen and meta."""
    from selenium.webdriver.common.by import By

    _set(driver, "question", question)
    driver.execute_script(WATCH_ANSWER)
    before = len(driver.find_elements(By.CSS_SELECTOR, "#chat .msg.assistant"))
    driver.find_element(By.ID, "send").click()
    _wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chat .msg.assistant")) > before, "no answer")
    _wait(driver, lambda d: _answer_state(d) != "streaming", "the answer did not finish streaming")
    assert _answer_state(driver) == "done", driver.find_element(By.ID, "error").text
    return driver.execute_script(
        """const a = document.querySelector('#chat .msg.assistant:last-child');
        const m = a.querySelector('.meta');
        return {text: a.querySelector('.text').textContent, lengths: window.__lengths,
                tokens: Number(m.dataset.completionTokens), ttft: Number(m.dataset.ttftMs),
                total: Number(m.dataset.totalMs)};"""
    )


def _thumbnails(driver: Any) -> list[dict[str, Any]]:
    """The last answer's thumbnails once all are drawn (each an <img> with its frame's index and time)."""
    script = """return Array.from(document.querySelectorAll('#chat .msg.assistant:last-child .frames img')).map(
        i => ({index: Number(i.dataset.index), time: Number(i.dataset.time), width: i.naturalWidth,
               complete: i.complete, src: i.src}));"""
    _wait(driver, lambda d: len(d.execute_script(script)) == FRAMES, f"{FRAMES} thumbnails did not appear", 20)
    _wait(driver, lambda d: all(t["complete"] for t in d.execute_script(script)), "thumbnails not drawn", 20)
    return driver.execute_script(script)


def _api_answer(serve_app: ServeApp, model: str, messages: list[dict[str, Any]], max_tokens: int = TOKENS) -> Any:
    return serve_app.client().chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0,
        extra_body={"media_io_kwargs": {"video": {"num_frames": FRAMES}}},
    )


def test_playground_in_a_browser(serve_app: ServeApp, browser: Any, tmp_path: Path, reliability) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver, clip = browser, serve_app.media_root / "red_right.mp4"
    driver.get(f"{serve_app.base_url}/playground")

    # the API answers 401: the page asks for the key once, keeps it in sessionStorage, lists the models
    _wait(driver, lambda d: d.find_element(By.ID, "key-panel").is_displayed(), "no API key prompt")
    unauthorized = httpx.get(f"{serve_app.base_url}/v1/models", timeout=30).json()["error"]["message"]
    assert driver.find_element(By.ID, "key-message").text == unauthorized
    _set(driver, "key-input", API_KEY)
    driver.find_element(By.ID, "key-save").click()
    _wait(driver, lambda d: LNV in [o.text for o in Select(d.find_element(By.ID, "model")).options], "no models")
    assert not driver.find_element(By.ID, "key-panel").is_displayed()
    assert driver.execute_script("return sessionStorage.getItem('videolmm.apiKey')") == API_KEY

    # a file over the data: URL limit is refused in the browser, before anything is sent
    file_input = driver.find_element(By.ID, "file")
    file_input.send_keys(str(serve_app.media_root / "big.mp4"))
    _wait(driver, lambda d: "too-big" in d.find_element(By.ID, "attachment").get_attribute("class"), "no size check")
    too_big = driver.find_element(By.ID, "attachment").text
    assert "big.mp4" in too_big and "max_data_url_bytes" in too_big and f"{300 << 10:,} bytes" in too_big
    reliability(SECTION, "a file over max_data_url_bytes added in the playground", "playground (browser)",
                "refused in the browser before sending, naming the file, its size and the limit", too_big)  # fmt: skip

    # a clip from disk, a question; the answer grows while it streams
    attached = "Attached video: red_right.mp4"
    file_input.send_keys(str(clip))
    _wait(driver, lambda d: d.find_element(By.ID, "attachment").text.startswith(attached), "the clip was not attached")
    Select(driver.find_element(By.ID, "model")).select_by_value(LNV)
    _set(driver, "frames", str(FRAMES))
    _set(driver, "max-tokens", str(TOKENS))
    _set(driver, "temperature", "0")
    first = _ask(driver, QUESTIONS[0])
    lengths = first["lengths"]
    assert len(set(lengths)) >= 4, f"the answer did not grow while streaming: lengths seen {lengths}"
    assert lengths == sorted(lengths) and lengths[-1] == len(first["text"])

    # ... and ends equal to the non-streamed answer of the same request through the openai client
    user1 = {"role": "user", "content": [{"type": "video_url", "video_url": {"url": data_url(clip, "video/mp4")}},
                                         {"type": "text", "text": QUESTIONS[0]}]}  # fmt: skip
    plain = _api_answer(serve_app, LNV, [user1])
    assert first["text"] == plain.choices[0].message.content
    assert first["tokens"] == plain.usage.completion_tokens == TOKENS
    assert 0 < first["ttft"] <= first["total"]
    info = plain.model_extra["videolmm"]
    assert len(info["frames"][0]) == FRAMES
    assert info["timestamps"][0] == pytest.approx([i / 8 for i in info["frames"][0]])  # the clip runs at 8 fps
    streamed = serve_app.client().chat.completions.create(
        model=LNV, messages=[user1], max_tokens=TOKENS, temperature=0, stream=True,
        extra_body={"media_io_kwargs": {"video": {"num_frames": FRAMES}}},
    )  # fmt: skip
    finish = [c for c in streamed if c.choices and c.choices[0].finish_reason]
    assert len(finish) == 1  # the finish chunk carries the videolmm object
    assert {k: finish[0].model_extra["videolmm"][k] for k in ("frames", "timestamps")} == {
        "frames": info["frames"], "timestamps": info["timestamps"]}  # fmt: skip

    # the frames the model saw, drawn from the uploaded file at the response's timestamps
    thumbs = _thumbnails(driver)
    assert [t["index"] for t in thumbs] == info["frames"][0]
    assert [t["time"] for t in thumbs] == pytest.approx(info["timestamps"][0])
    assert all(t["width"] == 64 for t in thumbs)  # the clip's 64 px frames
    drawn = {t["index"]: t["src"][-24:] for t in thumbs}
    assert len(set(drawn.values())) == FRAMES, f"the square moves, every frame differs: {drawn}"

    # a second turn sends the history back
    second = _ask(driver, QUESTIONS[1])
    history = [user1, {"role": "assistant", "content": first["text"]}, {"role": "user", "content": QUESTIONS[1]}]
    assert second["text"] == _api_answer(serve_app, LNV, history).choices[0].message.content
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chat .msg")) == 4
    _thumbnails(driver)

    # an API error is shown as the API states it; the failed turn is not kept, its question stays to retry
    over = TEST_LIMITS["max_tokens"] + 1
    _set(driver, "max-tokens", str(over))
    _set(driver, "question", QUESTIONS[2])
    driver.find_element(By.ID, "send").click()
    _wait(driver, lambda d: d.find_element(By.ID, "error").is_displayed(), "no error shown")
    history += [{"role": "assistant", "content": second["text"]}, {"role": "user", "content": QUESTIONS[2]}]
    with pytest.raises(openai.BadRequestError) as refused:
        _api_answer(serve_app, LNV, history, max_tokens=over)
    stated = refused.value.body["message"]
    shown = driver.find_element(By.ID, "error-message").text
    assert shown == stated
    assert "HTTP 400" in driver.find_element(By.ID, "error-meta").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "#chat .msg")) == 4
    assert driver.find_element(By.ID, "question").get_attribute("value") == QUESTIONS[2]

    # a new conversation with the trained tiny checkpoint (a model that watches): no history is sent
    driver.find_element(By.ID, "new-chat").click()
    assert not driver.find_elements(By.CSS_SELECTOR, "#chat .msg")
    Select(driver.find_element(By.ID, "model")).select_by_value(TRAINED)
    _set(driver, "max-tokens", "16")
    file_input.send_keys(str(clip))
    _wait(driver, lambda d: d.find_element(By.ID, "attachment").text.startswith(attached), "the clip was not attached")
    colour = _ask(driver, TRAINED_QUESTIONS[0])
    user = {"role": "user", "content": [user1["content"][0], {"type": "text", "text": TRAINED_QUESTIONS[0]}]}
    assert colour["text"] == _api_answer(serve_app, TRAINED, [user], max_tokens=16).choices[0].message.content
    _ask(driver, TRAINED_QUESTIONS[1])
    _thumbnails(driver)
    shot = REPO / "docs" / "playground.png" if os.environ.get(SCREENSHOT_ENV) == "1" else tmp_path / "playground.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    reliability(SECTION, f"max_tokens={over} (over the limit) sent from the playground", "playground (browser)",
                "the API's 400 message shown as the API states it", f"shown: {shown!r}")  # fmt: skip
