"""The OpenAPI document holds: schemathesis sends what it describes (and more) to a real server, and every answer
is one the document declares, never a server error. The event stream (it stays open) is tested on its own."""

from __future__ import annotations

import httpx
import schemathesis
from conftest import Served
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def test_every_answer_is_one_the_document_declares(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/api/v1/openapi.json")
    operations = [result.ok() for result in schema.exclude(path_regex=r".*/events$").get_all_operations()]
    assert len(operations) == 11
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=15,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        def answers_as_declared(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=served.auth("alice"), checks=CHECKS)

        answers_as_declared()


def test_the_openai_compatible_endpoints_answer_as_their_document_declares(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.url}/v1/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {o.label for o in operations} == {"GET /models", "POST /chat/completions"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def answers_as_declared(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=served.auth("bob"), checks=CHECKS)

        answers_as_declared()


def test_the_document_names_every_route_and_the_token_scheme(served: Served) -> None:
    doc = httpx.get(f"{served.url}/api/v1/openapi.json", timeout=10).json()
    assert doc["servers"] == [{"url": "/api/v1"}]
    assert set(doc["paths"]) == {
        "/teams",
        "/conversations",
        "/conversations/{conversation_id}",
        "/conversations/{conversation_id}/messages",
        "/conversations/{conversation_id}/stop",
        "/conversations/{conversation_id}/approvals/{request_id}",
        "/conversations/{conversation_id}/questions/{question_id}",
        "/conversations/{conversation_id}/escalations/{escalation_id}",
        "/conversations/{conversation_id}/audit",
        "/conversations/{conversation_id}/files/{name}",
        "/conversations/{conversation_id}/events",
    }
    assert doc["components"]["securitySchemes"]["token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token of a parley user: `parley tokens create USER` prints one.",
    }
