"""Display names for codes the engine stores (roles, stages, audit actions), in the current language."""

from __future__ import annotations

from flask import Flask, current_app

from workflows.bilingual import name_in
from workflows.services.accounts import ROLES
from workflows.services.kpis import DASHBOARD_ROLES

from .i18n import get_language
from .i18n import gettext as _

_ROLE_NAMES = {code: (en, zh) for code, en, zh in ROLES}


def N_(message: str) -> str:  # noqa: N802 - marks a message for extraction; translated where shown
    return message


# msgids, so the extractor and the catalog test see them
_STAGES = {
    "quote": N_("Quote"), "approval": N_("Approval"), "contract": N_("Contract"), "delivery": N_("Delivery"),
    "collection": N_("Collection"), "after_sales": N_("After-sales"), "done": N_("Done"),
}
_ACTIONS = {
    "start": N_("started"), "claim": N_("claimed"), "unclaim": N_("released"), "reassign": N_("reassigned"),
    "complete": N_("completed"), "cancel": N_("cancelled"), "timer": N_("timer fired"),
    "escalation": N_("escalated"), "timer_error": N_("timer failed"), "return": N_("returned to its author"),
    "four_eyes_override": N_("overrode the four-eyes rule"), "viewed": N_("viewed"), "deploy": N_("deployed"),
    "remind": N_("sent a reminder about"),
    "substitute": N_("handed to a substitute"), "substitute_end": N_("handed back from a substitute"),
    "away_set": N_("set a time away"), "away_cancel": N_("cancelled a time away"),
    "attach": N_("attached a file to"),
    "opinion_asked": N_("asked for opinions on"), "opinion_answered": N_("gave an opinion on"),
    "opinion_withdrawn": N_("withdrew a question on"), "countersign": N_("approved and added an approver to"),
    "withdraw": N_("withdrew"), "return_to_step": N_("returned the contract from"),
    "migrate": N_("moved to a newer process version"), "rollback": N_("rolled back a process version"),
    "process_test_saved": N_("saved a process test"), "process_test_deleted": N_("deleted a process test"),
    "amend": N_("amended the contract"), "customer_registered": N_("registered a customer"),
    "assignment_rule": N_("changed the customer assignment rule"),
}
_STATUSES = {"open": N_("open"), "completed": N_("completed"), "cancelled": N_("cancelled"), "running": N_("running"),
             "error": N_("error")}


def role_label(code: str) -> str:
    en, zh = _ROLE_NAMES.get(code, (code, code))
    return zh if get_language() == "zh-CN" else en


def stage_label(stage: str | None) -> str:
    return _(_STAGES[stage]) if stage in _STAGES else (stage or "")


def action_label(action: str) -> str:
    return _(_ACTIONS[action]) if action in _ACTIONS else action


def status_label(status: str) -> str:
    return _(_STATUSES[status]) if status in _STATUSES else status


def bilingual(name: str | None) -> str:
    """A BPMN name written "English / 中文", in the current language."""
    return name_in(name, get_language())


_RISKS = {"low": N_("Low"), "medium": N_("Medium"), "high": N_("High")}
_RECORD_STATUSES = {"in_review": N_("in review"), "approved": N_("approved"), "rejected": N_("rejected"),
                    "revised": N_("revised"), "drafted": N_("drafted"), "signed": N_("signed"),
                    "amending": N_("amending"), "delivered": N_("delivered"), "fulfilled": N_("fulfilled"),
                    "cancelled": N_("cancelled")}


def record_status(value: str | None) -> str:
    return _(_RECORD_STATUSES[value]) if value in _RECORD_STATUSES else (value or "")


def risk_label(value: str | None) -> str:
    return _(_RISKS[value]) if value in _RISKS else (value or "")


def actor_label(actor: str) -> str:
    return _("System") if actor in ("worker", "system", "web-worker") else actor


def init_app(app: Flask) -> None:
    app.jinja_env.filters["bi"] = bilingual
    @app.context_processor
    def _labels():
        return {"role_label": role_label, "stage_label": stage_label, "action_label": action_label,
                "status_label": status_label, "risk_label": risk_label, "record_status": record_status,
                "actor_label": actor_label,
                "url_endpoints": current_app.view_functions, "dashboard_roles": DASHBOARD_ROLES}
