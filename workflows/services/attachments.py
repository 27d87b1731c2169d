"""Attachments: files uploaded into a task's form (the signed contract or the customer's written confirmation,
the acceptance certificate 验收单, complaint evidence), and who may read them.

An upload is checked before anything is kept: the name (no folders, no control characters, not too long), the
size (the server's limit narrowed by the field's ``x-attachment``) and the type found from the bytes themselves
(PDF, PNG, JPEG or an e-mail), which must also agree with the name's extension. The bytes go to
``workflows/storage.py`` under their SHA-256; the row (who, when, which task and field, the name) and an audit
event ``attach`` are written under the task's locks (instance row, task row, audit head), and the form gets a
reference to put in the task data (``forms.file_reference``), never the bytes.

A completion checks every reference in its data (``check_references``, called by ``tasks.complete``): it must
name a file uploaded to this contract, still in storage, that the field may take. A file may be read by whoever
may see the contract (``contract_view.may_view``) or the task it was uploaded on.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import unicodedata
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Attachment, Instance, TaskRow, User

from .. import config, storage
from ..forms import FileRef, attachment_rules, file_fields, file_reference, parse_reference
from ..runtime import Runtime
from . import audit
from .accounts import UserView
from .contract_view import may_view
from .deployments import package_for
from .errors import InvalidInput, NotFound, PermissionDenied, Unavailable
from .task_detail import may_view_task
from .tasks import _check_may_act, _load_row, _require_open, get_task_in

log = logging.getLogger(__name__)

MAX_NAME = 200  # characters of a file name
MAX_UPLOADS_PER_TASK = 20  # uploads stay on the record as evidence: a bound on what one task can pile up
SNIFF_BYTES = 4096
LABELS = {"application/pdf": "PDF", "image/png": "PNG", "image/jpeg": "JPEG", "message/rfc822": "EML"}
EXTENSIONS = {"application/pdf": (".pdf",), "image/png": (".png",), "image/jpeg": (".jpg", ".jpeg"),
              "message/rfc822": (".eml",)}
PREVIEW = {"application/pdf": "pdf", "image/png": "image", "image/jpeg": "image"}  # shown in the browser
# bidirectional and other invisible controls that make "invoice\u202efdp.exe" read as "invoice.pdf"
_INVISIBLE = set("\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029\ufeff")
_MAIL_HEADERS = (b"from:", b"to:", b"date:", b"subject:", b"message-id:", b"received:", b"mime-version:",
                 b"return-path:", b"delivered-to:")

_overrides: weakref.WeakKeyDictionary[Runtime, storage.Storage] = weakref.WeakKeyDictionary()
_UNREACHABLE = "the file storage cannot be reached; nothing was saved, try again in a moment"


def use_storage(rt: Runtime, store: storage.Storage | None) -> None:
    """Keep this runtime's files in ``store`` instead of the configured storage (tests; None: back to it)."""
    if store is None:
        _overrides.pop(rt, None)
    else:
        _overrides[rt] = store


def storage_of(rt: Runtime) -> storage.Storage:
    return _overrides.get(rt) or storage.from_settings()


@dataclass(frozen=True)
class Upload:
    field: str  # the form field's path, as errors name it: customer_evidence, group/file
    filename: str  # as the browser sent it
    stream: BinaryIO


@dataclass
class Attached:
    """What an upload gave: a reference per accepted field, a message per refused one."""

    references: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AttachmentView:
    id: int
    instance_id: int
    task_id: int
    spec_id: str | None
    field: str
    sha256: str
    size: int
    content_type: str
    name: str
    uploaded_by: str | None
    uploaded_at: datetime

    @property
    def preview(self) -> str | None:
        """How a page may show it inline: "image", "pdf", or None (download only)."""
        return PREVIEW.get(self.content_type)

    @property
    def label(self) -> str:
        return LABELS.get(self.content_type, self.content_type)

    @property
    def reference(self) -> str:
        return file_reference(self.sha256, self.name, self.size, self.content_type)


@dataclass(frozen=True)
class Download:
    name: str
    content_type: str
    size: int
    sha256: str
    inline: bool
    chunks: Iterator[bytes]


# --------------------------------------------------------------------------------------------- checks


def describe_size(size: int) -> str:
    if size >= 2**20:
        return f"{size / 2**20:.1f} MB".replace(".0 MB", " MB")
    if size >= 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size} bytes"


