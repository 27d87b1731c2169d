"""CI's dependency audit: pip-audit over every package installed in the project's environment.

pip-audit alone exits 0 when the vulnerability service could not say anything about a package (PyPI answers
"not found" for a release it has no data for, and a registry mirror may answer that for all of them). A CI
step that passes without having checked anything is worse than none, so this wrapper counts what was really
audited and says so: known vulnerabilities fail the run (exit 1); a service that failed outright fails it too
(exit 2); packages the service could not look up are listed and, with ``--strict``, fail it (exit 3).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field

EDITABLE = "editable"  # our own package, installed with `pip install -e`: its code is this repository


@dataclass
class AuditResult:
    audited: list[str] = field(default_factory=list)
    vulnerable: list[tuple[str, str, str, str]] = field(default_factory=list)  # package, version, ids, fixed in
    not_audited: list[tuple[str, str]] = field(default_factory=list)  # package, why


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
    for name, version, ids, fixed in result.vulnerable:
        print(f"VULNERABLE  {name} {version}: {ids} (fixed in {fixed})")
    total = len(result.audited) + len(result.not_audited)
    print(f"dependency audit ({opts.service}): {len(result.audited)} of {total} packages audited, "
          f"{len(result.vulnerable)} known vulnerabilities")
    if result.not_audited:
        shown = ", ".join(name for name, _ in result.not_audited[:12])
        more = f" and {len(result.not_audited) - 12} more" if len(result.not_audited) > 12 else ""
        print(f"NOT AUDITED ({len(result.not_audited)}): {shown}{more}\n  e.g. {result.not_audited[0][1]}")
        if not result.audited:
            print("  the vulnerability service had data for none of them: this run checked nothing "
                  "(is the service reachable from here? --service osv --osv-url names a mirror)")
    if result.vulnerable:
        return 1
    if result.not_audited and opts.strict:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
