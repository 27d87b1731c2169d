"""Studio: the processes and their versions, the draft editor (BPMN, DMN, forms), checks, deploy, rollback,
and upload/download for desktop modelers."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    Response,
    flash,
    get_template_attribute,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from workflows.engine.package import Problem
from workflows.services import studio
from workflows.services.accounts import ROLES
from workflows.services.errors import Conflict, DeployRefused, InvalidInput

from .. import formrender
from ..i18n import get_language
from ..i18n import gettext as _
from ..labels import _STAGES, stage_label
from .common import me, page_arg, rt, say
from .studio_access import OWNER_ROLE, owners_only

bp = Blueprint("studio", __name__, url_prefix="/studio")
bp.before_request(owners_only)

KEY = "<string(maxlength=120):key>"
# the posts that carry a whole draft (JSON-escaped, so up to twice its bytes) or uploaded files
BIG_POSTS = {"studio.save", "studio.check", "studio.upload", "studio_tests.replay_json"}


@bp.app_url_value_preprocessor
def _draft_limit(endpoint: str | None, values: object) -> None:
    """Before CSRF reads the body: a process owner's draft may be larger than other requests' 1 MB."""
    if endpoint in BIG_POSTS and request.method == "POST" and current_user.is_authenticated \
            and OWNER_ROLE in me().roles:
        request.max_content_length = 2 * studio.MAX_PACKAGE_BYTES + 2**20


def problem_dict(p: Problem) -> dict:
    return {"severity": p.severity, "message": say(p.message), "file": p.file, "line": p.line,
            "element_id": p.element_id, "element_name": p.element_name}


def _json_body() -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested deeper than the parser goes
        body = None
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object", {})
    return body


def _json_text(value: object) -> str:
    """A JSON document the editor sent as text (what the owner typed) or as an object."""
    if value is None or value == "":
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _json_error(err: Exception, status: int):
    fields = {k: say(v) for k, v in getattr(err, "errors", {}).items()}
    return jsonify({"error": say(str(err)), "fields": fields}), status


@bp.get("")
def index():
    page = studio.processes(rt(), page_arg())
    return render_template("studio/index.html", page=page, args={})


@bp.get(f"/{KEY}")
def process(key: str):
    svc = rt()
    name = studio.process_name(svc, key)
    page = studio.versions(svc, key, page_arg())
    current = studio.draft(svc, key)
    return render_template("studio/process.html", key=key, name=name, page=page, draft=current, args={"key": key})


def _render_edit(key: str, current: studio.DraftView, problems: list[Problem] | None = None, comment: str = "",
                 status: int = 200):
    lang = get_language()
    roles = [{"code": code, "label": zh if lang == "zh-CN" else en} for code, en, zh in ROLES]
    stages = [{"code": code, "label": stage_label(code)} for code in _STAGES if code != "done"]
    urls = {"save": url_for(".save", key=key), "check": url_for(".check", key=key),
            "preview": url_for(".preview", key=key), "deploy": url_for(".deploy", key=key),
            "replay_page": url_for("studio_tests.replay_page", key=key), "process": url_for(".process", key=key),
            "download": url_for(".download_draft", key=key)}
    draft = {"files": current.files, "revision": current.revision, "base_version": current.base_version,
             "updated_by": current.updated_by,
             "updated_at": current.updated_at.isoformat() if current.updated_at else None}
    return render_template("studio/edit.html", process_key=key, process_name=studio.process_name(rt(), key),
                           draft=draft, roles=roles, stages=stages, urls=urls, comment=comment,
                           problems=[problem_dict(p) for p in problems or []]), status


@bp.get(f"/{KEY}/edit")
def edit(key: str):
    return _render_edit(key, studio.draft(rt(), key))


@bp.post(f"/{KEY}/draft")
def save(key: str):
    try:
        body = _json_body()
        revision = body.get("revision")
        if not isinstance(revision, int) or isinstance(revision, bool):
            raise InvalidInput("the draft revision is missing", {"revision": "an integer"})
        new_revision = studio.save_draft(rt(), me(), key, body.get("files"), revision)
    except Conflict as err:
        return _json_error(err, 409)
    except InvalidInput as err:
        return _json_error(err, 400)
    return jsonify({"revision": new_revision})


@bp.post(f"/{KEY}/draft/discard")
def discard(key: str):
    studio.discard_draft(rt(), me(), key)
    flash(_("The draft was discarded; the editor starts from the latest version again."), "success")
    return redirect(url_for(".process", key=key))


@bp.post(f"/{KEY}/check")
def check(key: str):
    try:
        body = _json_body()
        files = studio.clean_files(body.get("files"))
    except InvalidInput as err:
        return _json_error(err, 400)
    problems = studio.check(files, key)
    errors = len(studio.errors_of(problems))
    return jsonify({"problems": [problem_dict(p) for p in problems], "errors": errors,
                    "warnings": len(problems) - errors})


@bp.post(f"/{KEY}/preview")
def preview(key: str):
    try:
        body = _json_body()
        schema, ui = studio.form_for_preview(_json_text(body.get("schema")), _json_text(body.get("uischema")))
        lang = get_language()
        form = formrender.build_form(schema, ui, {}, None, lang)
    except InvalidInput as err:
        return _json_error(err, 400)
    except ValueError as err:  # a shape the renderer does not draw (the deploy check refuses it too)
        return jsonify({"error": say(str(err)), "fields": {}}), 400
    html = get_template_attribute("_form.html", "render_form")(form, lang)
    return jsonify({"html": str(html)})


@bp.post(f"/{KEY}/deploy")
def deploy(key: str):
    svc = rt()
    comment = request.form.get("comment", "")
    revision = request.form.get("revision", type=int)
    if not revision:  # the editor saves a changed draft first: revision 0 means nothing was changed
        flash(_("Nothing to deploy: change the process and save the draft first."), "info")
        return redirect(url_for(".edit", key=key))
    try:
        result = studio.deploy_draft(svc, me(), key, revision, comment)
    except DeployRefused as err:
        flash(say(str(err)), "error")
        return _render_edit(key, studio.draft(svc, key), err.problems, comment, 422)
    except (InvalidInput, Conflict) as err:
        flash(" ".join([say(str(err)), *(say(v) for v in getattr(err, "errors", {}).values())]), "error")
        return _render_edit(key, studio.draft(svc, key), None, comment, 422 if isinstance(err, InvalidInput) else 409)
    if result.created:
        flash(_("Version %(v)s is deployed. New contracts start on it; running ones stay on theirs.",
                v=result.version), "success")
    else:
        flash(_("The draft is the same as the latest version; nothing was deployed."), "info")
    return redirect(url_for(".process", key=key))


@bp.post(f"/{KEY}/versions/<int:version>/rollback")
def rollback(key: str, version: int):
    try:
        result = studio.rollback(rt(), me(), key, version, request.form.get("comment", ""))
    except (InvalidInput, DeployRefused) as err:
        details = [say(p.message) for p in getattr(err, "problems", [])[:5]]
        details += [say(v) for v in getattr(err, "errors", {}).values()]
        flash(" ".join([say(str(err)), *details]), "error")
        return redirect(url_for(".process", key=key))
    flash(_("Version %(old)s is deployed again as version %(new)s.", old=version, new=result.version), "success")
    return redirect(url_for(".process", key=key))


def _zip_response(data: bytes, filename: str) -> Response:
    return Response(data, mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get(f"/{KEY}/versions/<int:version>/download")
def download_version(key: str, version: int):
    files = studio.version_files(rt(), key, version)
    return _zip_response(studio.zip_files(files), f"{key}-v{version}.zip")


@bp.get(f"/{KEY}/draft/download")
def download_draft(key: str):
    current = studio.draft(rt(), key)
    return _zip_response(studio.zip_files(current.files), f"{key}-draft-r{current.revision}.zip")


@bp.post(f"/{KEY}/upload")
def upload(key: str):
    svc = rt()
    uploads = [(f.filename or "", f.read(studio.MAX_PACKAGE_BYTES + 1)) for f in request.files.getlist("files")]
    try:
        revision, problems = studio.upload(svc, me(), key, uploads, request.form.get("revision", type=int) or 0)
    except (InvalidInput, Conflict) as err:
        flash(" ".join([say(str(err)), *(f"{k}: {say(v)}" for k, v in getattr(err, "errors", {}).items())]), "error")
        return redirect(url_for(".process", key=key))
    errors = len(studio.errors_of(problems))
    if errors:
        flash(_("Uploaded into the draft; the checks found %(n)s error(s): open the editor to see them.", n=errors),
              "error")
    else:
        flash(_("Uploaded into the draft; the checks found no error."), "success")
    return redirect(url_for(".process", key=key))

