"""The web app end to end: the real uvicorn server on 127.0.0.1 (in a thread) and its page in
headless Chromium driven by selenium. A real image goes through the page's file input (and an
image URL through its URL field, served from 127.0.0.1), and the prediction the page shows must be
what `learn.predict` gives for that image.

Needs Debian's /usr/bin/chromium and /usr/bin/chromedriver (`make browser` installs them; selenium
is told where they are, so selenium-manager never downloads anything). Without them the tests are
skipped, or fail when DEFTLY_REQUIRE_BROWSER=1 (as `make test` sets)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from test_serve import digit_files, export_digit_model, uvicorn_thread  # noqa: E402  (tests/ is on sys.path)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1000,800")
WAIT_S = 60


def _what_is_missing() -> list[str]:
    missing = [f"{p} (Debian package {pkg})" for p, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver"))
               if not os.access(p, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (pip install selenium, in the test extras)")
    return missing


MISSING = _what_is_missing()
if MISSING and os.environ.get("DEFTLY_REQUIRE_BROWSER") != "1":  # skipped before any fixture is built
    pytest.skip(f"the browser test needs {' and '.join(MISSING)}; `make browser` installs them",
                allow_module_level=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium with a fresh profile, driven by selenium through Debian's chromedriver."""
    if MISSING:
        pytest.fail(f"DEFTLY_REQUIRE_BROWSER=1 but the browser test needs {' and '.join(MISSING)}; "
                    "`make browser` installs them", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tmp_path_factory.mktemp("chromium_profile")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def learn(tiny, tmp_path_factory):
    from deftly.export import load_learner

    file = export_digit_model(tiny, tmp_path_factory.mktemp("browser_model"))
    return load_learner(file.parent, file.name)


@pytest.fixture(scope="module")
def server(learn):
    """The app (URLs on 127.0.0.1 allowed, for the URL test) under uvicorn in a thread; its base URL."""
    from deftly.serve import ServeSettings, create_app

    with uvicorn_thread(create_app(learn, ServeSettings(allow_local_urls=True), name="digits.pkl")) as base:
        yield base


def _shown(driver, start) -> dict:
    """Run `start()` (which sends an image), wait for the page to answer, and read what it shows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("document.body.dataset.state = 'sent';")
    start()
    state = WebDriverWait(driver, WAIT_S).until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error")
        and d.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
    rows = [(li.find_element(By.CLASS_NAME, "name").text, li.find_element(By.CLASS_NAME, "pct").text)
            for li in driver.find_elements(By.CSS_SELECTOR, "#probs li")]
    preview = driver.find_element(By.ID, "preview")
    return {"state": state, "status": driver.find_element(By.ID, "status").text,
            "prediction": driver.find_element(By.ID, "prediction").text if state == "done" else None, "rows": rows,
            "preview": preview.get_attribute("src"),
            "preview_width": driver.execute_script("return arguments[0].naturalWidth;", preview)}


def _expected(learn, file: Path) -> tuple[str, list[tuple[str, float]]]:
    label, _, probs = learn.predict(str(file))
    ranked = sorted(zip(["3", "7"], probs.tolist()), key=lambda p: -p[1])
    return str(label), [(c, p * 100) for c, p in ranked]


def _same_rows(rows: list[tuple[str, str]], expected: list[tuple[str, float]]) -> None:
    assert [name for name, _ in rows] == [c for c, _ in expected]
    for (_, shown), (_, pct) in zip(rows, expected):
        assert shown.endswith("%") and abs(float(shown[:-1]) - pct) <= 0.051, (shown, pct)


def test_page_predicts_an_uploaded_image(browser, server, learn, tiny, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(server)
    assert browser.title == "digits.pkl: image classifier"
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "idle"
    file_input = browser.find_element(By.ID, "file")
    for file in digit_files(tiny, 1):  # a 3 then a 7: the page follows each new image
        seen = _shown(browser, lambda f=file: file_input.send_keys(str(f)))
        assert seen["state"] == "done", seen["status"]
        prediction, ranked = _expected(learn, file)
        assert seen["prediction"] == prediction
        _same_rows(seen["rows"], ranked)
        assert seen["preview"].startswith("blob:") and seen["preview_width"] == 28  # the picked file, shown

    notes = tmp_path / "notes.png"
    notes.write_text("not an image at all")
    seen = _shown(browser, lambda: file_input.send_keys(str(notes)))
    assert seen["state"] == "error" and "'notes.png' is not an image" in seen["status"], seen
    assert not browser.find_element(By.ID, "result").is_displayed()

    problems = [entry["message"] for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE" and "/predict" not in entry["message"]]  # the 400 above is expected
    assert problems == []  # no script blocked by the page's Content-Security-Policy, no other error


def test_page_predicts_an_image_url(browser, server, learn, tiny, file_server):
    from selenium.webdriver.common.by import By

    files, base = file_server
    file = digit_files(tiny, 1)[-1]
    files.files["/digit.png"] = file.read_bytes()
    browser.get(server)
    url_input = browser.find_element(By.ID, "url")

    def paste_and_send(url: str):
        def start() -> None:
            url_input.clear()
            url_input.send_keys(url)
            browser.find_element(By.ID, "url-go").click()
        return start

    seen = _shown(browser, paste_and_send(f"{base}/digit.png"))
    assert seen["state"] == "done", seen["status"]
    prediction, ranked = _expected(learn, file)
    assert seen["prediction"] == prediction
    _same_rows(seen["rows"], ranked)
    assert seen["preview"] == f"{base}/digit.png" and seen["preview_width"] == 28
    assert "/digit.png" in files.requests

    seen = _shown(browser, paste_and_send(f"{base}/missing.png"))
    assert seen["state"] == "error" and "HTTP 404" in seen["status"]
