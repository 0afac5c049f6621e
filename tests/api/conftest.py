"""An API app over a fresh case database (SQLite and PostgreSQL) and store, with one token per role."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from phagocyte.api.app import create_app
from phagocyte.cases.service import CaseStore
from phagocyte.config import Settings, load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    settings: Settings
    app: Any

    def h(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def make_api(url: str, home: Path, **env: Any) -> Api:
    settings = load_settings(home)
    settings = Settings(home=settings.home, limits=settings.limits, cases_url=url, **env)
    app = create_app(settings, cases=CaseStore(url))
    tokens = {r: app.state.cases.create_token(r, f"{r}-user") for r in ("viewer", "analyst", "admin")}
    return Api(TestClient(app), tokens, settings, app)


@pytest.fixture
def api(case_url: str, tmp_path: Path) -> Api:
    return make_api(case_url, tmp_path / "home")


@pytest.fixture
def sqlite_api(tmp_path: Path) -> Api:
    return make_api(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "home")
