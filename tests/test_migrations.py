"""The Alembic migrations build exactly the schema the models describe, and can be undone and redone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, String, inspect, text
from sqlalchemy.engine import make_url

from models import Base
from workflows.db import make_engine
from workflows.schema import alembic_config, upgrade

from .conftest import PG_URL

TABLES = {"roles", "users", "user_roles", "deployments", "deployment_files", "instances", "steps", "tasks", "timers",
          "audit_events", "notifications", "outbox_emails", "api_tokens", "login_attempts", "audit_chains",
          "audit_anchors", "audit_anchor_entries"} | {"consultations"} | {"attachments"} | {"substitutions"} \
    | {"studio_drafts", "process_tests"} \
    | {"customers", "ownership_changes", "assignment_rules", "quotes", "contracts", "installments", "payments",
       "complaints"}


@pytest.fixture
def blank_engine(databases, tmp_path) -> Iterator[Engine]:
    """A database with nothing in it (not even the Alembic version table)."""
    if PG_URL:
        name = f"lvyue_mig_{uuid.uuid4().hex[:12]}"
        admin = databases._admin()
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        databases.made.append(name)
        url = make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'blank.db'}"
    engine = make_engine(url)
    yield engine
    engine.dispose()


def differences(engine: Engine, metadata: MetaData = Base.metadata) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, metadata)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def downgrade(engine: Engine, revision: str = "base") -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def head() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def test_upgrade_on_an_empty_database_matches_the_models(blank_engine):
    assert inspect(blank_engine).get_table_names() == []
    upgrade(blank_engine)
    assert set(inspect(blank_engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(blank_engine) == head()
    assert differences(blank_engine) == []


def test_the_comparison_would_see_a_drift(blank_engine):
    """Guards the test above: a model the migrations do not know about must show up as a difference."""
    upgrade(blank_engine)
    drifted = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["tasks"].append_column(Column("priority", Integer, nullable=True))
    drifted.tables["users"].c.team.type = String(10)
    found = differences(blank_engine, drifted)
    kinds = {(d[0] if isinstance(d, tuple) else d[0][0]) for d in found}
    assert "add_column" in kinds
    assert "modify_type" in kinds


def test_downgrade_to_base_and_upgrade_again(blank_engine):
    upgrade(blank_engine)
    downgrade(blank_engine)
    assert set(inspect(blank_engine).get_table_names()) <= {"alembic_version"}
    assert current_revision(blank_engine) is None
    upgrade(blank_engine)
    assert set(inspect(blank_engine).get_table_names()) == TABLES | {"alembic_version"}
    assert current_revision(blank_engine) == head()
    assert differences(blank_engine) == []
    # and once more is a no-op
    upgrade(blank_engine)
    assert current_revision(blank_engine) == head()


def test_task_team_is_backfilled_from_the_contract(blank_engine):
    """0004 copies each contract's team onto its task rows: a database that ran 0003 with contracts in it
    gets team queues that show them."""
    from workflows import config
    from workflows.runtime import Runtime
    from workflows.services import accounts, deployments, tasks

    from .conftest import FAST_HASH
    from .flow import Flow

    upgrade(blank_engine)
    rt = Runtime(blank_engine.url.render_as_string(hide_password=False), password_method=FAST_HASH)
    try:
        accounts.ensure_demo_users(rt)
        deployments.deploy_path(rt, config.bpmn_dir())
        Flow(rt)  # rep1, team east
        downgrade(blank_engine, "0003")
        upgrade(blank_engine)
        with blank_engine.connect() as conn:
            assert conn.execute(text("SELECT team FROM tasks")).scalars().all() == ["east"]
        assert tasks.list_tasks(rt, accounts.get_user(rt, "sup1"), "team").total == 1
    finally:
        rt.dispose()


def test_existing_events_are_chained_by_0005(blank_engine):
    """A database with history from before the hash chain gets its events chained in id order: the whole
    record verifies afterwards and new events follow on from the backfilled heads."""
    from workflows import config
    from workflows.runtime import Runtime
    from workflows.services import accounts, deployments, integrity

    from .conftest import FAST_HASH
    from .flow import Flow, quote

    upgrade(blank_engine)
    rt = Runtime(blank_engine.url.render_as_string(hide_password=False), password_method=FAST_HASH)
    try:
        accounts.ensure_demo_users(rt)
        deployments.deploy_path(rt, config.bpmn_dir())
        flow = Flow(rt)
        downgrade(blank_engine, "0004")
        upgrade(blank_engine)
        report = integrity.verify_all(rt)
        assert report.ok and report.events >= 3, report.summary()
        flow.act("prepare_quote", "rep1", quote())
        report = integrity.verify_all(rt)
        assert report.ok, report.summary()
    finally:
        rt.dispose()
