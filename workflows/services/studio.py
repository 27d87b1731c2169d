"""The process owners' studio: processes and their versions, the shared draft a process owner edits, checks,
deploy (checks and process tests first), rollback, and upload/download for desktop modelers.

A draft is one row per process holding its files as text; ``revision`` makes a save on a stale page a clear
409 instead of a silent overwrite. Deploying turns the saved draft into a new immutable version (running
instances stay on theirs) and removes the draft, so the next edit starts from what is deployed.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, delete, func, select
from sqlalchemy.exc import IntegrityError

from models import Deployment, Draft, Instance, User

from ..engine.package import MAX_FILE_BYTES, MAX_PACKAGE_BYTES, Problem, ProcessPackage, _load_forms
from ..runtime import Runtime
from ..studio import checks
from ..studio.checks import errors_of
from . import audit, deployments, process_tests
from .accounts import ROLE_CODES, UserView
from .deployments import DeployResult
from .errors import Conflict, DeployRefused, InvalidInput, NotFound
from .paging import Page

# what build_package (and so `lvyue deploy`) accepts, less what cannot be a plain file name: no folders, no
# control characters, no leading dot
FILE_NAME = re.compile(r"^(?!\.)[^/\\\x00-\x1f\x7f]{1,195}\.(bpmn|dmn|json)$")
MAX_FILES = 200
MAX_COMMENT = 2000


@dataclass(frozen=True)
class ProcessSummary:
    process_key: str
    name: str
    latest_version: int
    latest_deployment_id: int
    running: int
    has_draft: bool


@dataclass(frozen=True)
class VersionRow:
    deployment_id: int
    version: int
    deployed_at: datetime
    deployed_by: str | None
    comment: str | None
    running: int
    total: int


@dataclass(frozen=True)
class DraftView:
    process_key: str
    files: dict[str, str]
    revision: int  # 0: nothing saved yet, the files are the latest version's
    base_version: int | None
    updated_by: str | None
    updated_at: datetime | None


def processes(rt: Runtime, page: int = 1, per_page: int = 20) -> Page[ProcessSummary]:
    with rt.read() as s:
        latest = (select(Deployment.process_key, func.max(Deployment.version).label("v"))
                  .group_by(Deployment.process_key).subquery())
        total = s.scalar(select(func.count()).select_from(latest)) or 0
        rows = s.execute(select(Deployment).join(latest, (Deployment.process_key == latest.c.process_key)
                                                 & (Deployment.version == latest.c.v))
                         .order_by(Deployment.process_key).offset((page - 1) * per_page).limit(per_page)).scalars()
        deps = list(rows)
        keys = [d.process_key for d in deps]
        running = dict(s.execute(select(Instance.process_key, func.count()).where(
            Instance.process_key.in_(keys), Instance.status == "running").group_by(Instance.process_key)).all())
        drafts = set(s.scalars(select(Draft.process_key).where(Draft.process_key.in_(keys))))
        items = [ProcessSummary(d.process_key, d.name, d.version, d.id, running.get(d.process_key, 0),
                                d.process_key in drafts) for d in deps]
    return Page(items, total, page, per_page)


def process_name(rt: Runtime, process_key: str) -> str:
    with rt.read() as s:
        return _deployment(s, process_key).name


def versions(rt: Runtime, process_key: str, page: int = 1, per_page: int = 20) -> Page[VersionRow]:
    with rt.read() as s:
        total = s.scalar(select(func.count()).select_from(Deployment)
                         .where(Deployment.process_key == process_key)) or 0
        if not total:
            raise NotFound(f"process '{process_key}' is not deployed")
        counts = (select(Instance.deployment_id, func.count().label("total"),
                         func.sum(case((Instance.status == "running", 1), else_=0)).label("running"))
                  .group_by(Instance.deployment_id).subquery())
        rows = s.execute(
            select(Deployment.id, Deployment.version, Deployment.deployed_at, User.username, Deployment.comment,
                   counts.c.running, counts.c.total)
            .outerjoin(User, User.id == Deployment.deployed_by_id)
            .outerjoin(counts, counts.c.deployment_id == Deployment.id)
            .where(Deployment.process_key == process_key)
            .order_by(Deployment.version.desc()).offset((page - 1) * per_page).limit(per_page)).all()
    items = [VersionRow(r[0], r[1], r[2], r[3], r[4], int(r[5] or 0), int(r[6] or 0)) for r in rows]
    return Page(items, total, page, per_page)


def _deployment(s, process_key: str, version: int | None = None) -> Deployment:
    query = select(Deployment).where(Deployment.process_key == process_key)
    query = query.where(Deployment.version == version) if version is not None else query.order_by(
        Deployment.version.desc()).limit(1)
    dep = s.scalar(query)
    if dep is None:
        raise NotFound(f"process '{process_key}' has no version {version}" if version is not None
                       else f"process '{process_key}' is not deployed")
    return dep


def version_files(rt: Runtime, process_key: str, version: int | None = None) -> dict[str, bytes]:
    """The files of one version (the latest when ``version`` is None)."""
    with rt.read() as s:
        return {f.filename: f.content for f in _deployment(s, process_key, version).files}


def draft(rt: Runtime, process_key: str) -> DraftView:
    """The saved draft, or the latest version's files when nobody has saved one (revision 0)."""
    with rt.read() as s:
        row = s.get(Draft, process_key)
        if row is not None:
            base = s.get(Deployment, row.base_deployment_id) if row.base_deployment_id else None
            by = s.get(User, row.updated_by_id) if row.updated_by_id else None
            return DraftView(process_key, json.loads(row.files), row.revision, base.version if base else None,
                             by.username if by else None, row.updated_at)
        dep = _deployment(s, process_key)
        files = {f.filename: f.content.decode("utf-8") for f in dep.files}
        return DraftView(process_key, files, 0, dep.version, None, None)


