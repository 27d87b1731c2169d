"""Deploying process packages as immutable versions, and loading them (cached) for running instances."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from models import Deployment, DeploymentFile

from .. import config
from ..engine import sandbox
from ..engine.package import PackageError, ProcessPackage, build_package
from ..runtime import Runtime
from . import audit
from .accounts import ROLE_CODES, UserView
from .errors import DeployRefused, NotFound


@dataclass(frozen=True)
class DeployResult:
    deployment_id: int
    process_key: str
    version: int
    created: bool  # False when the same content was already the latest version


def deploy_files(rt: Runtime, files: dict[str, bytes], actor: UserView | None = None, comment: str | None = None,
                 process_key: str | None = None, package: ProcessPackage | None = None) -> DeployResult:
    """Deploy ``files`` as the next version; ``package``: the same files already built (and checked) by the caller."""
    if package is None:
        try:
            package = build_package(files, known_roles=ROLE_CODES, process_key=process_key)
        except PackageError as err:
            raise DeployRefused(f"the package cannot be deployed ({len(err.problems)} problem(s))",
                                err.problems) from err
    now = rt.clock.now()
    with rt.write() as s:
        latest = s.scalar(select(Deployment).where(Deployment.process_key == package.process_key)
                          .order_by(Deployment.version.desc()).limit(1))
        if latest is not None and latest.content_hash == package.content_hash:
            return DeployResult(latest.id, latest.process_key, latest.version, False)
        version = (s.scalar(select(func.max(Deployment.version))
                            .where(Deployment.process_key == package.process_key)) or 0) + 1
        dep = Deployment(process_key=package.process_key, version=version, name=package.main.name,
                         content_hash=package.content_hash, deployed_by_id=actor.id if actor else None,
                         deployed_at=now, comment=comment)
        dep.files = [DeploymentFile(filename=name, sha256=hashlib.sha256(data).hexdigest(), content=data)
                     for name, data in sorted(package.files.items())]
        s.add(dep)
        s.flush()
        audit.record(s, now, "deploy", actor_id=actor.id if actor else None,
                     actor=actor.username if actor else "system", deployment_id=dep.id,
                     data={"process_key": dep.process_key, "version": version, "hash": dep.content_hash,
                           "files": sorted(package.files), "comment": comment})
        result = DeployResult(dep.id, dep.process_key, version, True)
    rt.packages.put(result.deployment_id, package)
    return result


_REF = re.compile(rb'name="form(?:JsonSchema|UiSchema)Filename"\s+value="([^"]+)"')
_DECISION_REF = re.compile(rb"<spiffworkflow:calledDecisionId>\s*([^<\s]+)\s*<")
_DECISION_ID = re.compile(rb'<(?:\w+:)?decision\b[^>]*\bid="([^"]+)"')


def collect_files(bpmn_file: Path) -> dict[str, bytes]:
    """The BPMN file plus the forms and DMN decisions it names, found beside it or in ``forms/``."""
    data = bpmn_file.read_bytes()
    folder = bpmn_file.parent
    files = {bpmn_file.name: data}
    for ref in _REF.findall(data):
        name = ref.decode()
        for candidate in (folder / "forms" / name, folder / name):
            if candidate.is_file():
                files[name] = candidate.read_bytes()
                break
    wanted = set(_DECISION_REF.findall(data))
    if wanted:
        for dmn in sorted(folder.glob("*.dmn")):
            content = dmn.read_bytes()
            if wanted & set(_DECISION_ID.findall(content)):
                files[dmn.name] = content
    return files


def deploy_path(rt: Runtime, path: Path, actor: UserView | None = None,
                comment: str | None = None) -> list[DeployResult]:
    """Deploy one .bpmn file, or every .bpmn file in a folder (each with what it references)."""
    bpmn_files = sorted(path.glob("*.bpmn")) if path.is_dir() else [path]
    if not bpmn_files:
        raise NotFound(f"no .bpmn file in {path}")
    return [deploy_files(rt, collect_files(f), actor, comment) for f in bpmn_files]


def latest_deployment_id(rt: Runtime, process_key: str) -> int:
    with rt.read() as s:
        dep_id = s.scalar(select(Deployment.id).where(Deployment.process_key == process_key)
                          .order_by(Deployment.version.desc()).limit(1))
    if dep_id is None:
        raise NotFound(f"process '{process_key}' is not deployed")
    return dep_id


def package_for(rt: Runtime, deployment_id: int) -> ProcessPackage:
    package = rt.packages.get(deployment_id)
    if package is None:
        with rt.read() as s:
            dep = s.get(Deployment, deployment_id)
            if dep is None:
                raise NotFound(f"no deployment #{deployment_id}")
            files = {f.filename: f.content for f in dep.files}
            key = dep.process_key
        package = build_package(files, known_roles=None, process_key=key)
        rt.packages.put(deployment_id, package)
    return package


def script_engine_for(rt: Runtime):
    """One sandboxed script engine per runtime; it reads the runtime's clock and the configured budgets."""
    engine = rt.script_engines.get("default")
    if engine is None:
        engine = rt.script_engines["default"] = sandbox.make_script_engine(rt.clock.now, **config.script_limits())
    return engine


@dataclass(frozen=True)
class StartOption:
    process_key: str
    name: str
    schema: dict | None  # the start form, if the process has one
    ui_schema: dict


def startable(rt: Runtime, user: UserView) -> list[StartOption]:
    """The latest version of every process ``user`` may start, with its start form."""
    with rt.read() as s:
        latest = s.execute(select(Deployment.process_key, func.max(Deployment.id))
                           .group_by(Deployment.process_key).order_by(Deployment.process_key)).all()
    options = []
    for key, dep_id in latest:
        package = package_for(rt, dep_id)
        main = package.main
        if not set(main.starter_roles) & user.roles:
            continue
        schema = package.forms.get(main.start_form) if main.start_form else None
        ui = package.forms.get(main.start_form.replace(".schema.json", ".uischema.json"), {}) if main.start_form else {}
        options.append(StartOption(key, main.name, schema, ui))
    return options
