"""CI's dependency audit: pip-audit over every package installed in the project's environment.

pip-audit alone exits 0 when the vulnerability service could not say anything about a package (PyPI answers
"not found" for a release it has no data for, and a registry mirror may answer that for all of them). A CI
step that passes without having checked anything is worse than none, so this wrapper counts what was really
audited and says so. For the packages pip-audit could not look up, it asks PyPI's project page
(``/pypi/NAME/json``), whose ``vulnerabilities`` cover the newest release only: a package installed at that
release is audited that way, an older one stays "not audited".

Known vulnerabilities fail the run (exit 1); a service that failed outright fails it too (exit 2); packages
nobody could look up are listed and, with ``--strict``, fail it (exit 3).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata

EDITABLE = "editable"  # our own package, installed with `pip install -e`: its code is this repository
PYPI_JSON = "https://pypi.org/pypi"


@dataclass
class AuditResult:
    audited: list[str] = field(default_factory=list)
    vulnerable: list[tuple[str, str, str, str]] = field(default_factory=list)  # package, version, ids, fixed in
    not_audited: list[tuple[str, str]] = field(default_factory=list)  # package, why


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_versions() -> dict[str, str]:
    return {canonical(d.metadata["Name"]): d.version for d in metadata.distributions() if d.metadata["Name"]}


def parse(report: dict) -> AuditResult:
    result = AuditResult()
    for dep in report.get("dependencies", []):
        name = dep["name"]
        reason = dep.get("skip_reason")
        if reason is not None:
            if EDITABLE not in reason.lower():
                result.not_audited.append((name, reason))
            continue
        result.audited.append(name)
        for vuln in dep.get("vulns", []):
            ids = " / ".join([vuln["id"], *vuln.get("aliases", [])])
            result.vulnerable.append((name, dep.get("version", "?"), ids,
                                      ", ".join(vuln.get("fix_versions", [])) or "no fix yet"))
    return result


def _project_page(base: str, name: str, timeout: int) -> dict | str:
    try:
        with urllib.request.urlopen(f"{base}/{canonical(name)}/json", timeout=timeout) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError) as err:
        return f"the project page failed too ({err})"


def audit_latest(result: AuditResult, versions: dict[str, str], base: str, timeout: int) -> None:
    """Audit what pip-audit could not from each project's newest-release data, where that is what is installed."""
    names = [name for name, _ in result.not_audited]
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = dict(zip(names, pool.map(lambda n: _project_page(base, n, timeout), names), strict=True))
    still: list[tuple[str, str]] = []
    for name, reason in result.not_audited:
        version, project = versions.get(canonical(name)), pages[name]
        if isinstance(project, str):
            still.append((name, f"{reason}; {project}"))
            continue
        latest = project.get("info", {}).get("version")
        if version is None or latest != version or "vulnerabilities" not in project:
            still.append((name, f"installed {version}, but only the newest release ({latest}) has data"))
            continue
        result.audited.append(name)
        for vuln in project["vulnerabilities"]:
            if vuln.get("withdrawn"):
                continue
            ids = " / ".join([vuln["id"], *vuln.get("aliases", [])])
            result.vulnerable.append((name, version, ids, ", ".join(vuln.get("fixed_in", [])) or "no fix yet"))
    result.not_audited = still


def run_pip_audit(service: str, osv_url: str | None, timeout: int) -> tuple[int, str, str]:
    args = [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off", "--format", "json",
            "--vulnerability-service", service, "--timeout", str(timeout)]
    if osv_url:
        args += ["--osv-url", osv_url]
    done = subprocess.run(args, capture_output=True, text=True)
    return done.returncode, done.stdout, done.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", choices=("pypi", "osv"), default="pypi", help="pip-audit's vulnerability service")
    parser.add_argument("--osv-url", help="another OSV-compatible query endpoint (a mirror)")
    parser.add_argument("--pypi-json-url", default=PYPI_JSON, help="where the project pages are (for a mirror)")
    parser.add_argument("--timeout", type=int, default=30, help="seconds per request to the service")
    parser.add_argument("--strict", action="store_true", help="fail when a package could not be audited")
    opts = parser.parse_args(argv)

    code, out, err = run_pip_audit(opts.service, opts.osv_url, opts.timeout)
    try:
        report = json.loads(out)
    except ValueError:
        print(f"dependency audit: pip-audit failed (exit {code}) without a report:\n{err.strip()}", file=sys.stderr)
        return 2
    result = parse(report)
    by_pip_audit = len(result.audited)
    if result.not_audited:
        audit_latest(result, installed_versions(), opts.pypi_json_url.rstrip("/"), opts.timeout)
    for name, version, ids, fixed in result.vulnerable:
        print(f"VULNERABLE  {name} {version}: {ids} (fixed in {fixed})")
    total = len(result.audited) + len(result.not_audited)
    print(f"dependency audit: {len(result.audited)} of {total} packages audited ({by_pip_audit} by pip-audit's "
          f"{opts.service} service, {len(result.audited) - by_pip_audit} from their newest release's data), "
          f"{len(result.vulnerable)} known vulnerabilities")
    if result.not_audited:
        print(f"NOT AUDITED ({len(result.not_audited)}):")
        for name, why in result.not_audited:
            print(f"  {name}: {why}")
        if not result.audited:
            print("  no vulnerability data for any of them: this run checked nothing "
                  "(is the service reachable from here? --service osv --osv-url names a mirror)")
    if result.vulnerable:
        return 1
    if result.not_audited and opts.strict:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
