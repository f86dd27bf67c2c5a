"""The pages in a real browser: Debian's Chromium driven by Playwright (no browser download).

Clicks through the worklist filter, opens a decision, edits a mapping with a validation error
and then a valid value, and rolls back. A screenshot of each page is saved under
.artifacts/screenshots/ as a test artifact.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from werkzeug.serving import make_server

from plugin.config.tokens import token_hash
from plugin.rules.systems import IDENTIFIER_TYPE, NPI
from tests import builders
from tests.ehr import free_port
from tests.helpers.hooks import hook_body, prefetch_of

SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file():
        raise RuntimeError("Chromium not found: run the tests with `make test`, which installs it")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def site(make_app) -> Iterator[str]:
    app = make_app(
        THERACHARGE_API_TOKENS=f"ann:admin=sha256:{token_hash('admin-token')}",
        THERACHARGE_CDS_AUTH="disabled",
        THERACHARGE_LEDGER_KEEP_PREVIEW="true",  # a preview-mode site that shows its decisions
    )
    client = app.test_client()
    client.post("/cds-services/therapy-charges", json=hook_body())  # holds for time-missing
    second = builders.procedure("q1", "97110", "2026-11-02T09:00:00-05:00", 20, encounter_id="e2")
    del second["bodySite"]
    # balance work billed as therapeutic exercise: a code-choice review suggesting 97112
    second["note"] = [
        {"text": "Single-leg stance on foam 3x30 sec, tandem stance; VC for posture."}
    ]
    people = [
        {"resourceType": "Patient", "id": "p1", "name": [{"given": ["Ada"], "family": "Lovel"}],
         "birthDate": "1948-05-12",
         "identifier": [{"type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "MR"}]},
                         "value": "MRN-4471"}]},
        {"resourceType": "Practitioner", "id": "pt1", "name": [{"text": "Sam Rivera"}],
         "identifier": [{"system": NPI, "value": "1300000019"}],
         "qualification": [{"code": {"text": "DPT"}}]},
    ]  # fmt: skip
    resources = builders.complete_record(second, visit=builders.encounter("e2")) + people
    body = hook_body(prefetch=prefetch_of(resources))
    body["context"]["encounterId"], body["hookInstance"] = "e2", str(uuid.uuid4())
    client.post("/cds-services/therapy-charges", json=body)  # holds for body-site-missing
    # a third visit billed with a warning only: its note shows no skilled element
    third = builders.procedure("r1", "97110", "2026-11-02T10:00:00-05:00", 20, encounter_id="e3")
    third["note"] = [{"text": "Seated knee extension 3x10 with 3 lb, SLR 3x10."}]
    resources = builders.complete_record(third, visit=builders.encounter("e3")) + people
    resources = [dict(r, subject={"reference": "Patient/p3"}) if "subject" in r else r
                 for r in resources]  # fmt: skip
    body = hook_body(prefetch=prefetch_of(resources))
    body["context"].update(encounterId="e3", patientId="p3")
    body["hookInstance"] = str(uuid.uuid4())
    client.post("/cds-services/therapy-charges", json=body)
    port = free_port()
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(5)


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, site: str, path: str = "/worklist") -> None:
    page.goto(f"{site}{path}")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Access token").fill("admin-token")
    page.get_by_role("button", name="Sign in").click()


def test_worklist_filter_and_decision_page(browser: Browser, site: str) -> None:
    page = browser.new_page()
    sign_in(page, site)
    expect(page.get_by_role("heading", name="Hold worklist")).to_be_visible()
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(4)
    shot(page, "worklist")
    page.get_by_label("Gap", exact=True).select_option("body-site-missing")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("e2")
    expect(rows.first).to_contain_text("-GP")  # the line's code with its modifiers
    expect(rows.first).to_contain_text("Medicare Part B")  # the payer's name, not its id
    expect(rows.first.locator("td.patient")).to_have_text("Ada Lovel (MRN MRN-4471)born 1948-05-12")
    expect(rows.first.locator("td.therapist")).to_have_text("Sam Rivera, DPT (NPI 1300000019)")
    expect(page.locator(".counts").first).to_contain_text("body-site-missing: 1")
    shot(page, "worklist-filtered")
    page.get_by_label("Gap", exact=True).select_option("")
    page.get_by_label("Show").select_option("warnings")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(1)  # the one line billed with a warning, held lines apart
    expect(rows.first).to_contain_text("e3")
    expect(rows.first.locator("td.warn")).to_contain_text("skill-not-shown")
    expect(page.locator(".counts.warnings")).to_contain_text("skill-not-shown: 1")
    shot(page, "worklist-warnings")
    page.get_by_label("Show").select_option("held")
    page.get_by_role("button", name="Filter").click()
    page.get_by_label("Gap", exact=True).select_option("body-site-missing")
    page.get_by_role("button", name="Filter").click()
    # the hold's title and its fix beside it, who can fix it; the visit named in words
    held = rows.first.locator("td.hold")
    expect(held).to_contain_text("Body part not recorded")
    expect(held).to_contain_text("Record the body part treated.")
    expect(held).to_contain_text("the therapist, in the chart")
    page.get_by_role("link", name="2026-11-02 09:00–09:20 · physical therapy").click()
    # the decision titled by patient, date and discipline, not by the encounter's id
    expect(
        page.get_by_role("heading", name="Ada Lovel · 2026-11-02 · physical therapy")
    ).to_be_visible()
    expect(page.locator("p.who")).to_contain_text("MRN MRN-4471 · born 1948-05-12")
    expect(page.locator("p.who")).to_contain_text("Treated by Sam Rivera, DPT (NPI 1300000019)")
    expect(page.locator("strong.payer")).to_have_text("Medicare Part B")
    expect(page.locator("span.method")).to_contain_text("Medicare 8-minute rule on total timed")
    expect(page.locator("span.when")).to_contain_text("UTC")
    expect(page.get_by_role("heading", name="How the units were counted")).to_be_visible()
    expect(page.locator("body")).to_contain_text("CMS Pub 100-04 ch.5 §20.2 C")
    fixes = page.get_by_role("table", name="Documentation to fix")
    body_site = fixes.locator("tr").filter(has_text="Body part not recorded")
    expect(body_site.locator(".finding-code")).to_contain_text("body-site-missing")
    expect(body_site.locator("td.where")).to_have_text("the service 97110, 09:00–09:20")
    expect(body_site.locator("td.fixed-by")).to_have_text("the therapist, in the chart")
    expect(body_site).to_contain_text("Record the body part treated.")
    expect(page.get_by_role("table", name="Charge lines")).to_contain_text(
        "Held until fixed: Body part not recorded"
    )
    expect(page.locator("td.planned").first).to_have_text("held")  # FHIR's planned, in words
    expect(page.locator("tbody").first).to_contain_text("USD")  # each line's price
    expect(page.locator("strong.suggested")).to_have_text("Suggested code: 97112")
    expect(page.locator("body")).to_contain_text("it fits 97112 better than 97110")
    shot(page, "decision")


def test_edit_a_mapping_with_a_validation_error_then_a_valid_value_and_roll_back(
    browser: Browser, site: str
) -> None:
    page = browser.new_page()
    sign_in(page, site, "/admin/mappings")
    mappings = page.locator("tbody tr").filter(
        has_text="Example EHR local therapy charge codes to CPT/HCPCS"
    )
    expect(mappings).to_contain_text(
        "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes → CPT"
    )
    expect(mappings).to_contain_text("by system: imported from the shipped configuration")
    page.get_by_role("link", name="Example EHR local therapy charge codes to CPT/HCPCS").click()
    expect(
        page.get_by_role(
            "heading", name="Example EHR local therapy charge codes to CPT/HCPCS version 1"
        )
    ).to_be_visible()
    shot(page, "mapping")
    form: dict[str, Any] = {
        "Source system": "https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes",
        "Source code": "PT-AQUATIC",
        "CPT/HCPCS code": "97999",
        "Where the mapping comes from": "charge master review 2026-11",
        "Reason for the change": "new aquatic therapy charge",
    }
    for label, value in form.items():
        page.get_by_label(label).fill(value)
    page.get_by_role("button", name="Save as a new version").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("97999 is not in the code catalog")
    expect(
        page.get_by_role(
            "heading", name="Example EHR local therapy charge codes to CPT/HCPCS version 1"
        )
    ).to_be_visible()
    shot(page, "mapping-invalid")
    page.get_by_label("CPT/HCPCS code").fill("97113")
    page.get_by_role("button", name="Save as a new version").click()
    expect(
        page.get_by_role(
            "heading", name="Example EHR local therapy charge codes to CPT/HCPCS version 2"
        )
    ).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Saved local-example-ehr.json version 2")
    expect(page.locator("body")).to_contain_text(
        "PT-AQUATIC (https://ehr.example.org/fhir/CodeSystem/therapy-charge-codes) added: "
        "bills as 97113"
    )
    shot(page, "mapping-saved")
    page.get_by_role("button", name="Roll back to version 1").click()
    expect(
        page.get_by_role(
            "heading", name="Example EHR local therapy charge codes to CPT/HCPCS version 3"
        )
    ).to_be_visible()
    expect(page.locator("tbody").first).not_to_contain_text("PT-AQUATIC")
    shot(page, "mapping-rolled-back")


def test_add_a_practitioner_whose_role_the_ehr_does_not_say(browser: Browser, site: str) -> None:
    page = browser.new_page()
    sign_in(page, site, "/admin/practitioners")
    expect(page.get_by_role("heading", name="Practitioners as shipped")).to_be_visible()
    expect(page.locator("body")).to_contain_text("None listed.")
    page.get_by_label("Practitioner/id or NPI").fill("12345")  # not an NPI
    page.get_by_label("Role", exact=True).select_option("PTA")
    page.get_by_label("Where the role is known from").fill("HR credential file 2026-11")
    page.get_by_label("Reason for the change").fill("new assistant")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("alert")).to_contain_text("practitioners")
    page.get_by_label("Practitioner/id or NPI").fill("1234567893")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("heading", name="Practitioners version 1")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Saved the practitioner table, version 1")
    expect(page.locator("tbody").first).to_contain_text("NPI 1234567893")
    expect(page.locator("tbody").first).to_contain_text("PTA")
    shot(page, "practitioners")


def test_a_set_aside_visit_shows_on_the_worklist_and_goes_back_in_the_queue(
    browser: Browser, site: str, tmp_path: Path
) -> None:
    from plugin.store import Store

    store = Store(f"sqlite:///{tmp_path / 'instance' / 'theracharge.db'}")  # the site's database
    store.enqueue("e77", "4")
    claimed = store.claim()
    assert claimed is not None
    store.finish(claimed.id, "Encounter/e77 is not valid FHIR R4: bodySite: Input should be a list")
    page = browser.new_page()
    sign_in(page, site)
    table = page.get_by_role("table", name="Visits that could not be processed")
    expect(table).to_contain_text("e77")
    expect(table).to_contain_text("bodySite: Input should be a list")
    shot(page, "worklist-set-aside")
    page.get_by_role("button", name="Try Encounter/e77 again").click()
    expect(page.get_by_role("status")).to_contain_text("Encounter/e77 is queued again")
    expect(page.get_by_role("table", name="Visits that could not be processed")).to_have_count(0)
    (row,) = store.notifications()
    assert (row.status, row.attempts) == ("pending", 0)
    assert [(a.actor, a.action) for a in store.audit_entries(object_type="notification")] == [
        ("ann", "retry")
    ]


def test_the_api_reference_page_renders_every_operation_from_our_own_assets(
    browser: Browser, site: str
) -> None:
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{site}/api-docs")
    expect(page.locator(".opblock").first).to_be_visible(timeout=15_000)
    expect(page.locator("body")).to_contain_text("/admin/api/v1/vocabulary")
    expect(page.locator("body")).to_contain_text("/cds-services/{service_id}")
    assert page.locator(".opblock").count() >= 30  # every operation, one block each
    assert requested
    assert all(url.startswith(site) for url in requested), requested  # no CDN
    shot(page, "api-docs")


def test_the_managers_dashboard_draws_the_periods_figures_without_a_cdn(
    browser: Browser, site: str
) -> None:
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    sign_in(page, site, "/dashboard?since=2026-11-01&until=2026-11-30")
    expect(page.get_by_role("heading", name="Billing dashboard")).to_be_visible()
    # e1's three lines held for time-missing, e2's held for a body site, e3's billed
    expect(page.locator(".total-planned")).to_have_text("4")
    expect(page.locator(".total-billable")).to_have_text("1")
    holds = page.locator("table[aria-labelledby=holds] tbody tr")
    expect(holds).to_have_count(2)
    expect(holds.filter(has_text="time-missing")).to_contain_text("not fixed yet")
    expect(holds.filter(has_text="body-site-missing")).to_contain_text("1")
    expect(page.locator("svg[role=img]")).to_have_count(4)  # four charts, drawn inline
    minutes = page.locator("table[aria-labelledby=minutes] tbody tr")
    expect(minutes.first).to_contain_text("Sam Rivera, DPT")
    expect(minutes.first).to_contain_text("20.0")  # 20 minutes for 1 unit of 97110
    assert all(url.startswith(site) for url in requested), requested
    shot(page, "dashboard")
    # without a period: the latest 30 days that hold charges, and it says so
    page.goto(f"{site}/dashboard")
    expect(page.locator("p.period")).to_contain_text("the 30 days to 2026-11-02")
    expect(page.locator(".total-planned")).to_have_text("4")
    expect(holds.filter(has_text="Service minutes not documented")).to_contain_text("time-missing")
    page.goto(f"{site}/dashboard?since=2026-12-01&until=2026-12-31")
    expect(page.locator(".total-planned")).to_have_text("0")
    expect(page.locator("body")).to_contain_text("No holds in this period.")


def test_every_admin_page_is_in_the_navigation_and_a_table_saves_diffs_and_rolls_back(
    browser: Browser, site: str
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, site)
    nav = page.get_by_role("navigation", name="Main")
    headings = {
        "Payer rules": "The payer rules",
        "Fee schedule": "The fee schedule",
        "Vocabulary": "The vocabulary",
        "Practitioners": "Practitioners",
        "Charge outlet": "The charge outlet's site settings",
        "All tables": "Tables",
        "Audit log": "Audit log",
        "Mappings": "Code mapping tables",
        "Dashboard": "Billing dashboard",
        "Hold worklist": "Hold worklist",
    }
    for link, heading in headings.items():
        nav.get_by_role("link", name=link, exact=True).click()
        expect(page.locator("h1")).to_contain_text(heading)
    assert errors == [], errors  # no 404 for a favicon, no script error, on any page
    nav.get_by_role("link", name="Payer rules", exact=True).click()
    expect(page.locator("ul.sources")).to_contain_text("CMS Pub 100-04 ch.5 §20.2 C")
    shot(page, "table-payers")
    editor = page.get_by_label("The table as YAML (checked as the admin API checks it)")
    shipped = editor.input_value()
    editor.fill(shipped.replace("method: ama", "method: hourly", 1))
    page.get_by_label("Reason for the change").fill("a typo")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("alert")).to_contain_text("Not saved")
    expect(page.get_by_role("alert")).to_contain_text("method")
    editor.fill(shipped.replace("name: Medicare Part B", "name: Medicare Part B (CMS)", 1))
    page.get_by_label("Reason for the change").fill("the name billing uses")
    page.get_by_role("button", name="Save as a new version").click()
    expect(page.get_by_role("status")).to_contain_text("Saved the payer rules, version 2")
    expect(page.locator("h1")).to_contain_text("version 2")
    page.get_by_label("Compare version").select_option("1")
    page.get_by_label("with version").select_option("2")
    page.get_by_role("button", name="Compare").click()
    expect(page.locator("pre.diff .added")).to_contain_text("name: Medicare Part B (CMS)")
    shot(page, "table-diff")
    page.get_by_role("button", name="Roll back to version 1").click()
    expect(page.get_by_role("status")).to_contain_text("now version 3")
    expect(page.locator("pre.content")).not_to_contain_text("Medicare Part B (CMS)")
    nav.get_by_role("link", name="Audit log", exact=True).click()
    page.get_by_label("What kind").fill("payers")
    page.get_by_role("button", name="Filter").click()
    changes = page.get_by_role("table", name="Changes")
    expect(changes).to_contain_text("why: the name billing uses")
    expect(changes).to_contain_text("why: rollback to version 1")
    expect(changes).to_contain_text("imported from the shipped configuration at first start")
    shot(page, "audit")
