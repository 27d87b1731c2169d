"""Compliance (合规审计): find any contract, read its whole record on its diagram, check that the record is
intact, report four-eyes cases, see where contracts wait, export — every read is itself recorded."""

from __future__ import annotations

import csv
import io
from datetime import date

from flask import Blueprint, Response, render_template, request, send_file, stream_with_context
from flask_login import login_required

from workflows.services import compliance, integrity
from workflows.services.compliance import ExplorerFilter
from workflows.services.errors import InvalidInput

from ..i18n import fmt_duration, get_language
from ..labels import action_label, role_label, stage_label, status_label
from .common import me, page_arg, rt

bp = Blueprint("compliance", __name__, url_prefix="/compliance")


@bp.before_request
@login_required
def _compliance_only():
    compliance.require_compliance(me())


def _date_arg(name: str) -> date | None:
    raw = (request.args.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"'{raw[:20]}' is not a date", {name: "must be a date such as 2026-11-29"}) from None


def _text_arg(name: str) -> str | None:
    return (request.args.get(name) or "").strip()[:100] or None


def _filter_arg() -> ExplorerFilter:
    """The explorer's filters from the query string (the heatmap takes the same)."""
    return ExplorerFilter(key=_text_arg("key"), customer=_text_arg("customer"),
                          status=request.args.get("status") if request.args.get("status") in compliance.STATUSES
                          else None, stage=_text_arg("stage"), started_from=_date_arg("from"),
                          started_to=_date_arg("to"), actor=_text_arg("actor"), role=_text_arg("role"))


@bp.get("/")
def explorer():
    f = _filter_arg()
    result = compliance.explore(rt(), me(), f, page=page_arg())
    args = {k: v for k, v in request.args.items() if k != "page" and v}
    return render_template("compliance/explorer.html", result=result, page=result.page, f=f, args=args)


@bp.get("/contracts/<key>")
def instance(key: str):
    view = compliance.instance_page(rt(), me(), key, page=page_arg(), language=get_language())
    d = view.dossier
    labels = {spec: _duration_label(spent, view.passes.get(spec, 1)) for spec, spent in d.durations.items()}
    state = {"done": sorted(d.done), "current": sorted(d.current), "flows": sorted(d.flows), "labels": labels,
             "focus": view.focus}
    return render_template("compliance/instance.html", v=view, d=d, state=state, now=rt().clock.now())


def _duration_label(spent, passes: int) -> str:
    return fmt_duration(spent) + (f" ×{passes}" if passes > 1 else "")


@bp.get("/contracts/<key>/diagram.bpmn")
def diagram(key: str):
    return Response(compliance.diagram_xml(rt(), me(), key), mimetype="application/xml")


@bp.get("/contracts/<key>/files/<path:filename>")
def definition(key: str, filename: str):
    name, content = compliance.deployment_file(rt(), me(), key, filename)
    mimetype = "application/json" if name.endswith(".json") else "application/xml"
    return send_file(io.BytesIO(content), mimetype=mimetype, as_attachment=True,
                     download_name=name.rsplit("/", 1)[-1])


@bp.get("/contracts/<key>/dossier.pdf")
def dossier_pdf(key: str):
    from workflows.services.dossier_pdf import render_pdf

    pdf = render_pdf(compliance.full_dossier(rt(), me(), key, language=get_language()), code_label)
    return send_file(io.BytesIO(pdf), mimetype="application/pdf", as_attachment=True,
                     download_name=f"dossier-{key}.pdf")


def code_label(kind: str, code: str) -> str:
    """The page's own labels for the codes a dossier prints (the PDF speaks like the pages)."""
    return {"status": status_label, "stage": stage_label, "action": action_label, "role": role_label}[kind](code)


def _csv_response(rows, filename: str) -> Response:
    def generate():
        buf = io.StringIO()
        writer = csv.writer(buf)
        buf.write("\ufeff")  # so that spreadsheet programs read the Chinese text as UTF-8
        writer.writerow(compliance.CSV_COLUMNS)
        for n, row in enumerate(rows, 1):
            writer.writerow(row)
            if n % 500 == 0:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/contracts/<key>/events.csv")
def instance_csv(key: str):
    return _csv_response(compliance.instance_events_csv(rt(), me(), key), f"events-{key}.csv")


@bp.get("/events.csv")
def period_csv():
    start, end = _date_arg("from"), _date_arg("to")
    if start is None or end is None:
        raise InvalidInput("a period is needed", {"from": "give both dates of the period"})
    rows = compliance.period_events_csv(rt(), me(), start, end)
    return _csv_response(rows, f"events-{start.isoformat()}-{end.isoformat()}.csv")


@bp.get("/four-eyes")
def four_eyes():
    report = compliance.four_eyes_report(rt(), me(), page=page_arg())
    return render_template("compliance/four_eyes.html", page=report)


@bp.get("/heatmap")
def heatmap():
    process_key = _text_arg("process") or "quote_to_cash"
    version = request.args.get("version", type=int)
    f = _filter_arg()
    heat = compliance.heatmap(rt(), me(), process_key, version, f)
    state = {"heat": {c.spec_id: round(c.heat, 3) for c in heat.cells},
             "labels": {c.spec_id: f"{fmt_duration(c.median)} / {fmt_duration(c.p90)}" for c in heat.cells}}
    args = {k: v for k, v in request.args.items() if v}
    return render_template("compliance/heatmap.html", heat=heat, state=state, args=args, f=f)


@bp.get("/integrity")
def integrity_page():
    return render_template("compliance/integrity.html", report=None, key=None,
                           anchor=integrity.latest_anchor(rt()))


@bp.post("/integrity")
def verify():
    key = (request.form.get("key") or "").strip()[:120] or None
    digest = (request.form.get("digest") or "").strip()[:64] or None
    report = compliance.verify(rt(), me(), key, digest)
    return render_template("compliance/integrity.html", report=report, key=key, digest=digest,
                           anchor=integrity.latest_anchor(rt()))


@bp.get("/access")
def access():
    return render_template("compliance/access.html", page=compliance.access_log(rt(), me(), page=page_arg()))


@bp.get("/heatmap/diagram.bpmn")
def heatmap_xml():
    version = request.args.get("version", type=int)
    if version is None:
        raise InvalidInput("no version", {"version": "which process version"})
    return Response(compliance.version_xml(rt(), me(), version), mimetype="application/xml")
