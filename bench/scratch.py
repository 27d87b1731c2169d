"""A throwaway PostgreSQL database for one benchmark run: created (empty, or as a copy of another scratch
database that nobody is connected to), handed out as a URL, dropped afterwards."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

PG_ADMIN = os.environ.get("LVYUE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


@contextlib.contextmanager
def scratch_postgres(prefix: str, template: str | None = None) -> Iterator[str]:
    db = f"{prefix}_{uuid.uuid4().hex[:8]}"
    copy_of = f' TEMPLATE "{make_url(template).database}"' if template else ""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db}"{copy_of}'))
        try:
            yield make_url(PG_ADMIN).set(database=db).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    finally:
        admin.dispose()
