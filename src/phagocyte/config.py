"""Settings, read once from the environment with safe defaults.

Every limit that protects Phagocyte from hostile input lives here, so that it is documented in
one place and tests can lower it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from phagocyte.errors import ConfigError

__all__ = ["Limits", "Settings", "load_settings"]

_MiB = 1024 * 1024
_GiB = 1024 * _MiB


@dataclass(frozen=True)
class Limits:
    """Bounds on what one source may cost. A source over a limit is quarantined, not read."""

    max_record_bytes: int = 16 * _MiB
    """Longest single record (line, JSON document); longer ones are quarantined unread."""
    max_decompressed_bytes: int = 16 * _GiB
    """Most bytes one archive or compressed file may expand to."""
    max_ratio: float = 1000.0
    """Most decompressed bytes per compressed byte (zip bombs reach 10^6)."""
    ratio_grace_bytes: int = 64 * _MiB
    """The ratio is enforced only past this many decompressed bytes (tiny files compress well)."""
    max_archive_depth: int = 3
    """Archives inside archives, at most this deep."""
    max_archive_members: int = 100_000
    max_json_document_bytes: int = 512 * _MiB
    """A single JSON document (a JSON array export) is parsed whole; this bounds it."""
    batch_rows: int = 50_000
    """Rows per Arrow batch: bounds memory whatever the input size."""


@dataclass(frozen=True)
class Settings:
    home: Path
    limits: Limits = field(default_factory=Limits)
    cases_url: str | None = None
    """SQLAlchemy URL of the case store; default a SQLite file in the home folder."""
    api_rate: int = 100
    """API requests per second per token (bursts of twice that)."""
    api_max_body: int = 32 * _MiB
    """Largest API request body (an NDJSON ingest batch)."""

    rules: tuple[Path, ...] = ()
    """Sigma rule files or folders (`PHAGO_RULES`, separated by `:`); empty: the default rule path."""

    @property
    def cases_db(self) -> str:
        return self.cases_url or f"sqlite:///{self.home / 'cases.db'}"

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def rules_dir(self) -> Path:
        """Where `phago rules sync` puts the SigmaHQ release (part of the default rule path)."""
        return self.home / "rules"


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not an integer") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def load_settings(home: str | os.PathLike[str] | None = None) -> Settings:
    """Settings from `home` or `$PHAGO_HOME` (default `./.phago`) and `PHAGO_MAX_*` variables."""
    root = Path(home or os.environ.get("PHAGO_HOME") or ".phago").expanduser().absolute()
    d = Limits()
    limits = Limits(
        max_record_bytes=_int_env("PHAGO_MAX_RECORD_BYTES", d.max_record_bytes),
        max_decompressed_bytes=_int_env("PHAGO_MAX_DECOMPRESSED_BYTES", d.max_decompressed_bytes),
        max_ratio=float(_int_env("PHAGO_MAX_RATIO", int(d.max_ratio))),
        batch_rows=_int_env("PHAGO_BATCH_ROWS", d.batch_rows),
    )
    rules = tuple(Path(p).expanduser() for p in os.environ.get("PHAGO_RULES", "").split(os.pathsep) if p)
    return Settings(home=root, limits=limits, rules=rules, cases_url=os.environ.get("PHAGO_CASES_URL") or None,
                    api_rate=_int_env("PHAGO_API_RATE", 100), api_max_body=_int_env("PHAGO_API_MAX_BODY", 32 * _MiB))
