"""The real app in a real browser: Debian's Chromium driven by Playwright."""

import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from aipic.provenance.signing_identity import local_trust_anchors
from aipic.provenance.verify import verify_bytes
from conftest import running_app

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if os.environ.get("AIPIC_REQUIRE_BROWSER"):
            pytest.fail("Chromium is required (AIPIC_REQUIRE_BROWSER is set) but /usr/bin/chromium is missing")
        pytest.skip("Debian chromium is not installed")
    with running_app(tmp_path_factory.mktemp("app-home")) as started:
        yield started


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, app_url):
    page = browser.new_page()
    # Not "networkidle": the app keeps a heartbeat stream open (it holds per-session state). Wait for the app itself.
    page.goto(app_url[0], wait_until="load")
    page.wait_for_selector("#t2i-generate", timeout=60_000)
    yield page
    page.close()


def test_generate_in_the_ui_serves_the_signed_file(page, app_url):
    url, home = app_url
    assert "offline placeholder models" in page.locator("#placeholder-banner").inner_text()
    page.locator("#t2i-prompt textarea").fill("a photo of a lighthouse keeper")
    page.locator("#t2i-generate").click()
    page.wait_for_selector("#t2i-audit :text('signed')", timeout=120_000)
    audit = page.locator("#t2i-audit").inner_text()
    assert "Perceived by the model" in audit or "No person detected" in audit
    page.wait_for_selector("#t2i-credentials :text('You contributed')", timeout=30_000)
    panel = page.locator("#t2i-credentials").inner_text()
    assert "Trusted" in panel and "Signed by aipic signer" in panel
    assert "the prompt “a photo of a lighthouse keeper”" in panel and "The model contributed" in panel

    data = _download(page, "#t2i-files", url)
    result = verify_bytes(data, local_trust_anchors(home / "keys"))
    assert result.verdict == "trusted"
    assert result.contributions["human"]["prompt"] == "a photo of a lighthouse keeper"
    gallery_image = page.locator("#t2i-gallery img[src]").first
    gallery_image.wait_for(timeout=30_000)
    gallery_src = gallery_image.get_attribute("src")
    shown = urllib.request.urlopen(gallery_src if gallery_src.startswith("http") else url + gallery_src, timeout=30).read()
    assert shown == data  # the gallery shows the signed file itself, not a re-encoded copy
    # …and it is stored once: Gradio's cache holds no copy of it (the output folder is served directly)
    cache = home / "gradio-cache"
    copies = [p for p in cache.rglob("*") if p.is_file() and p.read_bytes() == data] if cache.exists() else []
    assert copies == []


def test_empty_prompt_shows_a_clear_error(page):
    page.locator("#t2i-generate").click()
    toast = page.locator(".toast-body").first
    toast.wait_for(timeout=30_000)
    assert "Please enter a prompt" in toast.inner_text()
    assert "Traceback" not in page.content()


def test_verify_tab_reports_a_non_image(page, tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"definitely not a png")
    page.get_by_role("tab", name="Verify").click()
    page.locator("#verify-file input[type=file]").set_input_files(str(junk))
    # The app verifies a file as soon as the server has it: wait on that report, not on Gradio's upload widgets.
    page.wait_for_selector("#verify-report .aipic-verdict-unreadable", timeout=60_000)
    assert "not a supported image" in page.locator("#verify-report").inner_text()


def _wait_for_preview(page, selector):
    """Wait until the app has shown its preview of an upload: the server has the file, so a click sees it."""
    page.wait_for_selector(f"{selector} img[src]", timeout=60_000)


def _download(page, selector, url) -> bytes:
    link = page.locator(f"{selector} a[href]").first
    link.wait_for(timeout=30_000)
    href = link.get_attribute("href")
    return urllib.request.urlopen(href if href.startswith("http") else url + href, timeout=30).read()


def test_image_to_image_and_style_tabs(page, app_url, tmp_path):
    from conftest import image_file

    url, home = app_url
    anchors = local_trust_anchors(home / "keys")
    photo = image_file(tmp_path / "photo.jpg", 96, 64, fmt="JPEG")
    style = image_file(tmp_path / "pattern.png", 64, 64, seed=5)

    page.get_by_role("tab", name="Image to image").click()
    page.locator("#i2i-file input[type=file]").set_input_files(str(photo))
    _wait_for_preview(page, "#i2i-file")  # the drop zone's own preview: the server has the upload
    page.locator("#i2i-prompt textarea").fill("as an oil painting")
    page.locator("#i2i-go").click()
    page.wait_for_selector("#i2i-audit :text('signed')", timeout=120_000)
    result = verify_bytes(_download(page, "#i2i-files", url), anchors)
    assert result.verdict == "trusted"
    assert [(i["title"], i["relationship"]) for i in result.ingredients] == [("init image", "parentOf")]

    page.get_by_role("tab", name="Style transfer").click()
    page.locator("#style-content input[type=file]").set_input_files(str(photo))
    page.locator("#style-style input[type=file]").set_input_files(str(style))
    _wait_for_preview(page, "#style-content")
    _wait_for_preview(page, "#style-style")
    page.locator("#style-go").click()
    page.wait_for_selector("#style-audit :text('signed')", timeout=120_000)
    result = verify_bytes(_download(page, "#style-files", url), anchors)
    assert result.verdict == "trusted"
    assert [i["title"] for i in result.ingredients] == ["content image", "style image"]


