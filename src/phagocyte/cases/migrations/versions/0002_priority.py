"""Queue order in an index: `priority` (0 escalate, 1 monitor, 2 auto_close) with score, so the incident
list reads the first page from an index instead of sorting every incident (p99 with 100,000 incidents).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.execute("UPDATE incidents SET priority = CASE disposition WHEN 'escalate' THEN 0 WHEN 'monitor' THEN 1 "
               "ELSE 2 END")
    op.create_index("ix_incidents_queue", "incidents", ["priority", sa.text("score DESC"), "id"])
    op.create_index("ix_incidents_status_queue", "incidents", ["status", "priority", sa.text("score DESC"), "id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_status_queue", "incidents")
    op.drop_index("ix_incidents_queue", "incidents")
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("priority")
