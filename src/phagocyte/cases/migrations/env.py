"""Alembic environment: run with the connection the case store passes in (no alembic.ini needed)."""

from __future__ import annotations

from alembic import context

from phagocyte.cases.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