@pytest.fixture(scope="module")
def signed_in_app(tmp_path_factory):
    """The app with an identity the operator configured (Gradio's auth through AIPIC_AUTH)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed")
    with running_app(tmp_path_factory.mktemp("auth-home"), AIPIC_AUTH="alice:correct-horse-battery") as started:
        yield started


def test_a_signed_in_person_is_named_as_author_in_the_credentials(browser, signed_in_app):
    url, home = signed_in_app
    page = browser.new_page()
    try:
        page.goto(url, wait_until="load")
        page.locator("input[type=password]").wait_for(timeout=60_000)  # Gradio's sign-in form
        page.locator("input[type=text]").first.fill("alice")
        page.locator("input[type=password]").fill("correct-horse-battery")
        page.get_by_role("button", name="Login").click()
        page.wait_for_selector("#signed-in :text('Signed in as')", timeout=60_000)
        assert "alice" in page.locator("#signed-in").inner_text()
        assert "Licence" in page.locator("#t2i-licence").inner_text()  # the model's licence, before generating
        page.locator("#t2i-prompt textarea").fill("a portrait of a harbour pilot")
        page.locator("#t2i-terms").get_by_text("Authorship and terms").click()
        page.locator("#t2i-rights textarea").fill("© 2026 Alice")
        page.locator("#t2i-generate").click()
        page.wait_for_selector("#t2i-credentials :text('Author')", timeout=120_000)
        panel = page.locator("#t2i-credentials").inner_text()
        assert "alice (creator)" in panel and "Trusted" in panel
        assert "Rights statement © 2026 Alice" in panel and "Training and mining" in panel
        assert "What you can claim" in panel and "not legal advice" in panel
        link = page.locator("#t2i-files a[href]").first
        link.wait_for(timeout=30_000)
        href = link.get_attribute("href")
        data = page.request.get(href if href.startswith("http") else url + href).body()  # with the session's sign-in cookie
        result = verify_bytes(data, local_trust_anchors(home / "keys"))
        assert result.verdict == "trusted" and result.identities[0]["name"] == "alice"
    finally:
        page.close()


def test_examples_model_picker_reuse_seed_send_to_img2img_history_and_dark_mode(page, app_url):
    url, home = app_url
    # an example fills the prompt
    page.get_by_text("a red fox in fresh snow, wildlife photography").first.click()
    page.wait_for_function("document.querySelector('#t2i-prompt textarea').value === 'a red fox in fresh snow, wildlife photography'", timeout=30_000)
    # the model picker shows the chosen model's licence before generating
    page.locator("#t2i-model input").click()
    page.get_by_role("option", name="Stable Diffusion 1.5").click()
    page.wait_for_selector("#t2i-licence :text('in place of Stable Diffusion 1.5')", timeout=30_000)
    assert "Licence" in page.locator("#t2i-licence").inner_text()
    page.locator("#t2i-generate").click()
    page.wait_for_selector("#t2i-audit :text('signed')", timeout=120_000)
    info = page.locator("#t2i-audit").inner_text()
    assert "Settings" in info and "licence" in info  # the full generation info beside the output
    seed = info.split("seed ", 1)[1].split(",", 1)[0]
    page.locator("#t2i-settings").get_by_text("Settings").first.click()
    page.locator("#t2i-reuse-seed").click()
    page.wait_for_function(f"document.querySelector('#t2i-seed input').value === '{seed}'", timeout=30_000)
    # send the output to image-to-image: the tab opens with the signed file in its drop zone
    page.locator("#t2i-send-i2i").click()
    page.wait_for_selector("#i2i-file img[src]", timeout=30_000)
    assert "megapixels" in page.locator("#i2i-limits").inner_text()  # limits are stated beside the drop zone
    page.locator("#i2i-prompt textarea").fill("as a woodcut")
    page.locator("#i2i-go").click()
    page.wait_for_selector("#i2i-audit :text('signed')", timeout=120_000)
    result = verify_bytes(_download(page, "#i2i-files", url), local_trust_anchors(home / "keys"))
    [ingredient] = result.ingredients
    assert ingredient["status"] == "valid"  # the ingredient is the aipic output itself, its credentials intact
    # the session history holds both outputs
    page.get_by_role("tab", name="History").click()
    page.wait_for_function("document.querySelectorAll('#history-gallery img').length >= 2", timeout=30_000)
    # dark mode
    page.locator("#theme-toggle").click()
    assert page.evaluate("document.body.classList.contains('dark')")
