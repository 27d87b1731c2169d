"""Studio: process tests saved next to a process, and replaying a draft against the recorded history."""

from __future__ import annotations

from flask import Blueprint, flash, jsonify, redirect, render_template, request, url_for

from workflows.services import process_tests, replay
from workflows.services.deployments import latest_deployment_id
from workflows.services.errors import DeployRefused, InvalidInput, NotFound

from ..i18n import gettext as _
from .common import me, page_arg, rt, say
from .studio_access import owners_only

bp = Blueprint("studio_tests", __name__, url_prefix="/studio")
bp.before_request(owners_only)


def _page(key: str, status: int = 200, errors: dict[str, str] | None = None, message: str | None = None,
          typed: dict[str, str] | None = None):
    latest_deployment_id(rt(), key)  # 404 for a process that is not deployed
    page = process_tests.list_tests(rt(), key, page=page_arg())
    target, package, problems = process_tests.target_package(rt(), key)
    results = {t.id: process_tests.last_result(package, t.name, t.case) for t in page.items}
    return render_template("studio/tests_index.html", key=key, page=page, results=results, target=target,
                           problems=problems, errors={k: say(v) for k, v in (errors or {}).items()},
                           message=say(message) if message else None, typed=typed or {}, say=say), status


@bp.get("/<key>/tests")
def tests(key: str):
    return _page(key)


@bp.post("/<key>/tests")
def save(key: str):
    latest_deployment_id(rt(), key)
    form = request.form
    try:
        if form.get("action") == "record":
            process_tests.record_from_instance(rt(), me(), key, form.get("business_key", ""), form.get("name"))
        else:
            process_tests.save_test(rt(), me(), key, form.get("name", ""), form.get("case", ""),
                                    replace=form.get("replace") == "1")
    except InvalidInput as err:
        return _page(key, 422, err.errors, err.message, {k: v for k, v in form.items() if k != "csrf_token"})
    flash(_("The test was saved."), "ok")
    return redirect(url_for(".tests", key=key))


@bp.post("/<key>/tests/<int:test_id>/delete")
def delete(key: str, test_id: int):
    try:
        name = process_tests.delete_test(rt(), me(), key, test_id)
        flash(_("Deleted the test %(name)s.", name=name), "ok")
    except NotFound:
        flash(_("That test was already deleted."), "info")
    return redirect(url_for(".tests", key=key))


@bp.post("/<key>/tests/run")
def run(key: str):
    latest_deployment_id(rt(), key)
    report = process_tests.run_saved(rt(), key)
    if report.problems:
        flash(_("The draft does not build, so no test ran: %(problems)s", problems="; ".join(report.problems[:3])),
              "error")
    elif not report.results:
        flash(_("There are no tests to run yet."), "info")
    elif report.failed:
        flash(_("%(failed)s of %(total)s tests failed.", failed=report.failed, total=len(report.results)), "error")
    else:
        flash(_("All %(total)s tests passed.", total=len(report.results)), "ok")
    return redirect(url_for(".tests", key=key, page=page_arg()))


@bp.post("/<key>/replay")
def replay_json(key: str):
    """The editor's replay: JSON ``{"files": {name: text}}`` in, the report out. Without files (a plain form
    post), the saved draft (else the latest version) is replayed."""
    try:
        body = request.get_json(silent=True) if request.is_json else None
    except RecursionError:  # nested deeper than the parser goes
        return jsonify({"error": "invalid", "message": say("the request body must be a JSON object")}), 400
    try:
        if body is not None:
            files = replay.files_as_bytes(body.get("files") if isinstance(body, dict) else None)
        else:
            files = replay.draft_or_latest(rt(), key).files
        report = replay.replay(rt(), key, files)
    except DeployRefused as err:
        return jsonify({"error": err.code, "message": say(err.message),
                        "problems": [str(p) for p in err.problems]}), 422
    except InvalidInput as err:
        return jsonify({"error": err.code, "message": say(err.message), "errors": err.errors}), 422
    out = report.to_json()
    out["summary"] = report.summary_zh if _chinese() else report.summary_en
    return jsonify(out)


def _chinese() -> bool:
    from ..i18n import get_language

    return get_language() == "zh-CN"


@bp.get("/<key>/replay")
def replay_page(key: str):
    target = replay.draft_or_latest(rt(), key)
    problems: list[str] = []
    report = None
    try:
        report = replay.replay(rt(), key, target.files)
    except DeployRefused as err:
        problems = [str(p) for p in err.problems]
    rows, pages = report.page(page_arg()) if report else ([], 1)
    return render_template("studio/tests_replay.html", key=key, target=target, report=report, rows=rows,
                           pages=pages, page_no=min(page_arg(), pages), problems=problems,
                           summary=(report.summary_zh if _chinese() else report.summary_en) if report else None,
                           say=say)