def name_problem(name: Any) -> str | None:
    """Why a file name is refused (None: it is fine). A name is only ever shown and sent back in
    Content-Disposition, never used as a path, but a name that is a path is a sign of a forged request."""
    if not isinstance(name, str) or not name.strip():
        return "the file has no name"
    if any(ord(c) < 32 or ord(c) == 127 or c in _INVISIBLE or unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")
           for c in name):
        return "the file name contains control characters; rename the file"
    if "/" in name or "\\" in name or name.strip() in (".", "..") or \
            PurePosixPath(name).name != name or PureWindowsPath(name).name != name:
        return "the file name must be a plain name, without folders ('/', '\\' or '..')"
    if len(name) > MAX_NAME:
        return f"the file name is too long (at most {MAX_NAME} characters); rename the file"
    return None


def sniff(head: bytes) -> str | None:
    """The content type the first bytes of a file show, among those Lvyue takes; None if none of them."""
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if _looks_like_mail(head):
        return "message/rfc822"
    return None


def _looks_like_mail(head: bytes) -> bool:
    """RFC 5322 header lines up to the first blank line, naming at least two of the usual headers."""
    if b"\x00" in head:
        return False
    headers = head.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0].split(b"\n")
    if not headers or b":" not in headers[0] or headers[0][:1] in (b" ", b"\t"):
        return False
    seen = 0
    for line in headers:
        if line[:1] in (b" ", b"\t"):  # a folded continuation line
            continue
        name, colon, _ = line.partition(b":")
        if not colon or not name or any(c < 33 or c > 126 for c in name):
            return False
        seen += (name.lower() + b":") in _MAIL_HEADERS
    return seen >= 2


def _types_text(types: tuple[str, ...]) -> str:
    return ", ".join(LABELS.get(t, t) for t in types) or "none"


@dataclass
class _Checked:
    field: str
    name: str
    sha256: str
    size: int
    content_type: str
    spool: Any


def _receive(upload: Upload, types: tuple[str, ...], max_bytes: int) -> _Checked | str:
    """Read one upload into a spool file, hashing it: the checked file (its spool open), or why it is refused."""
    name = unicodedata.normalize("NFC", upload.filename or "").strip()
    problem = name_problem(name)
    if problem:
        return problem
    spool = tempfile.SpooledTemporaryFile(max_size=2**20)  # noqa: SIM115 - the caller closes it after storing
    try:
        checked = _spool(upload, name, types, max_bytes, spool)
    except BaseException:
        spool.close()
        raise
    if isinstance(checked, str):
        spool.close()
    return checked


