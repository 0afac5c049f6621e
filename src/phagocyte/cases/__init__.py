"""Cases: the incidents analysts work on, their verdicts, comments and a full audit trail.

The case store is a port (`CaseStore` in `service.py`) over SQLAlchemy, so the same code runs on
SQLite (embedded default, zero set-up) and PostgreSQL (teams); the schema is managed by Alembic.
"""
