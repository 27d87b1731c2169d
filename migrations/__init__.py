"""Alembic migrations for Lvyue's schema (run through ``workflows.schema``)."""
