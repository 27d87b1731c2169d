"""One contract's compliance dossier as plain data: what the instance page, the PDF and the CSV all show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class DossierEvent:
    seq: int
    at: datetime
    actor: str
    role: str | None
    action: str
    spec_id: str | None
    step_name: str | None  # the BPMN element's name ("Supervisor review / 主管审核"), when the event has one
    data: dict[str, Any]
    hash: str


@dataclass(frozen=True)
class Decision:
    """One completed user task: who decided, when, in which role, with which inputs."""

    at: datetime
    actor: str
    role: str | None
    step_name: str
    spec_id: str
    inputs: dict[str, Any]
    changes: dict[str, Any]  # key -> {"old": ..., "new": ...}
    effects: dict[str, Any] = field(default_factory=dict)  # what scripts and decision tables set next, same form


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    events: int
    message: str  # "intact" or where and how the chain breaks


@dataclass
class Dossier:
    business_key: str
    process_key: str
    process_name: str
    deployment_id: int
    deployment_version: int
    status: str
    stage: str | None
    customer_name: str | None
    amount: Decimal | None
    team: str | None
    started_by: str | None
    started_at: datetime
    completed_at: datetime | None
    bpmn_xml: bytes  # the main BPMN file of the deployment the instance runs on
    done: set[str]  # BPMN element ids on the path taken (finished)
    current: set[str]  # element ids of open tasks
    flows: set[str]  # sequence flow ids on the path taken
    durations: dict[str, timedelta]  # element id -> time spent there (summed over passes)
    events: list[DossierEvent]
    decisions: list[Decision]
    data: dict[str, Any]  # the instance's current data
    chain: ChainCheck
    generated_at: datetime
    generated_by: str
    language: str = "en"  # "en" or "zh"
    names: dict[str, str] = field(default_factory=dict)  # element id -> name
