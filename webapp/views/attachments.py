"""Attachments in the browser: a contract's file shown inline (PDF, images) or downloaded by whoever may see the
contract, the larger request limit of task forms that carry files, and the file panels of task and contract pages.

A file is served with the type found from its bytes, ``nosniff``, ``no-store`` and a Content-Security-Policy of
its own that lets only pages of this site frame it (the PDF preview); everything else keeps the app's policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, request, url_for
from flask_login import current_user, login_required

from workflows import config
from workflows.forms import FileRef, parse_reference
from workflows.services import attachments

from .. import formrender
from ..i18n import gettext as _
from ..labels import N_
from .common import me, rt

bp = Blueprint("attachments", __name__)

FILES_PER_FORM = 3  # a task form's request may carry this many files of the largest allowed size
FILE_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"
_CONFIRMATIONS = {"signed_contract": N_("Signed contract"),
                  "written_confirmation": N_("Customer's written confirmation (e-mail, purchase order)")}


@bp.get("/attachments/<key>/<sha256>")
@login_required
def download(key: str, sha256: str):
    got = attachments.download(rt(), key, sha256, me(), as_attachment=request.args.get("download") == "1")
    response = Response(got.chunks, content_type=got.content_type, direct_passthrough=True)
    response.headers["Content-Length"] = str(got.size)
    response.headers["Content-Disposition"] = disposition(got.name, got.inline)
    response.headers["Cache-Control"] = "private, no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Content-Security-Policy"] = FILE_CSP
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    return response


def disposition(name: str, inline: bool) -> str:
    """``inline``/``attachment`` with an ASCII fallback name and the real one in RFC 5987 form; the stored names
    hold no control characters or path separators, and quotes and the like are left out of the fallback."""
    fallback = re.sub(r"[^A-Za-z0-9._() -]", "_", name).strip(" .") or "attachment"
    return f"{'inline' if inline else 'attachment'}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


@bp.app_url_value_preprocessor
def _upload_limit(endpoint: str | None, values: Any) -> None:
    """Before anything reads the body (CSRF does): a logged-in user's task completion may carry files (the session
    cookie says who it is without reading the body); other requests, and strangers, keep MAX_CONTENT_LENGTH."""
    if endpoint == "task.complete" and request.method == "POST" and current_user.is_authenticated:
        request.max_content_length = upload_request_limit()


def upload_request_limit() -> int:
    return config.attachment_settings().max_bytes * FILES_PER_FORM + 2**20


def too_large_message() -> str | None:
    """The 413 page's explanation when a task form's files were too large (None elsewhere)."""
    if request.endpoint != "task.complete":
        return None
    size = formrender.size_text(config.attachment_settings().max_bytes)
    return _("The files sent are larger than allowed (at most %(size)s per file). Nothing was saved; go back "
             "and choose a smaller file.", size=size)


# --------------------------------------------------------------------------------------------- for other views


def file_url(key: str) -> Callable[[FileRef], str]:
    """Where the task page's file fields link their stored file."""
    return lambda ref: url_for("attachments.download", key=key, sha256=ref.sha256)


def files_panel(detail) -> list[attachments.AttachmentView]:
    """The task page's list of the contract's files (empty for someone who may only see this task)."""
    return attachments.of_contract(rt(), detail.task.business_key, me())


def attach_uploads(task_id: int, data: dict, uploads: list) -> tuple[dict, dict[str, str]]:
    """Keep the files posted with a task form: the form data with their references in, and the refusals."""
    done = attachments.attach(rt(), task_id, me(), [attachments.Upload(path, name, stream)
                                                   for path, name, stream in uploads])
    return formrender.put_values(data, done.references), done.errors


@bp.app_template_global()
def confirmation_label(value: str | None) -> str:
    return _(_CONFIRMATIONS[value]) if value in _CONFIRMATIONS else (value or "")


@bp.app_template_filter("file_ref")
def file_ref(value: Any) -> FileRef | None:
    """The file a reference in task data names (None for any other value)."""
    return parse_reference(value)
