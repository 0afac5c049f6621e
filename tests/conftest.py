"""Shared test helpers.

Real-data tests read ``../shared/data`` (unpacked once per machine into a cache folder); they skip
with a clear message when the data is absent and fail instead when ``PHAGO_REQUIRE_EVALDATA=1``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from phagocyte.config import Limits, Settings, load_settings
from phagocyte.ingest.pipeline import IngestReport, ingest
from phagocyte.store.parquet import ParquetStore

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "sample"
"""The bundled demo sample (`make demo`), written for this repository."""
SHARED_DATA = Path(os.environ.get("PHAGO_SHARED_DATA", REPO.parent / "shared" / "data"))
EVALDATA_CACHE = Path(os.environ.get("PHAGO_EVALDATA", Path.home() / ".cache" / "phagocyte-evaldata"))
FIXTURES = Path(__file__).parent / "fixtures"


def evaldata(name: str) -> Path:
    """Path of an unpacked public data set; skip (or fail under PHAGO_REQUIRE_EVALDATA=1)."""
    archive = SHARED_DATA / f"{name}.tar.gz"
    if not archive.exists():
        msg = f"evaluation data set {name!r} not found at {archive}"
        if os.environ.get("PHAGO_REQUIRE_EVALDATA") == "1":
            pytest.fail(msg + " (PHAGO_REQUIRE_EVALDATA=1)")
        pytest.skip(msg)
    if not (EVALDATA_CACHE / f".{name}.done").exists():
        subprocess.run([str(SHARED_DATA / "unpack"), str(EVALDATA_CACHE), name], check=True,
                       capture_output=True)
    root = EVALDATA_CACHE / ("scripts" if name in ("mpsd_powershell", "javascript") else name)
    assert root.exists(), f"{name} unpacked but {root} is missing"
    return root


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(tmp_path / "home")


@pytest.fixture
def store(settings: Settings) -> Iterator[ParquetStore]:
    with ParquetStore(settings.store_dir, writable=True) as s:
        yield s


def run_ingest(paths: list[Path | str], settings: Settings, **kw: object) -> tuple[IngestReport, ParquetStore]:
    """Ingest into a fresh writable store under `settings`; return the report and a reader store."""
    with ParquetStore(settings.store_dir, writable=True) as st:
        report = ingest([str(p) for p in paths], st, settings, **kw)  # type: ignore[arg-type]
    return report, ParquetStore(settings.store_dir)


def ingest_bytes(data: bytes, fmt: str, name: str = "in.log") -> tuple[IngestReport, object]:
    """Ingest `data` as one file named `name` with reader `fmt` in a throw-away home (the fuzz tests'
    unit of work); return the report and the number of rows stored."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / name
        f.write_bytes(data)
        report, store = run_ingest([f], load_settings(Path(d) / "home"), format=fmt)
        return report, rows(store, "select count(*) n from events")[0]["n"]


def small_limits(**kw: int | float) -> Limits:
    return Limits(**kw)  # type: ignore[arg-type]


def rows(store: ParquetStore, sql: str) -> list[dict[str, object]]:
    table: pa.Table = store.query(sql)
    return table.to_pylist()


def assert_event(event: dict[str, object], expected: dict[str, object]) -> None:
    """Every expected field has exactly the expected value (one message listing all differences)."""
    diffs = {k: (event.get(k), v) for k, v in expected.items() if event.get(k) != v}
    assert not diffs, "field mismatches (got, expected): " + repr(diffs)


def require_services() -> bool:
    """CI sets PHAGO_REQUIRE_SERVICES=1: a missing server (PostgreSQL, Chromium) fails instead of skipping."""
    return os.environ.get("PHAGO_REQUIRE_SERVICES") == "1"


def missing_service(msg: str) -> None:
    if require_services():
        pytest.fail(msg + " (PHAGO_REQUIRE_SERVICES=1)")
    pytest.skip(msg)


@pytest.fixture(params=["sqlite", "postgresql"])
def case_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty case database: a SQLite file, or a new schema on the PostgreSQL server named by
    PHAGO_TEST_PG_URL (`.ci/run` starts one; e.g. postgresql+psycopg://phago:phago@127.0.0.1/phago_test)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'cases.db'}"
        return
    base = os.environ.get("PHAGO_TEST_PG_URL")
    if not base:
        missing_service("PHAGO_TEST_PG_URL is not set: no PostgreSQL server to test against")
    import uuid

    from sqlalchemy import create_engine, text

    schema = "t_" + uuid.uuid4().hex[:12]
    engine = create_engine(str(base))
    with engine.begin() as con:
        con.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in str(base) else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with engine.begin() as con:
        con.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()
