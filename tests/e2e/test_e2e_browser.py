"""What a person sees: headless Chromium clicks from the front page to the inbox, one message,
the verification page, the event catalogue and every API's docs, all through the gateway.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them); skipped with
the reason when they are missing. Outside hosts do not resolve in this browser, so every page
is shown to render with no network. Screenshots go to ``.agora/screenshots/`` (not committed).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from agora_deploy.launchers.gateway import Gateway, start_gateway
from agora_deploy.launchers.process import free_port
from agora_deploy.testing import SystemStack
from agora_kit.testing.poll import eventually_sync
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / ".agora" / "screenshots"
WAIT_S = 15.0
#: The whole browser walk, from the front page to the last docs page.
BUDGET_S = 60.0
T = TypeVar("T")


def _chromium_options(profile: str) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        # As root (CI), Chromium needs --no-sandbox; the rest keeps it off the network.
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1000",
        # No host but loopback resolves: a page that needs a CDN shows it by failing here.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    """A headless Chromium driven by Debian's chromedriver, with a fresh profile."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(
            f"no {', '.join(missing)}: install Debian's chromium and chromium-driver "
            "(`apt-get install chromium chromium-driver`, as .ci/run does)"
        )
    profile = tempfile.mkdtemp(prefix="agora-chromium-")
    try:
        driver = webdriver.Chrome(
            service=Service(str(CHROMEDRIVER)), options=_chromium_options(profile)
        )
    except WebDriverException as exc:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.fail(f"chromium did not start: {exc.msg}")
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def dev_gateway(
    system_stack: SystemStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """A gateway in front of the stack that also routes the mail sink's inbox at /mail/."""
    upstreams = {name: system_stack.service_url(name) for name in ("users", "items", "notifier")}
    upstreams["mail"] = system_stack.mail_api
    gw = start_gateway(
        tmp_path_factory.mktemp("browser-gw"),
        port=free_port(),
        internal_port=free_port(),
        upstreams=upstreams,
        settings={"AGORA_ENV": "development"},
        die_with_parent=True,
    )
    try:
        with httpx.Client(base_url=gw.url, timeout=10) as client:
            eventually_sync(
                lambda: client.get("/mail/api/v1/info").status_code == 200, timeout_s=10
            )
        yield gw
    finally:
        gw.stop()


def _wait(driver: WebDriver, until: Callable[[WebDriver], T], what: str) -> T:
    try:
        return WebDriverWait(driver, WAIT_S).until(until)
    except Exception as exc:
        _shot(driver, f"failed-{what}")
        raise AssertionError(f"{what}: not seen within {WAIT_S}s at {driver.current_url}") from exc


def _shot(driver: WebDriver, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))


def _rows(driver: WebDriver, to: str) -> list[WebElement]:
    return [
        row
        for row in driver.find_elements(By.CSS_SELECTOR, "#messages tr")
        if to in row.find_element(By.CSS_SELECTOR, "td.to").text
    ]


def _row(driver: WebDriver, to: str, subject_start: str) -> WebElement | None:
    for row in _rows(driver, to):
        if row.find_element(By.CSS_SELECTOR, "td.subject").text.startswith(subject_start):
            return row
    return None


def _health_is_ready(service: str) -> Callable[[WebDriver], bool]:
    def ready(driver: WebDriver) -> bool:
        cell = f'[data-health="{service}/health/ready"]'
        return bool(driver.find_element(By.CSS_SELECTOR, cell).text == "ready")

    return ready


