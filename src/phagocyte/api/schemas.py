"""Request bodies of the API: strict (unknown fields are refused), bounded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["CommentIn", "IncidentPatch", "MergeIn", "RunIn", "SplitIn", "TokenIn", "VerdictIn"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IncidentPatch(_Strict):
    status: Literal["new", "in_progress", "resolved"] | None = None
    assignee: str | None = Field(default=None, max_length=100)


class CommentIn(_Strict):
    text: str = Field(min_length=1, max_length=20_000)


class VerdictIn(_Strict):
    verdict: Literal["true_positive", "false_positive", "benign_true_positive"]
    note: str | None = Field(default=None, max_length=5_000)


class MergeIn(_Strict):
    incident_ids: list[str] = Field(min_length=2, max_length=100)


class SplitIn(_Strict):
    alert_refs: list[str] = Field(min_length=1, max_length=10_000)


class RunIn(_Strict):
    dry_run: bool = True


class TokenIn(_Strict):
    role: Literal["viewer", "analyst", "admin"]
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._@ -]+$")
