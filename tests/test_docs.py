"""Documentation checked by tests (datasette style): what exists must be documented."""

from __future__ import annotations

import re

from typer.main import get_command

from phagocyte.cli.app import app
from phagocyte.ingest.reader import REGISTRY, get_reader
from phagocyte.schema import EVENT_SCHEMA
from tests.conftest import REPO


def test_every_schema_field_is_in_docs_schema() -> None:
    doc = (REPO / "docs" / "schema.md").read_text()
    missing = [f.name for f in EVENT_SCHEMA if f"`{f.name}`" not in doc]
    assert not missing, f"add to docs/schema.md: {missing}"


def test_every_reader_has_a_source_page_linked_from_the_schema() -> None:
    get_reader("evtx")  # registers all
    doc = (REPO / "docs" / "schema.md").read_text()
    for name, cls in REGISTRY.items():
        module = cls.__module__.rsplit(".", 1)[-1]
        page = REPO / "docs" / "sources" / f"{module}.md"
        assert page.exists(), f"reader {name}: write {page.relative_to(REPO)}"
        assert f"sources/{module}.md" in doc, f"link docs/sources/{module}.md from docs/schema.md"


def test_every_command_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    commands = get_command(app).commands  # type: ignore[attr-defined]
    missing = [c for c in commands if not re.search(rf"phago {c}\b", readme)]
    assert not missing, f"document in README.md: {missing}"


def test_every_setting_is_in_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    config = (REPO / "src" / "phagocyte" / "config.py").read_text()
    names = set(re.findall(r'"(PHAGO_[A-Z_]+)"', config))
    assert names, "no settings found"
    assert not [n for n in names if n not in readme]
