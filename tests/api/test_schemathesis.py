"""Schemathesis against our own OpenAPI 3.1 spec: requests generated for every operation (sent as admin,
so they reach the handlers) never cause a server error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.api.conftest import make_api


def test_no_server_error_on_any_operation(tmp_path: Path) -> None:
    api = make_api(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / "h", api_rate=100_000)
    api.app.state.cases.import_incidents([{"id": "inc-1", "score": 0.5, "disposition": "escalate",
                                           "alert_refs": ["a:1", "a:2"]}], "t")
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    auth = {"Authorization": f"Bearer {api.tokens['admin']}"}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 20
    failures: list[str] = []
    statuses: list[int] = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call(headers=auth)
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        check()
    assert not failures, failures
    assert sum(200 <= s < 300 for s in statuses) >= 20 and 401 not in statuses  # handlers were really reached
