"""Hostile input, generated: schemathesis against our OpenAPI description with each role's
credentials, and hypothesis-made hook, notification and admin bodies. Zero 5xx.

The hand-picked hostile values that once gave 500s are in tests/web/test_hostile_input.py.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import responses
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin.config.files import load_settings
from plugin.config.tokens import token_hash
from plugin.web.app import create_app
from tests import builders
from tests.helpers.hooks import capability_statement, hook_body, prefetch_of

ROLES = {
    "admin": {"Authorization": "Bearer admin-token"},
    "billing": {"Authorization": "Bearer billing-token"},
    "viewer": {"Authorization": "Bearer viewer-token"},
    "nobody": {},
}
TOKENS = ",".join(
    [
        f"ann:admin=sha256:{token_hash('admin-token')}",
        f"bill=sha256:{token_hash('billing-token')}",
        f"val:viewer=sha256:{token_hash('viewer-token')}",
    ]
)
SECRET = {"X-TheraCharge-Secret": "s3cret"}
# How many generated bodies per test: a quick run in `make test`, many more in `make
# reliability` (THERACHARGE_HOSTILE_EXAMPLES=3000).
EXAMPLES = int(os.environ.get("THERACHARGE_HOSTILE_EXAMPLES", "300"))


def _app(folder: Path) -> Any:
    env = {
        "THERACHARGE_INSTANCE_DIR": str(folder),
        "THERACHARGE_API_TOKENS": TOKENS,
        "THERACHARGE_CDS_AUTH": "disabled",  # reach the hook itself (the JWT checks are tested)
        "THERACHARGE_NOTIFICATION_SECRET": "s3cret",
        "THERACHARGE_LEDGER_KEEP_PREVIEW": "true",
    }
    return create_app(load_settings(env), start_worker=False)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _app(tmp_path_factory.mktemp("hostile"))


def _server_error(answer: Any) -> bool:
    """A 5xx other than the one this app means: it has no EHR, so the charges API answers
    503 "no EHR configured" by design (README: the EHR connection)."""
    if answer.status_code < 500:
        return False
    deliberate = answer.status_code == 503 and "no EHR configured" in answer.text
    return not deliberate


def _operations() -> list[Any]:
    """Every operation our /openapi.json describes (the schema loaded from a throwaway app)."""
    import tempfile

    loaded = schemathesis.openapi.from_wsgi("/openapi.json", _app(Path(tempfile.mkdtemp())))
    return [result.ok() for result in loaded.get_all_operations()]


OPERATIONS = _operations()


def test_the_description_has_the_operations_we_serve() -> None:
    described = {(op.method.upper(), op.path) for op in OPERATIONS}
    assert ("POST", "/cds-services/{service_id}") in described
    assert ("GET", "/admin/api/v1/notifications") in described
    assert len(described) >= 25


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_no_operation_answers_a_server_error_to_any_role(app: Any, operation: Any) -> None:
    """schemathesis makes requests from the operation's description (paths, query, bodies);
    each is sent as every role and as nobody, to the module's app."""

    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def each(case: Any) -> None:
        for role in ROLES.values():
            answer = case.call(app=app, headers={**role, **SECRET})
            assert not _server_error(answer), (case.method, case.formatted_path, answer.text[:300])

    each()