def clean_files(files: object) -> dict[str, str]:
    if not isinstance(files, dict) or not files:
        raise InvalidInput("the draft has no files", {"files": "send at least the .bpmn file"})
    if len(files) > MAX_FILES:
        raise InvalidInput(f"a draft holds at most {MAX_FILES} files", {"files": f"{len(files)} files"})
    errors: dict[str, str] = {}
    total = 0
    for name, text in files.items():
        if not isinstance(name, str) or not FILE_NAME.fullmatch(name):
            errors[str(name)[:120]] = ("a file name ends in .bpmn, .dmn or .json and holds no folder or control "
                                       "character")
        elif not isinstance(text, str):
            errors[name] = "the content must be text"
        elif "\x00" in text:
            errors[name] = "the content must not contain NUL characters"
        else:
            size = len(text.encode("utf-8"))
            total += size
            if size > MAX_FILE_BYTES:
                errors[name] = f"the file is {size} bytes; at most {MAX_FILE_BYTES} allowed"
    if errors:
        raise InvalidInput("some files of the draft are not acceptable", errors)
    if total > MAX_PACKAGE_BYTES:
        raise InvalidInput(f"the draft is {total} bytes; at most {MAX_PACKAGE_BYTES} allowed", {"files": "too large"})
    if not any(name.endswith(".bpmn") for name in files):
        raise InvalidInput("the draft has no .bpmn file", {"files": "the process diagram is missing"})
    return dict(sorted(files.items()))


