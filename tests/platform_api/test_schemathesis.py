"""Schemathesis over the platform API's OpenAPI document, with the bearer token so writes are
exercised too: no generated request to any operation may get a server error (5xx)."""

from __future__ import annotations

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.platform_api.conftest import TOKEN, ApiServer

EXAMPLES = 25  # per operation


def test_no_server_errors(api: ApiServer) -> None:
    # the first registry read creates the home's MLflow database (migrations take seconds)
    assert httpx.get(f"{api.url}/api/ml/models/deployed", timeout=120).status_code == 200
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    tried: dict[str, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def no_5xx(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"},
                                   checks=[not_a_server_error], timeout=60)  # fmt: skip
            tried[case.operation.label] = tried.get(case.operation.label, 0) + 1

        no_5xx()
    assert all(n >= 1 for n in tried.values()) and len(tried) == len(operations), tried