def _spool(upload: Upload, name: str, types: tuple[str, ...], max_bytes: int, spool) -> _Checked | str:
    digest, size, head = hashlib.sha256(), 0, b""
    while True:
        chunk = upload.stream.read(storage.CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            return f"the file is larger than {describe_size(max_bytes)}, the most this field takes"
        if len(head) < SNIFF_BYTES:
            head += chunk[:SNIFF_BYTES - len(head)]
        digest.update(chunk)
        spool.write(chunk)
    if size == 0:
        return "the file is empty"
    found = sniff(head)
    if found is None or found not in types:
        return f"this kind of file is not accepted here; accepted: {_types_text(types)}"
    extension = PurePosixPath(name.lower()).suffix
    if extension not in EXTENSIONS[found]:
        return (f"the file is a {LABELS[found]} but its name ends in '{extension or '(nothing)'}'; "
                f"name it {EXTENSIONS[found][0]}")
    spool.seek(0)
    return _Checked(upload.field, name, digest.hexdigest(), size, found, spool)


def _field_rules(schema: dict) -> dict[str, tuple[tuple[str, ...], int]]:
    settings = config.attachment_settings()
    return {"/".join(path): attachment_rules(node, settings.types, settings.max_bytes)
            for path, node in file_fields(schema)}


# --------------------------------------------------------------------------------------------- upload


def attach(rt: Runtime, task_id: int, user: UserView, uploads: list[Upload]) -> Attached:
    """Check and keep the files of a task form. Files that pass are stored, recorded and audited (``attach``),
    and their references returned; each refused one gets a message for its field. Raises NotFound,
    PermissionDenied and Conflict as a completion would (not open, held by someone else, not this user's role)
    before reading any file."""
    with rt.read() as s:  # refused early, before any file is read; checked again under the locks below
        row = s.get(TaskRow, task_id)
        if row is None:
            raise NotFound(f"no task #{task_id}")
        _require_open(s, row)
        deployment_id = s.scalar(select(Instance.deployment_id).where(Instance.id == row.instance_id))
        _check_may_act(s, rt, row, deployment_id, user, row.team)
    rules = _field_rules(package_for(rt, deployment_id).forms[row.form])
    out = Attached()
    accepted: list[_Checked] = []
    try:
        for upload in uploads:
            if upload.field not in rules:
                out.errors[upload.field] = "this field does not take files"
                continue
            got = _receive(upload, *rules[upload.field])
            if isinstance(got, str):
                out.errors[upload.field] = got
            else:
                accepted.append(got)
        store = storage_of(rt)
        for item in accepted:
            try:
                store.put(item.sha256, item.spool, item.content_type)
            except (OSError, storage.StorageError) as err:
                log.error("storing attachment %s failed: %s", item.sha256, err)
                raise Unavailable(_UNREACHABLE) from err
    finally:
        for item in accepted:
            item.spool.close()
    if not accepted:
        return out
    now = rt.clock.now()
    with rt.write() as s:
        row = _load_row(rt, s, task_id)  # instance row, then task row; the audit head comes last
        _require_open(s, row)
        _check_may_act(s, rt, row, deployment_id, user, row.team)
        had = s.scalar(select(func.count()).select_from(Attachment).where(Attachment.task_id == row.id)) or 0
        if had + len(accepted) > MAX_UPLOADS_PER_TASK:
            raise InvalidInput("too many files", {item.field: f"at most {MAX_UPLOADS_PER_TASK} files per task"
                                                  for item in accepted})
        for item in accepted:
            s.add(Attachment(instance_id=row.instance_id, task_id=row.id, field=item.field, sha256=item.sha256,
                             size=item.size, content_type=item.content_type, name=item.name,
                             uploaded_by_id=user.id, uploaded_at=now))
            reference = file_reference(item.sha256, item.name, item.size, item.content_type)
            audit.record(s, now, "attach", actor_id=user.id, actor=user.username, role=row.role,
                         instance_id=row.instance_id, task_id=row.id, spec_id=row.spec_id,
                         data={"field": item.field, "name": item.name, "size": item.size,
                               "content_type": item.content_type, "sha256": item.sha256, "reference": reference})
            out.references[item.field] = reference
        s.flush()
    return out


def attach_file(rt: Runtime, task_id: int, user: UserView, field_path: str, name: str, content: bytes) -> str:
    """One file from bytes (the command line, the demo, tests): its reference, or InvalidInput."""
    import io

    done = attach(rt, task_id, user, [Upload(field_path, name, io.BytesIO(content))])
    if done.errors:
        raise InvalidInput("the file was refused", done.errors)
    return done.references[field_path]


# --------------------------------------------------------------------------------------------- completion


def check_references(s: Session, rt: Runtime, schema: dict, data: dict, instance_id: int, task_name: str,
                     task_id: int | None = None) -> None:
    """Every file field of ``data`` must name a file uploaded to this contract — with ``task_id``, to this task
    and this field: a file is evidence of one pass of one step, never an earlier one's — still stored, of a type
    and size the field takes; else InvalidInput naming the fields. Called inside the completion's transaction."""
    given: dict[str, FileRef] = {}
    errors: dict[str, str] = {}
    rules = {}
    settings = config.attachment_settings()
    for path, node in file_fields(schema):
        value: Any = data
        for part in path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        key = "/".join(path)
        ref = parse_reference(value)
        if ref is None:
            errors[key] = "must be a file uploaded with the form"
            continue
        given[key] = ref
        rules[key] = attachment_rules(node, settings.types, settings.max_bytes)
    if not given and not errors:
        return
    hashes = sorted({ref.sha256 for ref in given.values()})
    known: dict[str, set[tuple[str, str | None]]] = {}
    if hashes:
        query = (select(Attachment.sha256, Attachment.name, Attachment.size, Attachment.content_type, Attachment.field)
                 .where(Attachment.instance_id == instance_id, Attachment.sha256.in_(hashes)))
        if task_id is not None:
            query = query.where(Attachment.task_id == task_id)
        for sha256, name, size, content_type, field_path in s.execute(query):
            known.setdefault(sha256, set()).add((file_reference(sha256, name, size, content_type),
                                                 field_path if task_id is not None else None))
    store = storage_of(rt)
    for key, ref in given.items():
        types, max_bytes = rules[key]
        if (str(ref), key if task_id is not None else None) not in known.get(ref.sha256, ()):
            errors[key] = ("no such file was uploaded with this field of this task; upload it with the form"
                           if task_id is not None else
                           "no such file was uploaded to this contract; upload it with the form")
        elif ref.content_type not in types:
            errors[key] = f"this kind of file is not accepted here; accepted: {_types_text(types)}"
        elif ref.size > max_bytes:
            errors[key] = f"the file is larger than {describe_size(max_bytes)}, the most this field takes"
        elif not _stored(store, ref.sha256):
            errors[key] = "the file is missing from the file storage; upload it again"
    if errors:
        raise InvalidInput(f"the form '{task_name}' has errors", errors)


def _stored(store: storage.Storage, sha256: str) -> bool:
    try:
        return store.exists(sha256)
    except (OSError, storage.StorageError) as err:
        log.error("checking attachment %s failed: %s", sha256, err)
        raise Unavailable(_UNREACHABLE) from err


# --------------------------------------------------------------------------------------------- reading


_LIST = (select(Attachment.id, Attachment.instance_id, Attachment.task_id, Attachment.field, Attachment.sha256,
                Attachment.size, Attachment.content_type, Attachment.name, User.username, Attachment.uploaded_at)
         .outerjoin(User, User.id == Attachment.uploaded_by_id))


def _views(s: Session, query) -> list[AttachmentView]:
    rows = s.execute(query.add_columns(TaskRow.spec_id).outerjoin(TaskRow, TaskRow.id == Attachment.task_id)
                     .order_by(Attachment.id)).all()
    return [AttachmentView(r.id, r.instance_id, r.task_id, r.spec_id, r.field, r.sha256, r.size, r.content_type,
                           r.name, r.username, r.uploaded_at) for r in rows]


def _may_read(s: Session, rt: Runtime, user: UserView, inst: Instance, task_ids: set[int]) -> bool:
    """Who may see the contract, or the task the file was uploaded on (as its task page decides)."""
    if may_view(rt, s, user, inst):
        return True
    for task_id in sorted(task_ids):
        row = s.execute(select(TaskRow.team, TaskRow.completed_by_id).where(TaskRow.id == task_id)).one()
        if may_view_task(user, get_task_in(s, task_id), row.team) or row.completed_by_id == user.id:
            return True
    return False


def of_contract(rt: Runtime, key: str, user: UserView) -> list[AttachmentView]:
    """The files uploaded to contract ``key``, oldest first, for a user who may see it (else an empty list)."""
    with rt.read() as s:
        inst = s.scalar(select(Instance).where(Instance.business_key == key))
        if inst is None:
            raise NotFound(f"no contract '{key}'")
        if not may_view(rt, s, user, inst):
            return []
        return _views(s, _LIST.where(Attachment.instance_id == inst.id))


def download(rt: Runtime, key: str, sha256: str, user: UserView, as_attachment: bool = False) -> Download:
    """A file of contract ``key`` for someone who may see the contract or the task it came with. The same
    refusal whether the file exists or not, so nobody learns what a contract they cannot see holds."""
    with rt.read() as s:
        inst = s.scalar(select(Instance).where(Instance.business_key == key))
        if inst is None:
            raise NotFound(f"no contract '{key}'")
        files = _views(s, _LIST.where(Attachment.instance_id == inst.id, Attachment.sha256 == sha256)) \
            if storage.SHA256_RE.fullmatch(sha256 or "") else []
        if not _may_read(s, rt, user, inst, {f.task_id for f in files}):
            raise PermissionDenied(f"{user.username} has no part in {key}")
    if not files:
        raise NotFound(f"no file {sha256[:64]} in {key}")
    first = files[0]
    try:
        stream = storage_of(rt).open(first.sha256)
    except FileNotFoundError:
        raise NotFound(f"the file '{first.name}' is missing from the file storage") from None
    except (OSError, storage.StorageError) as err:
        log.error("reading attachment %s failed: %s", first.sha256, err)
        raise Unavailable("the file storage cannot be reached; try again in a moment") from err

    def chunks() -> Iterator[bytes]:
        try:
            while True:
                chunk = stream.read(storage.CHUNK)
                if not chunk:
                    return
                yield chunk
        finally:
            stream.close()

    return Download(first.name, first.content_type, first.size, first.sha256,
                    inline=not as_attachment and first.preview is not None, chunks=chunks())

