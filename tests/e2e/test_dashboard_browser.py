"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright) against the
embedded stack as subprocesses: local workers on the fake engine (its speed set per pool so a job takes
seconds and a swap to the "fast" profile is visible).

Covers: sign in and out; a job submitted through the API whose page shows progress moving and the end
without a reload; cancel and swap from the UI; the downloaded results equal ``orca results``; another
user gets a 404 page; the plan page; phone width and keyboard focus; no console errors on any page.
Screenshots of the jobs page and a running job's page go to ``test-artifacts/``.

A missing browser fails these tests: ``make test`` installs it (``apt-get install chromium``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.stack import MODEL, Stack, batch, running_stack

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: The local engine answers a plain request in 1 s, 4 at a time (8 requests/s on 2 workers), so a swap to the
#: "fast" profile always has time to start; requests that set ``fake_delay_s`` take that long instead.
SLOW_ENGINE = {"fake_latency_s": "1.0", "fake_slots": "4"}
PROFILES = {"fast": {"fake_latency_s": "0.005", "fake_slots": "16"}}
UI = {
    "ORCA_DASHBOARD__POLL_S": "0.5",
    "ORCA_DASHBOARD__SAMPLE_EVERY_S": "0.5",
    "ORCA_LAUNCHER__LOCAL_ENGINE_ARGS": json.dumps(SLOW_ENGINE),
    "ORCA_LAUNCHER__LOCAL_SWAP_PROFILES": json.dumps(PROFILES),
    "ORCA_LAUNCHER__SWAP_GRACE_S": "20",
    "ORCA_DASHBOARD__REQUEST_TIMEOUT_S": "5",
}
WAIT_MS = 60_000
expect.set_options(timeout=WAIT_MS)


def chromium_path() -> str:
    path = os.environ.get("ORCA_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("no chromium for the dashboard browser tests: `make test` installs it "
                    "(apt-get install chromium), or set ORCA_TEST_CHROMIUM to a Chromium binary")
    return path


def plain_batch(n: int, prefix: str = "req") -> bytes:
    lines = [json.dumps({"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions",
                         "body": {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": f"hi {i}"}]}})
             for i in range(n)]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("dashboard") / "orca"
    with pytest.MonkeyPatch.context() as mp, running_stack(home, mp, **UI) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=args)
        yield b
        b.close()


class Pages:
    """New browser contexts (one per user) whose pages record console errors and uncaught exceptions."""

    def __init__(self, browser: Browser, stack: Stack) -> None:
        self.browser, self.stack = browser, stack
        self.errors: list[str] = []
        self.allowed: list[str] = []
        self.contexts = []

    def page(self, width: int = 1280, height: int = 800) -> Page:
        ctx = self.browser.new_context(viewport={"width": width, "height": height}, base_url=self.stack.api, accept_downloads=True)
        ctx.set_default_timeout(WAIT_MS)
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.on("console", lambda m: m.type == "error" and self.errors.append(f"{page.url}: {m.text}"))
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: uncaught {e}"))
        return page

    def signed_in(self, token: str, width: int = 1280, height: int = 800) -> Page:
        page = self.page(width, height)
        page.goto("/login")
        page.fill("#token", token)
        page.click("button[type=submit]")
        expect(page.locator("h1")).to_have_text("Jobs")
        return page

    def unexpected_errors(self) -> list[str]:
        return [e for e in self.errors if not any(a in e for a in self.allowed)]


@pytest.fixture
def pages(browser: Browser, stack: Stack) -> Iterator[Pages]:
    p = Pages(browser, stack)
    yield p
    for ctx in p.contexts:
        ctx.close()
    assert p.unexpected_errors() == [], "console errors on dashboard pages"


@pytest.fixture(scope="module")
def small_job(stack: Stack) -> str:
    """A finished 8-request job of the stack's user."""
    job_id = stack.submit(plain_batch(8, "small"))["id"]
    wait_job(stack, job_id, lambda j: j["status"] == "completed", "the small job")
    return job_id


def progress_value(page: Page) -> float:
    return float(page.eval_on_selector("#job-progress", "e => e.value"))


def wait_job(stack: Stack, job_id: str, pred, what: str) -> dict:
    return stack.wait(job_id, pred, timeout=WAIT_MS / 1000, what=what)


def test_sign_in_with_token_and_log_out(pages: Pages, stack: Stack) -> None:
    page = pages.page()
    page.goto("/")
    assert page.url.endswith("/login?next=/")
    page.fill("#token", "orca_not_a_token")
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    pages.allowed.append("status of 401")  # the browser logs the refused sign-in's status
    expect(page.locator("#login-error")).to_contain_text("not valid")

    page.fill("#token", stack.token)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Jobs")
    expect(page.locator(".who")).to_have_text(stack.settings.control.default_user)
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["orca_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert session["value"] != stack.token
    assert "orca_session" not in page.evaluate("document.cookie")  # scripts cannot read it

    page.click("text=Log out")
    expect(page.locator("h1")).to_have_text("Sign in")
    assert "orca_session" not in {c["name"] for c in page.context.cookies()}
    page.goto("/")
    assert "/login" in page.url


def test_cancel_from_the_ui(pages: Pages, stack: Stack) -> None:
    job = stack.submit(plain_batch(600, "c"))  # over a minute if left alone
    page = pages.signed_in(stack.token)
    page.goto(f"/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelector('#job-progress').value > 0")
    expect(page.locator("#dl-results")).to_have_text("Download partial results")
    wait_job(stack, job["id"], lambda j: j["progress"]["chunks_done"] >= 1, "a committed chunk")  # partial results hold it
    with page.expect_download() as download:
        page.click("#dl-results")
    partial = [json.loads(line) for line in Path(download.value.path()).read_bytes().splitlines()]
    assert 0 < len(partial) < 600 and all(line["custom_id"].startswith("c-") for line in partial)
    page.click("#cancel-open")
    expect(page.locator("#cancel-dialog")).to_be_visible()
    page.click("#cancel-confirm")
    expect(page.locator("#job-status")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#cancel-open")).to_be_disabled()
    done = wait_job(stack, job["id"], lambda j: j["output_available"], "partial results after cancel")
    assert done["status"] == "cancelled" and done["request_counts"]["completed"] < 600
    expect(page.locator("#dl-results")).to_have_attribute("href", f"/dashboard/api/jobs/{job['id']}/results")


def test_job_page_follows_a_job_to_its_end_and_downloads_match_the_cli(pages: Pages, stack: Stack, small_job: str,
                                                                        tmp_path: Path) -> None:
    job = stack.submit(batch(400, 0.2))  # ~10 s on two workers: time to look at it running
    page = pages.signed_in(stack.token)
    expect(page.locator(f"tr[data-job='{job['id']}']")).to_be_visible()
    page.click(f"a[href='/jobs/{job['id']}']")
    expect(page.locator("h1")).to_have_text(job["id"])
    page.evaluate("window.__sameDocument = true")

    page.wait_for_function("() => document.querySelector('#job-progress').value > 0")
    first = progress_value(page)
    expect(page.locator("#job-status")).to_have_attribute("data-status", "in_progress")
    expect(page.locator("#replicas-body tr").first).to_contain_text("running")
    page.wait_for_function(f"() => document.querySelector('#job-progress').value >= {min(first + 0.15, 0.3)}")
    assert progress_value(page) > first
    expect(page.locator("#job-status")).to_have_attribute("data-status", "in_progress")
    expect(page.locator("#job-track")).to_have_attribute("data-state", "on_track")  # an ETA well before the deadline
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job.png"), full_page=True)  # a running job
    expect(page.locator("#n-requests")).to_contain_text("/ 400")
    expect(page.locator("#pools-body tr").first).to_contain_text("cpu")
    assert page.locator("#progress-chart canvas").count() == 1 and page.locator("#cost-chart canvas").count() == 1

    jobs = page.context.new_page()  # this running job, the small finished one and the cancelled one
    jobs.on("console", lambda m: m.type == "error" and pages.errors.append(f"{jobs.url}: {m.text}"))
    jobs.goto("/")
    expect(jobs.locator(f"tr[data-job='{job['id']}'] .track")).to_have_attribute("data-state", "on_track")
    expect(jobs.locator(f"tr[data-job='{small_job}'] .badge")).to_have_attribute("data-status", "completed")
    jobs.screenshot(path=str(ARTIFACTS / "dashboard-jobs.png"), full_page=True)
    jobs.select_option("#status-filter", "completed")
    expect(jobs.locator(f"tr[data-job='{job['id']}']")).to_have_count(0)
    expect(jobs.locator(f"tr[data-job='{small_job}']")).to_have_count(1)
    assert jobs.url.endswith("?status=completed")
    jobs.select_option("#status-filter", "active")
    expect(jobs.locator(f"tr[data-job='{job['id']}']")).to_have_count(1)
    jobs.close()

    expect(page.locator("#job-status")).to_have_attribute("data-status", "completed")
    expect(page.locator("#job-track")).to_have_attribute("data-state", "done")
    expect(page.locator("#n-percent")).to_have_text("100%")
    expect(page.locator("#dl-results")).to_have_text("Download results")
    assert page.evaluate("window.__sameDocument") is True  # updated live, never reloaded
    events = page.locator("#events-body").inner_text()
    assert "completed" in events and "replica launched" in events

    with page.expect_download() as download:
        page.click("#dl-results")
    got = tmp_path / "ui.jsonl"
    download.value.save_as(got)
    cli = tmp_path / "cli.jsonl"
    subprocess.run([sys.executable, "-c", "from orca.cli import main; main()", "results", job["id"], "-o", str(cli)],
                   check=True, capture_output=True, timeout=60)
    assert got.read_bytes() == cli.read_bytes()
    assert len(got.read_bytes().splitlines()) == 400


def test_swap_from_the_ui_on_the_local_launcher(pages: Pages, stack: Stack) -> None:
    job = stack.submit(plain_batch(160, "s"))  # 20 s on the slow pool alone; the fast one needs about 1 s
    page = pages.signed_in(stack.token)
    page.goto(f"/jobs/{job['id']}")
    page.wait_for_function("() => document.querySelector('#job-progress').value > 0")
    page.click("#swap-open")
    page.select_option("#swap-gpu", "fast")
    expect(page.locator("#swap-confirm")).to_be_disabled()  # the plan comes first
    page.click("#swap-preview")
    expect(page.locator("#swap-plan-table tbody tr").first).to_contain_text("cpu")
    expect(page.locator("#swap-plan")).to_contain_text("local engine profile")
    page.click("#swap-confirm")
    expect(page.locator("#swap-dialog")).to_be_hidden()
    expect(page.locator("#swaps li").first).to_contain_text("fast-tp1-pp1-local")
    expect(page.locator("#pools-body tr")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-job-swap.png"), full_page=True)  # a running job, mid-swap

    expect(page.locator("#swaps li").first).to_have_attribute("data-state", "done")
    expect(page.locator("#job-status")).to_have_attribute("data-status", "completed")
    pools = page.locator("#pools-body").inner_text()
    assert "fast-tp1-pp1-local" in pools and "drained" in pools
    done = stack.job(job["id"])
    assert done["swaps"][-1]["state"] == "done" and done["request_counts"]["completed"] == 160


def test_a_request_that_never_answers_does_not_freeze_the_page(pages: Pages, stack: Stack, small_job: str) -> None:
    page = pages.signed_in(stack.token)
    held = []

    def hold_the_first(route) -> None:
        if not held:
            held.append(route)  # never answered: the page must give up on it and poll again
        else:
            route.continue_()

    page.route(f"**/dashboard/api/jobs/{small_job}", hold_the_first)
    page.goto(f"/jobs/{small_job}")
    expect(page.locator("#job-status")).to_have_attribute("data-status", "completed")
    expect(page.locator("#n-percent")).to_have_text("100%")
    assert len(held) == 1


@pytest.mark.parametrize("closing", ["swap", "replica"])
def test_the_page_polls_until_the_swap_and_workers_of_an_ended_job_are_closed(pages: Pages, stack: Stack, small_job: str,
                                                                             closing: str) -> None:
    """The controller closes a swap and stops the workers on the ticks after a job ends: a page that read the
    ended job while either was still open keeps polling until it sees them closed."""
    page = pages.signed_in(stack.token)
    data = page.request.get(f"/dashboard/api/jobs/{small_job}").json()
    assert data["job"]["status"] == "completed" and data["job"]["output_available"]
    if closing == "swap":  # as read a tick before the controller closed the swap
        data["swaps"] = [{"from_pool": "cpu-tp1-pp1-local", "to_pool": "fast-tp1-pp1-local", "state": "draining",
                          "started_at": data["now"], "cost_usd": {}}]
        still_open = page.locator("#swaps li[data-state='draining']")
    else:  # as read a tick before the controller stopped the worker
        data["replicas"] = [{**data["replicas"][0], "state": "running", "message": "still running"}]
        still_open = page.locator("#replicas-body", has_text="still running")
    served = []

    def first_answer_mid_close(route) -> None:
        if served:
            route.continue_()
        else:
            served.append(route.request.url)
            route.fulfill(json=data)

    page.route(f"**/dashboard/api/jobs/{small_job}*", first_answer_mid_close)
    page.goto(f"/jobs/{small_job}")
    expect(still_open).to_have_count(1)  # the page showed the ended job with its swap or worker open...
    expect(still_open).to_have_count(0)  # ...and polled on until they closed
    expect(page.locator("#swaps-empty")).to_be_visible()
    assert len(served) == 1


def test_another_user_gets_404_on_the_job_page(pages: Pages, stack: Stack, small_job: str) -> None:
    registry = stack.registry()
    try:
        bob = registry.create_token("bob")
    finally:
        registry.close()
    page = pages.signed_in(bob)
    expect(page.locator("#jobs-body")).to_contain_text("No jobs yet")
    pages.allowed.append("status of 404")  # the browser logs the 404 page's status
    answer = page.goto(f"/jobs/{small_job}")
    assert answer is not None and answer.status == 404
    expect(page.locator("h1")).to_have_text("Job not found")
    r = page.request.get(f"/dashboard/api/jobs/{small_job}/results")
    assert r.status == 404
    assert httpx.get(f"{stack.api}/api/jobs/{small_job}", headers={"authorization": f"Bearer {bob}"}).status_code == 404


def test_plan_page_then_submit(pages: Pages, stack: Stack) -> None:
    page = pages.signed_in(stack.token)
    page.click("nav >> text=Plan")
    page.wait_for_url("**/plan")
    page.wait_for_load_state("load")  # plan.js listens for drops once loaded
    dropped = page.evaluate_handle("""text => {
        const dt = new DataTransfer();
        dt.items.add(new File([text], "plan.jsonl", {type: "application/jsonl"}));
        return dt;
    }""", plain_batch(16, "p").decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": dropped})  # the file dropped on the page
    assert page.eval_on_selector("#plan-file", "e => e.files.length && e.files[0].name") == "plan.jsonl"
    page.fill("#plan-deadline", "2h")
    page.click("#plan-submit")
    expect(page.locator("#plan-body tr").first).to_contain_text("cpu")
    expect(page.locator("#plan-summary")).to_contain_text("16 requests")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-plan.png"), full_page=True)
    page.fill("#plan-deadline", "not a deadline")
    page.click("#plan-submit")
    expect(page.locator("#plan-error")).to_contain_text("not a duration")
    pages.allowed.append("status of 400")  # the refused plan request
    page.fill("#plan-deadline", "2h")
    page.click("#plan-submit")
    expect(page.locator("#job-submit")).to_be_enabled()
    page.click("#job-submit")
    page.wait_for_url("**/jobs/batch_*")
    job_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("h1")).to_have_text(job_id)
    expect(page.locator("#n-requests")).to_contain_text("/ 16")


def test_a_job_that_failed_validation(pages: Pages, stack: Stack) -> None:
    bad = plain_batch(3, "v") + b'{"custom_id": "v-0", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
    job = stack.submit(bad)
    page = pages.signed_in(stack.token)
    page.goto(f"/jobs/{job['id']}")
    expect(page.locator("#job-status")).to_have_attribute("data-status", "failed")
    expect(page.locator("#job-message")).to_be_visible()
    expect(page.locator("#dl-results")).to_have_attribute("aria-disabled", "true")
    expect(page.locator("#dl-errors")).to_have_attribute("aria-disabled", "false")
    with page.expect_download() as download:
        page.click("#dl-errors")
    issues = [json.loads(line) for line in Path(download.value.path()).read_bytes().splitlines()]
    assert issues and all("message" in issue for issue in issues)
    expect(page.locator("#pools-body")).to_contain_text("started no workers")


@pytest.mark.parametrize("width,height", [(1280, 800), (390, 844)])
def test_layout_fits_and_focus_is_visible(pages: Pages, stack: Stack, small_job: str, width: int, height: int) -> None:
    job_id = small_job
    page = pages.signed_in(stack.token, width, height)
    ARTIFACTS.mkdir(exist_ok=True)
    for path in ("/", f"/jobs/{job_id}", "/plan"):
        page.goto(path)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px at {width}px"
        if path == "/":
            expect(page.locator(f"tr[data-job='{job_id}']")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / f"dashboard-jobs-{width}px.png"), full_page=True)
    page.goto(f"/jobs/{job_id}")
    expect(page.locator("#progress-chart canvas")).to_be_visible()
    expect(page.locator("#job-status")).to_have_attribute("data-status", "completed")
    page.screenshot(path=str(ARTIFACTS / f"dashboard-job-{width}px.png"), full_page=True)
    assert page.locator("#n-deadline").inner_text() != "–"  # the chart's numbers beside it
    page.keyboard.press("Tab")  # the skip link, then the first control
    page.keyboard.press("Tab")
    style = page.evaluate("(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; })()")
    assert style[0] != "none" and style[1] != "0px", style


def test_a_missing_browser_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ORCA_TEST_CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(pytest.fail.Exception, match="make test"):
        chromium_path()
