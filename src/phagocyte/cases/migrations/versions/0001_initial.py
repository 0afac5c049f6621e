"""Initial case store: incidents, comments, audit actions, API tokens, playbook runs.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("disposition", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("assignee", sa.String(100)),
        sa.Column("verdict", sa.String(32)),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("first_seen", _TS),
        sa.Column("last_seen", _TS),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("entities", sa.JSON, nullable=False),
        sa.Column("tactics", sa.JSON, nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("alert_refs", sa.JSON, nullable=False),
        sa.Column("evidence", sa.JSON, nullable=False),
        sa.Column("merged_into", sa.String(64), sa.ForeignKey("incidents.id")),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
        sa.Column("resolved", _TS),
    )
    for col in ("score", "disposition", "status", "last_seen"):
        op.create_index(f"ix_incidents_{col}", "incidents", [col])
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(64), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("author", sa.String(100), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_comments_incident_id", "comments", ["incident_id"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(64)),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.JSON, nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    for col in ("incident_id", "action", "at"):
        op.create_index(f"ix_actions_{col}", "actions", [col])
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", _TS, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
    )
    op.create_table(
        "playbook_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("playbook", sa.String(100), nullable=False),
        sa.Column("incident_id", sa.String(64), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("steps", sa.JSON, nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("approved_by", sa.String(100)),
        sa.Column("created", _TS, nullable=False),
        sa.Column("updated", _TS, nullable=False),
    )
    op.create_index("ix_playbook_runs_incident_id", "playbook_runs", ["incident_id"])


def downgrade() -> None:
    for table in ("playbook_runs", "tokens", "actions", "comments", "incidents"):
        op.drop_table(table)