# --- hypothesis-made bodies ------------------------------------------------------------------

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document (dict keys and list indexes), for mutations."""
    found = [prefix]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += _paths(inner, (*prefix, index))
    return found


def _replace(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    changed = copy.deepcopy(document)
    target = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


VALID = hook_body(
    prefetch_of(
        builders.complete_record(
            builders.procedure("p1", "97110", minutes=33),
            builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
        )
    )
)
PLACES = _paths(VALID)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(place=st.sampled_from(PLACES), value=JSON)
def test_a_hook_body_with_any_value_anywhere_is_never_a_server_error(
    app: Any, place: tuple[Any, ...], value: Any
) -> None:
    body = _replace(VALID, place, value)
    answer = app.test_client().post(
        "/cds-services/therapy-charges", data=json.dumps(body), content_type="application/json"
    )
    assert answer.status_code < 500, (place, value, answer.get_data(as_text=True)[:300])


@settings(max_examples=EXAMPLES * 2 // 3, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=JSON)
def test_any_json_to_any_body_route_is_never_a_server_error(app: Any, body: Any) -> None:
    client = app.test_client()
    admin = {**ROLES["admin"], **SECRET}
    for method, path in (
        ("POST", "/cds-services/therapy-charges"),
        ("POST", "/cds-services/therapy-charges/feedback"),
        ("PUT", "/notifications/fhir/Encounter/e1"),
        ("POST", "/notifications/fhir"),
        ("POST", "/admin/api/v1/mappings/try"),
        ("PUT", "/admin/api/v1/payers"),
        ("POST", "/admin/api/v1/payers/rollback"),
        ("PUT", "/admin/api/v1/mappings/hostile.json"),
        ("POST", "/admin/api/v1/mappings/local-example-ehr.json/rollback"),
    ):
        answer = client.open(
            path,
            method=method,
            data=json.dumps(body),
            content_type="application/json",
            headers=admin,
        )
        assert answer.status_code < 500, (method, path, body, answer.get_data(as_text=True)[:300])


# --- FHIR-shaped but hostile: the hook in direct mode and notifications, with an EHR ----------

EHR = "https://ehr.example.org/fhir"
# Dates at and past every boundary a date of service meets: the calendar's ends, days and
# months that do not exist, times past 24:00 and leap seconds, offsets past ±14:00, partial
# dates FHIR allows, digits that are not ASCII, and text that is no date at all.
HOSTILE_DATES = [
    "2026-13-45T99:99:00Z",
    "2026-02-30T09:00:00-05:00",
    "2026-11-02T24:00:00Z",
    "2026-12-31T23:59:60Z",
    "2026-11-02T09:00:00+99:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01",
    "9999-12-31T23:59:59Z",
    "9999-12-31",
    "0000-00-00",
    "2026",
    "2026-11",
    "２０２６-11-02T09:00:00Z",
    "-2026-11-02",
    "2026-11-02T09:00:00.1234567890123Z",
    "",
    "T",
]
HOSTILE = st.sampled_from(HOSTILE_DATES) | JSON


def _direct_app(folder: Path) -> Any:
    env = {
        "THERACHARGE_INSTANCE_DIR": str(folder),
        "THERACHARGE_CDS_AUTH": "disabled",
        "THERACHARGE_NOTIFICATION_SECRET": "s3cret",
        "THERACHARGE_FHIR_BASE_URL": EHR,
        "THERACHARGE_WRITE_MODE": "direct",
        "THERACHARGE_FHIR_RETRY_SECONDS": "0.1",
    }
    return create_app(load_settings(env), start_worker=False)


def _the_day() -> list[dict[str, Any]]:
    """A clean visit and the ChargeItems our own first run wrote for it (with the id and
    version the EHR gave them): what hostile values are put into."""
    record = builders.complete_record(
        builders.procedure("p1", "97110", minutes=33),
        builders.procedure("p2", "97140", "2026-11-02T09:40:00-05:00", 7),
    )
    return [*record, *_written_for(record)]


def _written_for(record: list[dict[str, Any]]) -> list[dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="theracharge-hostile-"))
    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as ehr:
            _serve(ehr, record)
            app = _direct_app(folder)
            assert _hook(app, record).status_code == 200
            (write,) = [c for c in ehr.calls if c.request.method == "POST"]
            bundle = json.loads(write.request.body)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    items = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ChargeItem"
    ]
    for n, item in enumerate(items):
        item.update(id=f"ci{n}", meta={"versionId": "1", "lastUpdated": "2026-11-02T12:00:00Z"})
    return items


def _serve(ehr: responses.RequestsMock, resources: list[Any]) -> None:
    """The EHR: every search answers with the day's resources (whatever their shape), the
    encounter's read with the encounter, a write with an empty transaction-response."""
    ehr.get(f"{EHR}/metadata", json=capability_statement())
    encounter = next(
        (r for r in resources if isinstance(r, dict) and r.get("resourceType") == "Encounter"),
        {"resourceType": "Encounter", "id": "e1"},
    )
    ehr.get(f"{EHR}/Encounter/e1", json=encounter)
    page = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }
    ehr.get(re.compile(re.escape(EHR) + r"/\w+\?.*"), json=page)
    ehr.post(
        re.compile(re.escape(EHR) + r"/?$"),
        json={"resourceType": "Bundle", "type": "batch-response", "entry": []},
    )