def _csp_violations(driver: webdriver.Chrome) -> list[str]:
    # Selenium leaves get_log unannotated; it returns the browser console's entries.
    entries: list[dict[str, object]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    return [
        str(entry["message"])
        for entry in entries
        if "Content Security Policy" in str(entry["message"])
        # ReDoc's sidebar shows a logo from its CDN: blocked, as it should be, and not needed.
        and "cdn.redoc.ly" not in str(entry["message"])
    ]


def test_front_page_inbox_message_verification_and_catalogue(
    browser: webdriver.Chrome, dev_gateway: Gateway, system_stack: SystemStack
) -> None:
    name = f"Browser {uuid.uuid4().hex[:6]}"
    email = f"browser-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=dev_gateway.url, timeout=15) as client:
        resp = client.post(
            "/api/v1/users",
            json={"email": email, "name": name, "password": f"pw-{uuid.uuid4().hex}"},
        )
        assert resp.status_code == 201, resp.text
        # Swagger UI's "Try it out" calls the API at the gateway's root, not under /users.
        spec = client.get("/users/openapi.json").json()
        assert all(not s["url"].startswith("/users") for s in spec.get("servers", []))
    started = time.monotonic()

    # The front page: every service ready, by the page's own fetches.
    browser.get(dev_gateway.url + "/")
    for service in ("users", "items", "notifier"):
        _wait(browser, _health_is_ready(service), f"{service} ready")
    _shot(browser, "01-front-page")

    # By a click to the inbox, where both e-mails of the registration are listed.
    browser.find_element(By.ID, "mail-link").click()
    _wait(browser, lambda d: d.current_url == dev_gateway.url + "/mail/", "the inbox")
    welcome = _wait(browser, lambda d: _row(d, email, f"Welcome to Agora, {name}"), "welcome")
    _wait(browser, lambda d: _row(d, email, "Confirm your email address"), "verification")
    _shot(browser, "02-inbox")

    assert welcome is not None
    # One message: its HTML renders in the sandboxed frame; its headers tie it to the event.
    welcome.click()
    _wait(browser, lambda d: d.find_element(By.ID, "m-subject").text.startswith("Welcome"), "open")
    frame = browser.find_element(By.ID, "m-html")
    assert frame.get_attribute("sandbox") == ""
    headers = _wait(browser, lambda d: d.find_element(By.ID, "m-headers").text, "the headers")
    assert "message-id <" in headers.lower()
    assert "X-Agora-Kind welcome" in headers
    assert "X-Agora-Event-Id" in headers
    browser.switch_to.frame(frame)
    try:
        html_text = _wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").text, "html")
        assert name in html_text
    finally:
        browser.switch_to.default_content()
    _shot(browser, "03-welcome-message")

    # The verification e-mail's link opens the users service's page, which confirms the address.
    verification = _row(browser, email, "Confirm your email address")
    assert verification is not None
    verification.click()
    link = _wait(
        browser,
        lambda d: d.find_element(By.CSS_SELECTOR, '#m-text a[href*="/verify-email?token="]'),
        "the verification link",
    )
    link.click()
    button = _wait(
        browser,
        lambda d: d.find_element(By.XPATH, "//button[text()='Confirm my email address']"),
        "the users service's verification page",
    )
    _shot(browser, "04-verify-email-page")
    button.click()
    _wait(browser, lambda d: "your email address is verified" in d.page_source, "verified")
    _shot(browser, "05-verified")

    # Back to the front page, and by a click to the event catalogue.
    browser.get(dev_gateway.url + "/")
    browser.find_element(By.ID, "events-link").click()
    _wait(
        browser,
        lambda d: d.find_elements(By.ID, "agora.users.user.registered.v1"),
        "the catalogue",
    )
    assert "registered_at" in browser.find_element(By.ID, "agora.users.user.registered.v1").text
    _shot(browser, "06-event-catalogue")

    # Every API's docs render their operations from assets the services serve themselves.
    for service in ("users", "items", "notifier"):
        browser.get(f"{dev_gateway.url}/{service}/docs")
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".opblock"), f"{service} swagger")
        _shot(browser, f"07-{service}-swagger")
        browser.get(f"{dev_gateway.url}/{service}/redoc")
        _wait(
            browser,
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-section-id^="operation/"]'),
            f"{service} redoc",
        )
        _shot(browser, f"08-{service}-redoc")
    assert _csp_violations(browser) == []
    took = time.monotonic() - started
    print(f"browser walk: {took:.1f}s; screenshots in {SCREENSHOTS}")
    assert took < BUDGET_S, f"the browser walk took {took:.1f}s"
