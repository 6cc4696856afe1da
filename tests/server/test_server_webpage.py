"""The web page in headless Chromium: type, click Speak, and the audio element gets playable audio."""

from __future__ import annotations

import hashlib
import shutil
import struct

import httpx
import pytest
import soundfile
from system_deps import needs

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]

# Debian's chromium, driven by playwright (which then needs no browser download of its own).
pytestmark = needs("chromium", "playwright")


@pytest.fixture(scope="module")
def browser():
    # One Playwright per module: its sync API runs an event loop, and a second one inside it fails.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page(server, browser):
    page = browser.new_page()
    page.goto(server.url + "/")
    return page


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


def speech_requests(server) -> float:
    line = 'soprano_requests_total{route="/v1/audio/speech",status="200"} '
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))


# What the page shows and offers, as SHA-256 digests of the bytes behind the audio element and the link.
DIGESTS = """async () => {
  const hex = async (url) => {
    const digest = await crypto.subtle.digest("SHA-256", await (await fetch(url)).arrayBuffer());
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  };
  return [await hex(document.getElementById("audio").src), await hex(document.getElementById("download").href)];
}"""


@pytest.mark.parametrize("fmt", ["flac", "mp3", "wav"])
def test_download_is_what_played(server, page, fmt, tmp_path):
    """One synthesis per Speak; the download holds the bytes played, with the length in the header.

    What broke: flac/mp3/opus downloads asked the server to synthesize the text a second time,
    which can differ from what was heard (sampling with no seed), and came without lengths.
    """
    page.select_option("#format", fmt)
    page.fill("#text", "Hello from the browser. This is the file you heard.")
    before = speech_requests(server)
    bodies = []

    def relay(route):  # the page's request, passed on, and what came back recorded
        response = route.fetch()
        bodies.append(response.body())
        route.fulfill(response=response)

    page.route("**/v1/audio/speech", relay)
    try:
        page.click("#speak")
        page.wait_for_function(f"document.getElementById('download').download === 'soprano.{fmt}' && "
                               "!document.getElementById('download').hidden && "
                               "!document.getElementById('speak').disabled", timeout=30000)
    finally:
        page.unroute("**/v1/audio/speech", relay)
    assert len(bodies) == 1, "one synthesis per Speak: the download must not ask again"
    fetched = bodies[0]
    played, offered = page.evaluate(DIGESTS)
    assert played == offered
    with page.expect_download() as download:
        page.click("#download")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == offered
    if fmt == "wav":
        # Played as 32 kHz pcm while it streamed: the file is those bytes behind a header with sizes.
        assert data[44:] == fetched and struct.unpack_from("<I", data, 40)[0] == len(fetched)
    else:
        assert data == fetched
    info = soundfile.info(str(path))
    assert info.frames > 0.5 * info.samplerate
    assert abs(page.evaluate("document.getElementById('audio').duration") - info.duration) < 0.03
    assert speech_requests(server) == before + 1


def test_a_server_with_a_key_serves_the_page_and_it_asks_for_the_key(strict_server, browser):
    page = browser.new_page()
    try:
        assert page.goto(strict_server.url + "/").status == 200  # it used to be a 401: no page to type into
        page.wait_for_function("document.getElementById('status').className === 'error'", timeout=30000)
        assert "needs an API key" in page.inner_text("#status")
        page.fill("#api_key", "sekrit")
        page.dispatch_event("#api_key", "change")
        page.fill("#text", "Hello.")
        page.click("#speak")
        page.wait_for_function("document.getElementById('audio').src.startsWith('blob:')", timeout=60000)
    finally:
        page.close()
