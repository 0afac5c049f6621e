"""Garbage into every parser of this layer: playbook YAML, intel feeds, NDJSON bodies. Clear errors, no crash."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import HTTPException
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phagocyte.api.body import ndjson
from phagocyte.respond.intel import LocalIntel
from phagocyte.respond.playbooks import load_playbooks

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                     max_leaves=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_playbook_loader_never_crashes(tmp_path: Path, raw: bytes) -> None:
    (tmp_path / "p.yml").write_bytes(raw)
    books, errors = load_playbooks([tmp_path])
    assert len(books) + len(errors) <= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_json)
def test_intel_loader_never_crashes(tmp_path: Path, doc: object) -> None:
    (tmp_path / "f.json").write_text(json.dumps(doc))
    intel = LocalIntel([tmp_path])
    assert isinstance(intel.lookup({"source.ip": ["1.2.3.4"], "weird": [None, 3]}), list)


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=3000))
def test_ndjson_body_is_parsed_or_refused_with_a_line_number(body: bytes) -> None:
    try:
        docs = ndjson(body, max_lines=50)
    except HTTPException as exc:
        assert exc.status_code in (413, 422) and ("line" in str(exc.detail) or "lines" in str(exc.detail))
    else:
        assert all(isinstance(d, dict) for d in docs)


def test_huge_playbook_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big.yml").write_text("name: big\nsteps:\n" + "  - {id: a, action: enrich}\n" * 20_000)
    books, errors = load_playbooks([tmp_path])
    assert not books and "larger than" in errors[0]


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    pairs = zip("abcdefgh", "bcdefghi", strict=True)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    bomb += "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in pairs)
    (tmp_path / "bomb.yml").write_text(bomb + "name: bomb\nsteps: []\n")
    books, errors = load_playbooks([tmp_path])
    assert not books and "aliases are not accepted" in errors[0]


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    (tmp_path / "deep.yml").write_text("name: deep\nsteps: " + "[" * 5000 + "]" * 5000 + "\n")
    books, errors = load_playbooks([tmp_path])
    assert not books and "deeper" in errors[0]
