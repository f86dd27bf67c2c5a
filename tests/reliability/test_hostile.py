"""Hostile input, generated: schemathesis against our OpenAPI description with each role's
credentials, and hypothesis-made hook, notification and admin bodies. Zero 5xx.

The hand-picked hostile values that once gave 500s are in tests/web/test_hostile_input.py.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plugin.config.files import load_settings
from plugin.config.tokens import token_hash
from plugin.web.app import create_app
from tests import builders
from tests.web.conftest import hook_body, prefetch_of

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
