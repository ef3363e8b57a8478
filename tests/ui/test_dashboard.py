"""The dashboard in a real browser: Debian's Chromium driven by Playwright (its own browser
download is not reachable here: launched with ``executable_path``) against a live embedded
server with API keys. Sign-in, live counts and lists, a failed task's error, a replay from the
dead letters, a bulk cancel by filter, pausing a queue, a viewer without buttons whose forged
changes are refused, and no console error on any page. Screenshots of every page, light and
dark, go to ``TIERQ_UI_SCREENSHOTS`` (default: the test's temporary directory)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.system.cluster import EmbeddedServer

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
PAGES = ["overview", "tasks", "dead", "queues", "schedules", "breakers", "workers", "audit"]


def make_key(db: Path, role: str, tenant: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERQ_")}
    env["TIERQ_DATABASE_URL"] = f"sqlite:///{db}"
    command = ["keys", "create", "--name", role, "--role", role, "--tenant", tenant]
    made = subprocess.run(
        [sys.executable, "-m", "tierq", *command],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return made.stdout.strip().splitlines()[-1]


class Deployment:
    def __init__(self, tmp: Path) -> None:
        db = tmp / "ui.db"
        self.admin = make_key(db, "admin", "*")
        self.viewer = make_key(db, "viewer", "default")
        self.server = EmbeddedServer(db, tmp / "server.log")
        self.server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(self.server.base + "/health/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.api = httpx.Client(base_url=self.server.base, headers={"X-API-Key": self.admin})

    def submit(self, **task: Any) -> str:
        resp = self.api.post("/api/v1/tasks", json=task)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    def task(self, task_id: str) -> dict[str, Any]:
        body: dict[str, Any] = self.api.get(f"/api/v1/tasks/{task_id}").json()
        return body

    def wait(self, task_id: str, status: str) -> None:
        body = self.api.get(f"/api/v1/tasks/{task_id}?wait_seconds=20").json()
        assert body["status"] == status, body


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    made = Deployment(tmp_path_factory.mktemp("ui"))
    try:
        yield made
    finally:
        made.api.close()
        made.server.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = os.environ.get("TIERQ_TEST_CHROMIUM") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("TIERQ_UI_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def signed_in(browser: Browser, deployment: Deployment, key: str, errors: list[str]) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(deployment.server.base + "/")
    expect(page.get_by_role("heading", name="Sign in to tierq")).to_be_visible()
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    return page


def count_card(page: Page, state: str) -> Any:
    return page.locator(f'#counts a[data-state="{state}"] .n')


def test_an_operator_at_work(browser: Browser, deployment: Deployment, shots: Path) -> None:
    errors: list[str] = []
    page = signed_in(browser, deployment, deployment.admin, errors)
    cookie = next(c for c in page.context.cookies() if c["name"] == "tierq_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert deployment.admin not in cookie["value"]  # the key's hash is signed in, not the key

    # Counts follow the event stream: no reload.
    ids = [deployment.submit(type="noop") for _ in range(3)]
    for task_id in ids:
        deployment.wait(task_id, "succeeded")
    expect(count_card(page, "succeeded")).to_have_text("3", timeout=15_000)

    # The task list, and a task submitted while it is open.
    page.goto(deployment.server.base + "/ui/#/tasks")
    expect(page.locator("#task-list tbody tr")).to_have_count(3)
    expect(page.locator("#counted")).to_have_text("3 tasks")
    deployment.submit(type="noop", name="arrived-live")
    expect(page.locator("#task-list")).to_contain_text("arrived-live", timeout=15_000)

    # Search by payload field and name prefix, from the filter form.
    deployment.submit(type="noop", name="order-a", payload={"customer_id": 42})
    deployment.submit(type="noop", name="order-b", payload={"customer_id": 7})
    page.goto(deployment.server.base + "/ui/#/tasks")
    page.get_by_label("payload fields").fill("customer_id=42")
    page.get_by_label("name starts with").fill("order-")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"payload\.customer_id=42"))
    assert "name=order-" in page.url
    expect(page.locator("#task-list tbody tr")).to_have_count(1)
    expect(page.locator("#searched")).to_contain_text("Searched all")

    # A failed task shows its error; replayed from the dead letters, it succeeds.
    failed = deployment.submit(type="dummy", payload={"fail_times": 1}, max_retries=0)
    deployment.wait(failed, "failed")
    page.goto(f"{deployment.server.base}/ui/#/task/{failed}")
    expect(page.locator("#last-error")).to_contain_text("planned failures")
    expect(page.locator("pre.traceback")).to_contain_text("planned failures")
    page.goto(deployment.server.base + "/ui/#/dead")
    expect(page.locator("details.group")).to_contain_text("dummy")
    page.locator("button.replay").first.click()
    expect(page.get_by_role("status")).to_contain_text("1 tasks replayed")
    deployment.wait(failed, "succeeded")  # the replay is in: it waits for the new attempt
    expect(page.get_by_text("No failed tasks")).to_be_visible(timeout=15_000)

    # Dependencies as a small graph: parents and children, linked.
    parent = deployment.submit(type="noop", name="parent")
    child = deployment.submit(type="noop", name="child", depends_on=[parent])
    deployment.wait(child, "succeeded")
    page.goto(f"{deployment.server.base}/ui/#/task/{parent}")
    expect(page.locator("#graph")).to_contain_text("child")
    page.locator(f'#graph a[href="#/task/{child}"]').click()
    expect(page.locator("main h1")).to_contain_text(child)
    expect(page.locator("#graph")).to_contain_text("parent")

    # Bulk cancel by filter, after a confirmation that says how many.
    for _ in range(4):
        deployment.submit(type="noop", queue="bulk", delay_seconds=3600)
    page.goto(deployment.server.base + "/ui/#/tasks?queue=bulk")
    expect(page.locator("#task-list tbody tr")).to_have_count(4)
    page.locator("#cancel-matching").click()
    expect(page.locator("dialog")).to_contain_text("queue=bulk: 4")
    page.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("status")).to_contain_text("4 tasks cancelled")
    listed = deployment.api.get("/api/v1/tasks?queue=bulk&status=cancelled").json()["items"]
    assert len(listed) == 4

    # Pause a queue.
    page.goto(deployment.server.base + "/ui/#/queues")
    page.locator('button[data-queue="bulk"]').click()
    expect(page.locator('button[data-queue="bulk"]')).to_have_text("Resume")
    queues = deployment.api.get("/api/v1/queues").json()["items"]
    assert [q["paused"] for q in queues if q["name"] == "bulk"] == [True]

    # A schedule made from the form, its next fire times previewed while typing.
    page.goto(deployment.server.base + "/ui/#/schedules")
    page.get_by_text("New schedule").click()
    page.get_by_label("time zone").fill("Europe/Berlin")
    page.get_by_label("cron").fill("*/5 * * * *")
    expect(page.locator("#preview li")).to_have_count(5)
    expect(page.locator("#preview li").first).to_contain_text("+01:00")  # Berlin, in winter
    page.get_by_label("cron").fill("61 * * * *")
    expect(page.locator("#preview")).to_contain_text("minute")
    # The browser logs the preview's 422 (the expression refused) as a failed load: expected,
    # and the only one.
    refused = [e for e in errors if "status of 422" in e]
    assert len(refused) == 1, errors
    errors.remove(refused[0])
    page.get_by_label("cron").fill("0 3 * * *")
    page.get_by_label("name", exact=True).fill("nightly")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("main table")).to_contain_text("nightly")

    # Every page renders, in light and in dark, with no console error.
    for theme in ("light", "dark"):
        page.evaluate(f"localStorage.setItem('tierq-theme', '{theme}')")
        for name in PAGES:
            page.goto(f"{deployment.server.base}/ui/#/{name}")
            page.reload()
            expect(page.locator("main h1")).to_be_visible()
            page.screenshot(path=str(shots / f"{name}-{theme}.png"), full_page=True)
        page.goto(f"{deployment.server.base}/ui/#/task/{failed}")
        page.reload()
        expect(page.locator("main h1")).to_contain_text("Task")
        page.screenshot(path=str(shots / f"task-{theme}.png"), full_page=True)
    # On a phone: nothing wider than the screen (wide tables scroll inside their box).
    page.set_viewport_size({"width": 390, "height": 844})
    for name in ("overview", "tasks", "dead", "queues"):
        page.goto(f"{deployment.server.base}/ui/#/{name}")
        page.reload()
        expect(page.locator("main h1")).to_be_visible()
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], (name, width)
        page.screenshot(path=str(shots / f"{name}-phone.png"), full_page=True)
    assert errors == []


def test_a_viewer_sees_no_buttons_and_cannot_forge_a_change(
    browser: Browser, deployment: Deployment
) -> None:
    errors: list[str] = []
    target = deployment.submit(type="noop", delay_seconds=3600)
    page = signed_in(browser, deployment, deployment.viewer, errors)
    page.goto(deployment.server.base + "/ui/#/tasks")
    expect(page.locator("#task-list tbody tr").first).to_be_visible()
    assert page.locator("#cancel-matching").count() == 0
    page.goto(f"{deployment.server.base}/ui/#/task/{target}")
    expect(page.locator("main h1")).to_contain_text("Task")
    assert page.locator("#cancel").count() == 0
    assert page.get_by_role("link", name="Audit log").count() == 0
    assert errors == []  # the refusals below are logged by the browser, on purpose

    def forge(headers: dict[str, str]) -> Any:
        script = """async ([path, headers]) => {
            const r = await fetch(path, {method: "POST", headers, credentials: "same-origin"});
            return [r.status, await r.text()];
        }"""
        return page.evaluate(script, [f"/api/v1/tasks/{target}/cancel", headers])

    status, body = forge({})  # the cookie alone, no CSRF token
    assert (status, json.loads(body)["error"]["code"]) == (403, "csrf")
    who = page.evaluate("fetch('/ui/session').then(r => r.json())")
    status, body = forge({"X-CSRF-Token": who["csrf"]})  # a valid token: the role decides
    assert (status, json.loads(body)["error"]["code"]) == (403, "forbidden")
    assert deployment.task(target)["status"] == "scheduled"
    # From another site, even with the token: refused.
    cross = httpx.post(
        f"{deployment.server.base}/api/v1/tasks/{target}/cancel",
        headers={"X-CSRF-Token": who["csrf"], "Origin": "https://evil.example"},
        cookies={c["name"]: c["value"] for c in page.context.cookies()},
    )
    assert cross.status_code == 403 and cross.json()["error"]["code"] == "csrf"


def test_the_pages_are_served_strictly(deployment: Deployment) -> None:
    root = httpx.get(deployment.server.base + "/")
    assert root.status_code == 302 and root.headers["Location"] == "/ui/"
    page = httpx.get(deployment.server.base + "/ui/", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    script = httpx.get(deployment.server.base + "/ui/app.js", headers={"Accept-Encoding": "gzip"})
    assert script.headers["Content-Encoding"] == "gzip"
    again = httpx.get(
        deployment.server.base + "/ui/app.js", headers={"If-None-Match": script.headers["ETag"]}
    )
    assert again.status_code == 304
    assert httpx.get(deployment.server.base + "/ui/missing.js").status_code == 404
