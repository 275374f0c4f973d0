"""The OpenAPI spec describes every answer the server gives: schemathesis generates requests from
it (valid and invalid, bounded in examples) against a real `rag serve`, and checks that no answer
is a 500 and that each status, content type and body is one the spec declares."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode

pytestmark = pytest.mark.slow

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
EXAMPLES = 40  # per operation and mode: ~500 requests in all, under a minute


def _operations(server: httpx.Client) -> list[schemathesis.APIOperation]:
    schema = schemathesis.openapi.from_url(f"{server.base_url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_one_the_spec_declares(server: httpx.Client, mode: GenerationMode) -> None:
    operations = _operations(server)
    assert {op.path for op in operations} >= {"/search", "/health", "/documents/{doc_id}", "/admin/index"}
    tested: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def check(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=str(server.base_url), checks=CHECKS, timeout=60)

        try:
            check()
        except Unsatisfiable:  # nothing invalid to send (no parameters, or only free-text ones)
            assert mode is GenerationMode.NEGATIVE, operation.path
            continue
        tested.append(operation.path)
    assert len(tested) >= (3 if mode is GenerationMode.NEGATIVE else len(operations)), tested
