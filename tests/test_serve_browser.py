"""The live view of ``hrstream serve`` in a real browser: Debian's Chromium, headless, driven by Selenium through
Debian's chromedriver (no browser download), against the service over real RTSP cameras on 127.0.0.1.

The page is opened as a user off loopback would, with ``?token=``. A failing test saves a screenshot of the page
to its ``tmp_path`` and prints where.
"""

from __future__ import annotations

import secrets
import time

import pytest
from support.rtsp import RtspServer, needs_rtsp
from support.serving import (
    CHROMEDRIVER,
    CHROMIUM,
    LIVE_RECIPE,
    ServeProcess,
    needs_chromium,
    serve_clip,
    wait_for,
)
from support.tiny_models import tiny_pose_model

pytestmark = [needs_rtsp, needs_chromium, pytest.mark.slow]

TOKEN = "tok-" + secrets.token_hex(12)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_browser")
    tiny = tiny_pose_model(root / "tiny")
    clip = serve_clip(tmp_path_factory.getbasetemp())
    cams = {name: RtspServer(clip=clip).start() for name in ("door", "hall", "yard")}
    sources = root / "site.txt"
    sources.write_text(f"door {cams['door'].url}\nhall {cams['hall'].url}\n")
    recipe = root / "live.yaml"
    recipe.write_text(LIVE_RECIPE)
    svc = ServeProcess(sources, root / "out", tiny.args(), recipe=recipe, log=root / "serve.log", token=TOKEN)
    svc.cams = cams  # type: ignore[attr-defined]
    try:
        svc.start()
        yield svc
    finally:
        svc.close()
        for cam in cams.values():
            cam.kill()


@pytest.fixture(scope="module")
def chrome():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-extensions",
        "--no-first-run",
        "--window-size=1280,900",
    ):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome, request, tmp_path):
    """The module's browser; the page's screenshot is saved when the test failed."""
    failed = request.session.testsfailed
    yield chrome
    if request.session.testsfailed > failed:
        shot = tmp_path / f"{request.node.name}.png"
        chrome.save_screenshot(str(shot))
        print(f"screenshot of the page: {shot}")


def tile(driver, name: str):
    found = driver.find_elements("css selector", f'.tile[data-name="{name}"]')
    return found[0] if found else None


def tile_state(driver, name: str) -> str | None:
    t = tile(driver, name)
    return None if t is None else t.get_attribute("data-state")


def picture(driver, name: str) -> bytes | None:
    """The tile's picture as the browser shows it (a PNG of the img element), once it has one."""
    t = tile(driver, name)
    if t is None:
        return None
    img = t.find_element("tag name", "img")
    if not driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img):
        return None
    return img.screenshot_as_png


def changes(driver, name: str, timeout: float = 30.0) -> bool:
    """The tile's picture changes within ``timeout`` seconds (a live camera)."""
    first = wait_for(lambda: picture(driver, name), timeout, f"{name}'s picture")
    return bool(
        wait_for(lambda: (p := picture(driver, name)) and p != first, timeout, f"{name}'s picture changing")
    )


def test_the_grid_shows_a_tile_per_camera_whose_picture_changes(site, browser):
    browser.get(f"{site.base}/?token={TOKEN}")
    for name in ("door", "hall"):
        wait_for(lambda n=name: tile_state(browser, n) == "live", 60, f"{name}'s tile live")
        assert changes(browser, name)
        img = tile(browser, name).find_element("tag name", "img")
        assert browser.execute_script("return arguments[0].naturalWidth", img) == 426  # narrower than asked
        numbers = tile(browser, name).find_element("css selector", ".numbers").text
        assert "fps" in numbers and "people" in numbers
    assert len(browser.find_elements("css selector", ".tile")) == 2
    assert "2 source(s)" in browser.find_element("id", "summary").text
    assert site.status()["view"]["viewers"] == 2


def test_a_camera_added_through_the_api_appears_and_a_removed_one_disappears(site, browser):
    browser.get(f"{site.base}/?token={TOKEN}")
    wait_for(lambda: tile(browser, "door"), 30, "the grid")
    assert tile(browser, "yard") is None
    r = site.api("POST", "/api/sources", json={"name": "yard", "url": site.cams["yard"].url})
    assert r.status_code == 201
    wait_for(lambda: tile(browser, "yard"), 30, "yard's tile")
    wait_for(lambda: tile_state(browser, "yard") == "live", 60, "yard live")
    assert changes(browser, "yard")
    assert site.api("DELETE", "/api/sources/yard").status_code == 204
    wait_for(lambda: tile(browser, "yard") is None, 30, "yard's tile gone")
    assert [t.get_attribute("data-name") for t in browser.find_elements("css selector", ".tile")] == [
        "door",
        "hall",
    ]


def test_a_stopped_server_shows_reconnecting_then_live(site, browser):
    browser.get(f"{site.base}/?token={TOKEN}")
    wait_for(lambda: tile_state(browser, "hall") == "live", 60, "hall live")
    hall = site.cams["hall"]
    hall.kill()
    wait_for(lambda: tile_state(browser, "hall") == "reconnecting", 30, "hall reconnecting")
    badge = tile(browser, "hall").find_element("css selector", ".badge")
    assert badge.text == "reconnecting"
    assert changes(browser, "door")  # the others go on
    site.cams["hall"] = RtspServer(port=hall.port, clip=hall.clip).start()
    wait_for(lambda: tile_state(browser, "hall") == "live", 60, "hall live again")
    assert changes(browser, "hall")


def test_the_camera_page_lists_its_tracks(site, browser):
    browser.get(f"{site.base}/?token={TOKEN}")
    wait_for(lambda: tile(browser, "door"), 30, "the grid")
    tile(browser, "door").find_element("css selector", ".bar a").click()
    wait_for(lambda: browser.current_url.split("?")[0].endswith("/sources/door"), 30, "the camera page")
    wait_for(
        lambda: browser.find_element("id", "state").get_attribute("data-state") == "live", 30, "door's state"
    )
    rows = wait_for(lambda: browser.find_elements("css selector", "#tracks tr[data-track]"), 30, "track rows")
    cells = [td.text for td in rows[0].find_elements("tag name", "td")]
    assert cells[0].isdigit() and cells[1].endswith(" s") and len(cells[2].split(", ")) == 4
    tracks = site.api("GET", "/api/sources/door/tracks").json()
    assert int(cells[0]) in {t["track_id"] for t in tracks}
    view = browser.find_element("id", "view")
    wait_for(lambda: browser.execute_script("return arguments[0].naturalWidth", view), 30, "door's picture")
    time.sleep(0.5)
    assert "frames" in browser.find_element("id", "numbers").text