def save_draft(rt: Runtime, actor: UserView, process_key: str, files: object, revision: int) -> int:
    """Save the draft if nobody saved since ``revision``; returns the new revision."""
    cleaned = clean_files(files)
    now = rt.clock.now()
    try:
        with rt.write() as s:
            row = s.get(Draft, process_key, with_for_update=True)
            if row is None:
                dep = _deployment(s, process_key)
                if revision != 0:
                    raise Conflict("the draft was deployed or discarded since you opened it; reload the editor")
                row = Draft(process_key=process_key, files=json.dumps(cleaned, ensure_ascii=False),
                            base_deployment_id=dep.id, revision=1, updated_by_id=actor.id, updated_at=now)
                s.add(row)
                return 1
            if row.revision != revision:
                by = s.get(User, row.updated_by_id) if row.updated_by_id else None
                raise Conflict(f"{by.username if by else 'someone'} saved this draft since you opened it "
                               f"(revision {row.revision}); reload the editor and apply your change again")
            row.files = json.dumps(cleaned, ensure_ascii=False)
            row.revision += 1
            row.updated_by_id = actor.id
            row.updated_at = now
            return row.revision
    except IntegrityError:
        raise Conflict("someone else saved this draft at the same moment; reload the editor") from None


def discard_draft(rt: Runtime, actor: UserView, process_key: str) -> None:
    with rt.write() as s:
        s.execute(delete(Draft).where(Draft.process_key == process_key))


def check(files: dict[str, str] | dict[str, bytes], process_key: str | None = None) -> list[Problem]:
    """Every problem of the files, errors first (errors block deploy, warnings do not)."""
    raw = {k: v.encode("utf-8") if isinstance(v, str) else v for k, v in files.items()}
    return checks.check_files(raw, ROLE_CODES, process_key)


def deploy_draft(rt: Runtime, actor: UserView, process_key: str, revision: int, comment: str) -> DeployResult:
    """Deploy the saved draft as a new version: checks and the process's saved tests must pass first."""
    comment = _comment(comment)
    current = draft(rt, process_key)
    if current.revision != revision:
        raise Conflict("the draft changed since you opened it; reload the editor and deploy again")
    if revision == 0:
        raise InvalidInput("nothing to deploy", {"comment": "save a change to the draft first"})
    with rt.read() as s:
        latest = _deployment(s, process_key).version
    if current.base_version != latest:
        # deploying would silently undo what the newer version changed
        raise Conflict(f"version {latest} was deployed after this draft was started from version "
                       f"{current.base_version}; compare the versions, then discard the draft and redo the change "
                       f"on version {latest}")
    files = {name: text.encode("utf-8") for name, text in current.files.items()}
    package = _gate(rt, process_key, files)
    result = deployments.deploy_files(rt, files, actor, comment, process_key=process_key, package=package)
    with rt.write() as s:
        s.execute(delete(Draft).where(Draft.process_key == process_key, Draft.revision == revision))
    return result


def _comment(comment: str | None) -> str:
    comment = (comment or "").strip()
    if not comment:
        raise InvalidInput("say what changed", {"comment": "a deploy needs a comment: what changed and why"})
    if len(comment) > MAX_COMMENT:
        raise InvalidInput("the comment is too long", {"comment": f"at most {MAX_COMMENT} characters"})
    return comment


def _gate(rt: Runtime, process_key: str, files: dict[str, bytes]) -> ProcessPackage:
    """What every deploy from the studio passes first: no check error, every saved process test green. Returns
    the package the check built, for the deploy itself."""
    problems, package = checks.check_package(files, ROLE_CODES, process_key)
    errors = errors_of(problems)
    if errors or package is None:
        raise DeployRefused(f"the draft cannot be deployed ({len(errors)} problem(s))", problems)
    failures = process_tests.failures_for_deploy(rt, process_key, package)
    if failures:
        raise DeployRefused(f"{len(failures)} process test(s) failed", [Problem(f) for f in failures])
    return package


