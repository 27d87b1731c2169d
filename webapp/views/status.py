"""Status blueprint: what is deployed and how much work waits per role; a health check for probes."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, render_template
from flask_login import login_required
from sqlalchemy import func, select, text

from models import Deployment, Instance, TaskRow

from .common import page_arg

bp = Blueprint("status", __name__)


def _rt():
    return current_app.extensions["lvyue"]


@bp.get("/status")
@login_required
def index():
    page = page_arg()
    per_page = 20
    with _rt().read() as s:
        deployments = s.execute(select(Deployment.process_key, Deployment.version, Deployment.name,
                                       Deployment.deployed_at).order_by(Deployment.process_key,
                                                                        Deployment.version.desc())
                                .offset((page - 1) * per_page).limit(per_page)).all()
        total = s.scalar(select(func.count()).select_from(Deployment)) or 0
        queues = s.execute(select(TaskRow.role, func.count()).where(TaskRow.status == "open")
                           .group_by(TaskRow.role).order_by(TaskRow.role)).all()
        running = s.scalar(select(func.count()).select_from(Instance).where(Instance.status == "running"))
    return render_template("status.html", deployments=deployments, queues=queues, running=running,
                           page=page, pages=max(1, -(-total // per_page)))


@bp.get("/healthz")
def healthz():
    with _rt().read() as s:
        s.execute(text("SELECT 1"))
    return jsonify(status="ok")
