"""Every endpoint refuses the unauthenticated and the under-privileged (generated from the route table)."""

from __future__ import annotations

import re

import pytest

from phagocyte.api.app import route_roles
from phagocyte.cases.service import ROLES
from tests.api.conftest import Api


def _url(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_api_route_declares_a_role(sqlite_api: Api) -> None:
    routes = [r for r in route_roles(sqlite_api.app) if r[1].startswith("/api/")]
    assert len(routes) >= 20
    assert not [r for r in routes if r[2] is None], "API routes without a role requirement"


def test_unauthenticated_and_wrong_role_requests_are_refused_everywhere(api: Api) -> None:
    checked = 0
    for method, path, role in route_roles(api.app):
        if not path.startswith("/api/"):
            continue
        url = _url(path)
        assert api.client.request(method, url).status_code == 401, f"{method} {path} without a token"
        bad = {"Authorization": "Bearer phago_not-a-real-token"}
        assert api.client.request(method, url, headers=bad).status_code == 401, f"{method} {path} bad token"
        assert role is not None
        for lesser in ROLES[: ROLES.index(role)]:
            r = api.client.request(method, url, headers=api.h(lesser))
            assert r.status_code == 403, f"{method} {path} as {lesser}: {r.status_code}"
        checked += 1
    assert checked >= 20


def test_console_pages_need_a_login(sqlite_api: Api) -> None:
    c = sqlite_api.client
    for method, path, _role in route_roles(sqlite_api.app):
        if path.startswith("/api/") or path in ("/login", "/logout"):
            continue
        r = c.request(method, _url(path), follow_redirects=False, data={"csrf": "x"})
        if method == "GET":
            assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
        else:
            assert r.status_code in (401, 422), f"{method} {path}: {r.status_code}"


def test_console_forms_need_the_csrf_token(sqlite_api: Api) -> None:
    c = sqlite_api.client
    c.cookies.set("phago_token", sqlite_api.tokens["analyst"])
    r = c.post("/incidents/x/comment", data={"csrf": "forged", "text": "hi"}, follow_redirects=False)
    assert r.status_code == 403


def test_viewer_cannot_act_in_the_console(sqlite_api: Api) -> None:
    from phagocyte.web.console import _csrf

    c = sqlite_api.client
    tok = sqlite_api.tokens["viewer"]
    c.cookies.set("phago_token", tok)
    r = c.post("/incidents/x/verdict", data={"csrf": _csrf(tok), "verdict": "true_positive"}, follow_redirects=False)
    assert r.status_code == 403


def test_rate_limit(tmp_path: object) -> None:
    from pathlib import Path

    from tests.api.conftest import make_api

    api = make_api(f"sqlite:///{Path(str(tmp_path)) / 'c.db'}", Path(str(tmp_path)) / "h", api_rate=2)
    codes = [api.client.get("/api/me", headers=api.h("viewer")).status_code for _ in range(12)]
    assert codes[0] == 200 and 429 in codes


@pytest.mark.parametrize("token", ["", "x" * 500, "phago_" + "A" * 43])
def test_odd_tokens_are_refused(sqlite_api: Api, token: str) -> None:
    assert sqlite_api.client.get("/api/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_login_rejects_bad_tokens_and_open_redirects(sqlite_api: Api) -> None:
    c = sqlite_api.client
    assert c.post("/login", data={"token": "nope"}).status_code == 401
    r = c.post("/login", data={"token": sqlite_api.tokens["viewer"], "next": "//evil.example/"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