def rollback(rt: Runtime, actor: UserView, process_key: str, version: int, comment: str) -> DeployResult:
    """Deploy an old version's files again as a new version (running instances stay where they are), after the
    same checks and process tests as any deploy."""
    comment = _comment(comment)
    files = version_files(rt, process_key, version)
    with rt.read() as s:
        latest = _deployment(s, process_key)
        if latest.version == version:
            raise InvalidInput(f"version {version} is already the latest", {"version": "nothing to roll back"})
    package = _gate(rt, process_key, files)
    note = f"rollback to version {version}: {comment}"
    result = deployments.deploy_files(rt, files, actor, note, process_key=process_key, package=package)
    if not result.created:  # same content as the latest: deploy_files made no version
        raise InvalidInput(f"version {version} has the same files as the latest version",
                           {"version": "nothing to roll back"})
    with rt.write() as s:
        audit.record(s, rt.clock.now(), "rollback", actor_id=actor.id, actor=actor.username,
                     deployment_id=result.deployment_id,
                     data={"process_key": process_key, "to_version": version, "new_version": result.version})
    return result


def read_upload(uploads: list[tuple[str, bytes]]) -> dict[str, str]:
    """Uploaded files (.bpmn, .dmn, .json, or a .zip of them) as text, by their base name."""
    files: dict[str, str] = {}
    errors: dict[str, str] = {}

    def add(name: str, data: bytes) -> None:
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        if not FILE_NAME.fullmatch(base):
            errors[base[:120] or "?"] = "only .bpmn, .dmn and .json files with plain names can be uploaded"
            return
        if base in files:
            errors[base] = "two files of the upload have this name"
            return
        if len(data) > MAX_FILE_BYTES:
            errors[base] = f"the file is {len(data)} bytes; at most {MAX_FILE_BYTES} allowed"
            return
        try:
            files[base] = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            errors[base] = "the file is not UTF-8 text"

    for name, data in uploads:
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    members = [m for m in archive.infolist() if not m.is_dir()]
                    if len(members) > MAX_FILES or sum(m.file_size for m in members) > MAX_PACKAGE_BYTES:
                        errors[name[:120]] = "the archive is too large"
                        continue
                    for member in members:
                        if member.filename.startswith("__MACOSX/"):
                            continue
                        add(member.filename, archive.read(member))
            except (zipfile.BadZipFile, OSError, RuntimeError, ValueError):  # RuntimeError: encrypted
                errors[name[:120]] = "not a readable .zip archive"
        else:
            add(name, data)
    if errors:
        raise InvalidInput("some uploaded files were refused; nothing was changed", errors)
    if not files:
        raise InvalidInput("no file was uploaded", {"files": "choose .bpmn, .dmn or .json files, or a .zip"})
    return files


def upload(rt: Runtime, actor: UserView, process_key: str, uploads: list[tuple[str, bytes]],
           revision: int) -> tuple[int, list[Problem]]:
    """Put uploaded files into the draft (same names are replaced) and check the result like the editor does."""
    incoming = read_upload(uploads)
    current = draft(rt, process_key)  # save_draft refuses it if someone saved since ``revision``
    merged = {**current.files, **incoming}
    if any(name.endswith(".bpmn") for name in incoming):
        # the diagram saved by a desktop modeler under another name replaces the draft's, never sits beside it
        merged = {k: v for k, v in merged.items() if not k.endswith(".bpmn") or k in incoming}
    new_revision = save_draft(rt, actor, process_key, merged, revision)
    return new_revision, check(merged, process_key)


def zip_files(files: dict[str, bytes] | dict[str, str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            data = files[name]
            archive.writestr(name, data.encode("utf-8") if isinstance(data, str) else data)
    return out.getvalue()


def form_for_preview(schema_text: str, uischema_text: str | None) -> tuple[dict, dict]:
    """A form schema (and its widget hints) being edited, checked as deploy will check it."""
    files = {"preview.schema.json": (schema_text or "").encode("utf-8")}
    if (uischema_text or "").strip():
        files["preview.uischema.json"] = uischema_text.encode("utf-8")
    problems: list[Problem] = []
    forms = _load_forms(files, problems)  # the deploy-time form checks, on this one form
    if problems:
        raise InvalidInput(problems[0].message, {p.file or "schema": p.message for p in problems})
    return forms["preview.schema.json"], forms.get("preview.uischema.json", {})
