"""The web page in headless Chromium: type, click Speak, and the audio element gets playable audio."""

from __future__ import annotations

import shutil

import pytest
from system_deps import needs

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]

# Debian's chromium, driven by playwright (which then needs no browser download of its own).
pytestmark = needs("chromium", "playwright")


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            page = browser.new_page()
            page.goto(server.url + "/")
            yield page
        finally:
            browser.close()


def test_type_click_and_hear(page):
    page.fill("#text", "Hello from the browser. This is a test.")
    page.click("#speak")
    page.wait_for_function("document.getElementById('audio').src.startsWith('blob:')", timeout=30000)
    page.wait_for_function("document.getElementById('audio').readyState >= 2", timeout=30000)
    duration = page.evaluate("document.getElementById('audio').duration")
    assert duration > 0.5
    # Playable: it actually plays (muted, so no device is needed) and time moves on.
    page.evaluate("() => { const a = document.getElementById('audio'); a.muted = true; return a.play(); }")
    page.wait_for_function("document.getElementById('audio').currentTime > 0.05", timeout=10000)
    assert "s of audio" in page.inner_text("#status")
    assert not page.is_hidden("#download")
    assert page.get_attribute("#download", "download") == "soprano.wav"


def test_download_in_another_format(page):
    page.select_option("#format", "flac")
    page.fill("#text", "Short text.")
    page.click("#speak")
    page.wait_for_function("document.getElementById('download').download === 'soprano.flac' && "
                           "!document.getElementById('download').hidden", timeout=30000)
    size = page.evaluate("fetch(document.getElementById('download').href).then(r => r.arrayBuffer())"
                         ".then(b => b.byteLength)")
    assert size > 100


def test_error_is_shown(page):
    page.fill("#temperature", "99")
    page.fill("#text", "Hello.")
    page.click("#speak")
    page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30000)
    assert "temperature" in page.inner_text("#status")
    page.fill("#temperature", "0")