def _hook(app: Any, resources: list[Any]) -> Any:
    """The hook in direct mode, prefetching whatever the resources are (any shape)."""

    def of(kind: str) -> dict[str, Any]:
        entries = [
            {"resource": r}
            for r in resources
            if isinstance(r, dict) and r.get("resourceType") == kind
        ]
        return {"resourceType": "Bundle", "type": "searchset", "entry": entries}

    encounter = next(
        (r for r in resources if isinstance(r, dict) and r.get("resourceType") == "Encounter"),
        None,
    )
    body = hook_body(
        {
            "encounter": encounter,
            "procedures": of("Procedure"),
            "conditions": of("Condition"),
            "coverage": of("Coverage"),
            "chargeItems": of("ChargeItem"),
        },
        fhirServer=EHR,
    )
    return app.test_client().post(
        "/cds-services/therapy-charges", data=json.dumps(body), content_type="application/json"
    )


DAY = _the_day()
DAY_PLACES = [p for p in _paths(DAY) if p]  # every element of every resource, and each whole


@pytest.fixture(scope="module")
def direct_app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _direct_app(tmp_path_factory.mktemp("hostile-direct"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(place=st.sampled_from(DAY_PLACES), value=HOSTILE)
def test_a_hostile_value_anywhere_in_a_day_read_from_the_ehr_is_never_a_server_error(
    direct_app: Any, place: tuple[Any, ...], value: Any
) -> None:
    """The hook in direct mode reads the day from the EHR and writes it: the prefetch and the
    EHR's answers carry the same hostile day. A decision (200) or a 4xx naming what is wrong,
    with a JSON body; never a 500."""
    day = _replace(DAY, place, value)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as ehr:
        _serve(ehr, day)
        answer = _hook(direct_app, day)
    assert answer.status_code < 500, (place, value, answer.get_data(as_text=True)[:300])
    assert answer.is_json, (place, value)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(place=st.sampled_from(DAY_PLACES), value=HOSTILE)
def test_a_hostile_day_notified_is_recorded_and_processed_without_an_internal_error(
    direct_app: Any, place: tuple[Any, ...], value: Any
) -> None:
    """The Subscription's payload (the encounter) and the day the worker then reads carry the
    hostile value: the notification is answered < 500, and its processing ends done or with
    a reason of ours (an EHR or validation error), never an internal error."""
    from plugin.pipeline.tasks import next_due

    day = _replace(DAY, place, value)
    encounter = next(
        (r for r in day if isinstance(r, dict) and r.get("resourceType") == "Encounter"), None
    )
    state = direct_app.extensions["theracharge"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as ehr:
        _serve(ehr, day)
        answer = direct_app.test_client().put(
            "/notifications/fhir/Encounter/e1",
            data=json.dumps(encounter),
            content_type="application/json",
            headers=SECRET,
        )
        assert answer.status_code < 500, (place, value, answer.get_data(as_text=True)[:300])
        while (result := next_due(state)) is not None:
            assert result.status in ("done", "retry", "set-aside"), result
    errors = [n.last_error for n in state.store.notifications() if n.last_error]
    assert not any("internal error" in e for e in errors), (place, value, errors)
    with state.store.session() as session:  # the next example starts with an empty queue
        from plugin.store.models import Notification

        session.query(Notification).delete()


def _place(kind: str, *path: Any) -> tuple[Any, ...]:
    index = next(i for i, r in enumerate(DAY) if r["resourceType"] == kind)
    return (index, *path)


@pytest.mark.parametrize(
    ("place", "value"),
    [
        (_place("Encounter", "period", "start"), "2026-13-45T99:99:00Z"),
        (_place("Encounter", "period", "start"), "0001-01-01T00:00:00Z"),
        (_place("Encounter", "period", "start"), "9999-12-31T23:59:59Z"),
        (_place("Encounter", "period"), {"start": "9999-12-31", "end": "0001-01-01"}),
        (_place("ChargeItem", "meta", "versionId"), []),
        (_place("ChargeItem", "identifier"), True),
        (_place("Encounter", "diagnosis"), ["Condition/c1"]),
    ],
)
def test_the_values_that_once_crashed_a_direct_hook_are_answered(
    direct_app: Any, place: tuple[Any, ...], value: Any
) -> None:
    """Each gave a 500 before (a ValueError, an OverflowError, a TypeError, an
    AttributeError): now a decision or a 4xx with a JSON body."""
    day = _replace(DAY, place, value)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as ehr:
        _serve(ehr, day)
        answer = _hook(direct_app, day)
    assert answer.status_code < 500, answer.get_data(as_text=True)[:300]
    assert answer.is_json
