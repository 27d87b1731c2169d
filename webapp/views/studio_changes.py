"""Studio: the diff between two versions of a process, shown on the diagram, and migrating running instances
to a newer version (dry run first)."""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for

from workflows.services import migration
from workflows.services.errors import InvalidInput

from ..i18n import gettext as _
from .common import me, page_arg, rt, say
from .studio_access import owners_only

bp = Blueprint("studio_changes", __name__, url_prefix="/studio")
bp.before_request(owners_only)

KEY = "<string(maxlength=120):key>"


def _digits(raw: str, most: int) -> bool:
    """ASCII digits only (str.isdigit also takes '²', which int() refuses)."""
    return 0 < len(raw) <= most and raw.isascii() and raw.isdigit()


def _version_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw in (None, ""):
        return None
    if not _digits(raw, 9):
        raise InvalidInput(f"'{name}' must be a version number", {name: "must be a version number"})
    return int(raw)


def _diagram_state(markers: dict[str, str]) -> dict:
    labels = {"added": _("element added"), "removed": _("element removed"), "changed": _("element changed")}
    return {"current": [i for i, k in markers.items() if k in ("added", "removed")],
            "done": [i for i, k in markers.items() if k == "changed"],
            "labels": {i: labels[k] for i, k in markers.items()}, "focus": list(markers)}


@bp.get(f"/{KEY}/diff")
def diff(key: str):
    found = migration.changes(rt(), key, _version_arg("from"), _version_arg("to"))
    d = found.diff
    return render_template(
        "studio/changes_diff.html", key=key, found=found, say=say,
        old_state=_diagram_state(d.markers(found.old_bpmn_file, "old")),
        new_state=_diagram_state(d.markers(found.bpmn_file, "new")),
        bpmn_changes=[c for c in d.changes if c.file.endswith(".bpmn")],
        other_changes=[c for c in d.changes if not c.file.endswith(".bpmn")])


@bp.get(f"/{KEY}/versions/<int:version>/diagram.bpmn")
def diagram(key: str, version: int):
    xml = migration.diagram_xml(rt(), key, version)
    return Response(xml, mimetype="application/xml", headers={"Cache-Control": "private, max-age=300",
                                                               "X-Content-Type-Options": "nosniff"})


@bp.get(f"/{KEY}/migrate")
def migrate_dry_run(key: str):
    svc = rt()
    target = migration.target_deployment(svc, key, _version_arg("to"))
    run = migration.dry_run(svc, key, target, page_arg())
    return render_template("studio/changes_migrate.html", key=key, run=run, say=say,
                           args={"key": key, "to": run.to_version})


@bp.post(f"/{KEY}/migrate")
def migrate(key: str):
    svc = rt()
    to = request.form.get("to", "")
    if not _digits(to, 9):
        raise InvalidInput("'to' must be a version number", {"to": "must be a version number"})
    chosen, versions = [], {}
    for raw in request.form.getlist("instance"):
        iid, _sep, version = raw.partition(":")
        if not _digits(iid, 12) or not _digits(version, 12):
            raise InvalidInput("invalid instance choice", {"instance": "choose instances from the list"})
        chosen.append(int(iid))
        versions[int(iid)] = int(version)
    if not chosen:
        flash(_("Choose at least one instance to move."), "error")
        return redirect(url_for(".migrate_dry_run", key=key, to=to))
    report = migration.migrate(svc, me(), key, migration.target_deployment(svc, key, int(to)), chosen, versions)
    if report.moved:
        flash(_("%(n)s instance(s) moved to version %(v)s.", n=len(report.moved), v=report.to_version), "ok")
    if report.refused:
        flash(_("%(n)s instance(s) were not moved; see why below.", n=len(report.refused)), "error")
    return render_template("studio/changes_migrate.html", key=key, run=None, report=report, say=say,
                           args={"key": key, "to": report.to_version})
