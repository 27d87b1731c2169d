"""The ``lvyue`` command: set up the database, deploy, start, list, claim, complete, run the worker."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import datetime
from pathlib import Path

import click

from . import config
from .runtime import Runtime
from .services import accounts, attachments, deployments, instances, integrity, mail, substitutes, tasks, timers
from .services.errors import DeployRefused, InvalidInput, ServiceError


def _runtime(ctx: click.Context) -> Runtime:
    if ctx.obj is None:
        ctx.obj = Runtime(ctx.find_root().params["db"] or config.database_url(), business_tz=config.business_tz())
    return ctx.obj


def _fail(err: ServiceError) -> None:
    click.secho(f"error: {err.message}", fg="red", err=True)
    if isinstance(err, InvalidInput):
        for field, msg in err.errors.items():
            click.echo(f"  {field or '(form)'}: {msg}", err=True)
    if isinstance(err, DeployRefused):
        for problem in err.problems:
            click.echo(f"  - {problem}", err=True)
    sys.exit(1)


def _json_arg(value: str | None) -> dict:
    if not value:
        return {}
    try:
        text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
    except (OSError, UnicodeDecodeError) as err:
        raise click.BadParameter(f"cannot read {value[1:]}: {err}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise click.BadParameter(f"not valid JSON: {err}") from err
    if not isinstance(data, dict):
        raise click.BadParameter("must be a JSON object")
    return data


@click.group()
@click.option("--db", envvar="LVYUE_DATABASE_URL", default=None, help="Database URL (default: SQLite in instance/).")
@click.pass_context
def main(ctx: click.Context, db: str | None) -> None:
    """Lvyue (履约): contract workflows from quote to cash."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # SpiffWorkflow logs every task state change at INFO
    for name in ("spiff", "spiff.task", "spiff.workflow", "spiff.metrics"):
        logging.getLogger(name).setLevel(logging.WARNING)


@main.command("init-db")
@click.option("--demo/--no-demo", default=True, help="Create the demo users.")
@click.option("--demo-contracts/--no-demo-contracts", default=False,
              help="Also create demo contracts in every stage (only into a database without contracts).")
@click.pass_context
def init_db(ctx: click.Context, demo: bool, demo_contracts: bool) -> None:
    """Create or upgrade the schema, add roles and demo users, deploy the process set."""
    from .schema import upgrade

    rt = _runtime(ctx)
    upgrade(rt.engine)
    accounts.ensure_roles(rt)
    if demo:
        made = accounts.ensure_demo_users(rt)
        click.echo(f"demo users: {len(made)} created (password '{accounts.DEMO_PASSWORD}')")
    try:
        for result in deployments.deploy_path(rt, config.bpmn_dir(), comment="init-db"):
            state = "deployed" if result.created else "unchanged"
            click.echo(f"{result.process_key} v{result.version}: {state}")
    except ServiceError as err:
        _fail(err)
    if demo_contracts:
        _seed_demo(rt, progress=True)


def _seed_demo(rt: Runtime, progress: bool) -> None:
    from .demo import seed_demo

    try:
        keys = seed_demo(rt, progress=progress)
    except ServiceError as err:
        _fail(err)
    if not keys:
        click.echo("demo contracts: none created (the database already has contracts)")
        return
    click.echo(f"demo contracts: {len(keys)} created")
    for key in keys:
        view = instances.get_instance(rt, key)
        work = ", ".join(f"{spec} [{holder or role}]" for _, spec, role, holder in view.open_tasks)
        work = work or view.end_event or "-"
        click.echo(f"  {key:<14} {view.stage or '-':<12} {work:<46} {view.customer_name or ''}")


@main.command("seed-demo")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.pass_context
def seed_demo_cmd(ctx: click.Context, progress: bool) -> None:
    """Create demo contracts in every stage (needs init-db; does nothing if any contract exists)."""
    _seed_demo(_runtime(ctx), progress)


@main.command("demo")
@click.option("--contracts", "count", default=50, show_default=True, type=click.IntRange(1, 100_000),
              help="How many quote-to-cash contracts to drive through the process.")
@click.option("--seed", type=int, default=None,
              help="Random seed: the same seed and count give the same contracts (default: a new one, printed).")
@click.option("--days", default=180, show_default=True, type=click.IntRange(1, 3650),
              help="The contracts start over this many past days.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.pass_context
def demo_cmd(ctx: click.Context, count: int, seed: int | None, days: int, progress: bool) -> None:
    """Drive N demo contracts through the real process over the past days, in every stage (needs init-db; adds
    to whatever the database holds)."""
    from .demo_contracts import generate

    try:
        report = generate(_runtime(ctx), count, seed=seed, days=days, progress=progress)
    except ServiceError as err:
        _fail(err)
    click.echo(report.summary())


@main.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--comment", default=None)
@click.option("--as", "username", default=None, help="Deploying user (a process owner).")
@click.pass_context
def deploy(ctx: click.Context, path: Path, comment: str | None, username: str | None) -> None:
    """Deploy a .bpmn file (with the forms and DMN it names) or every .bpmn in a folder."""
    rt = _runtime(ctx)
    try:
        actor = accounts.get_user(rt, username) if username else None
        if actor is not None and not actor.roles & {"process_owner", "admin"}:
            raise ServiceError(f"{username} is not a process owner")
        for result in deployments.deploy_path(rt, path, actor, comment):
            state = "deployed" if result.created else "unchanged (same content as the latest version)"
            click.echo(f"{result.process_key} v{result.version}: {state}")
    except ServiceError as err:
        _fail(err)


@main.command()
@click.argument("process_key")
@click.option("--as", "username", required=True)
@click.option("--data", default=None, help="Start data as JSON, or @file.json.")
@click.option("--key", "business_key", default=None, help="Business key (default: generated).")
@click.pass_context
def start(ctx: click.Context, process_key: str, username: str, data: str | None, business_key: str | None) -> None:
    """Start an instance of a deployed process."""
    rt = _runtime(ctx)
    try:
        user = accounts.get_user(rt, username)
        result = instances.start_instance(rt, process_key, user, _json_arg(data), business_key)
    except ServiceError as err:
        _fail(err)
    click.echo(f"started {result.business_key} (instance {result.instance_id}, version {result.version})")
    for item in tasks.open_tasks_of_instance(rt, result.instance_id):
        click.echo(f"  task {item.id}: {item.name} [{item.role}]")


@main.command("tasks")
@click.option("--as", "username", required=True)
@click.option("--scope", type=click.Choice(["mine", "roles", "open"]), default="open")
@click.option("--page", default=1, show_default=True)
@click.pass_context
def tasks_cmd(ctx: click.Context, username: str, scope: str, page: int) -> None:
    """List tasks: mine (assigned to me), roles (unclaimed, my roles), open (all open of my roles)."""
    rt = _runtime(ctx)
    try:
        user = accounts.get_user(rt, username)
        result = tasks.list_tasks(rt, user, scope, page=page)
    except ServiceError as err:
        _fail(err)
    if not result.items:
        click.echo("no tasks")
        return
    click.echo(f"{'id':>6}  {'contract':<14} {'task':<34} {'role':<12} {'holder':<8} {'due':<16} customer")
    for t in result.items:
        due = t.due_at.strftime("%Y-%m-%d %H:%M") if t.due_at else "-"
        overdue = t.due_at is not None and t.due_at < rt.clock.now()
        line = (f"{t.id:>6}  {t.business_key:<14} {t.name[:34]:<34} {t.role:<12} {t.assignee or '-':<8} "
                f"{due:<16} {t.customer_name or ''}")
        click.secho(line, fg="red" if overdue else None)
    click.echo(f"page {result.page} of {result.pages} ({result.total} tasks)")


@main.command()
@click.argument("task_id", type=int)
@click.option("--as", "username", required=True)
@click.pass_context
def claim(ctx: click.Context, task_id: int, username: str) -> None:
    """Claim a task of one of your roles."""
    rt = _runtime(ctx)
    try:
        item = tasks.claim(rt, task_id, accounts.get_user(rt, username))
    except ServiceError as err:
        _fail(err)
    click.echo(f"task {item.id} ({item.name}) is now held by {item.assignee}")


@main.command()
@click.argument("task_id", type=int)
@click.option("--as", "username", required=True)
@click.option("--data", default=None, help="Form data as JSON, or @file.json.")
@click.option("--version", "expected_version", type=int, default=None, help="Fail if the instance moved on.")
@click.option("--file", "files", multiple=True, metavar="FIELD=PATH",
              help="Upload a file into a file field of the form first, e.g. customer_evidence=signed.pdf.")
@click.pass_context
def complete(ctx: click.Context, task_id: int, username: str, data: str | None, expected_version: int | None,
             files: tuple[str, ...]) -> None:
    """Complete a task with its form data (validated against the task's form)."""
    rt = _runtime(ctx)
    values = _json_arg(data)
    uploads = []
    for item in files:
        field, _, path = item.partition("=")
        if not field or not path:
            raise click.BadParameter(f"{item!r}: give FIELD=PATH", param_hint="--file")
        try:
            uploads.append((field, Path(path).name, Path(path).read_bytes()))
        except OSError as err:
            raise click.BadParameter(f"cannot read {path}: {err}", param_hint="--file") from err
    try:
        user = accounts.get_user(rt, username)
        for field, name, content in uploads:  # kept first, then named in the data by their reference
            values[field] = attachments.attach_file(rt, task_id, user, field, name, content)
        result = tasks.complete(rt, task_id, user, values, expected_version)
    except ServiceError as err:
        _fail(err)
    click.echo(f"completed task {task_id}; instance {result.instance_id} is {result.instance_status} "
               f"(version {result.instance_version})")
    for item in tasks.open_tasks_of_instance(rt, result.instance_id):
        click.echo(f"  task {item.id}: {item.name} [{item.role}]")


@main.command()
@click.argument("key")
@click.pass_context
def show(ctx: click.Context, key: str) -> None:
    """Show an instance: status, stage, open tasks and the path taken."""
    rt = _runtime(ctx)
    try:
        view = instances.get_instance(rt, int(key) if key.isdigit() else key)
    except ServiceError as err:
        _fail(err)
    click.echo(f"{view.business_key} ({view.process_key} v{view.deployment_version}): {view.status}, "
               f"stage {view.stage}, customer {view.customer_name or '-'}, amount {view.amount or '-'}")
    for task_id, spec_id, role, holder in view.open_tasks:
        click.echo(f"  open task {task_id}: {spec_id} [{role}] held by {holder or 'nobody'}")
    click.echo("  path: " + " → ".join(view.path))


@main.command()
@click.option("--once", is_flag=True, help="Fire what is due now and exit.")
@click.option("--interval", default=1.0, show_default=True,
              help="Longest pause between polls: an idle worker wakes when the next timer falls due.")
@click.option("--name", default="worker", show_default=True)
@click.pass_context
def worker(ctx: click.Context, once: bool, interval: float, name: str) -> None:
    """Fire due timers and send the e-mail outbox (safe to run several at once on PostgreSQL)."""
    rt = _runtime(ctx)
    smtp = config.smtp_settings()
    if not smtp.enabled:
        logging.getLogger("lvyue.worker").info("LVYUE_SMTP_HOST is not set: e-mails stay in the outbox")
    while True:
        started = rt.clock.now()
        report, sent = _worker_pass(rt, smtp, name)
        if once:
            if report is None:
                raise click.ClickException("firing the due timers failed; see the log")
            click.echo(f"fired {report.fired} timer(s); {report.errors} error(s)")
            if sent is not None:
                click.echo(str(sent))
            return
        if report is None or not report.fired:  # after a pass that fired something, poll at once: more may be due
            try:
                pause = _pause(rt, started, interval)
            except Exception:  # noqa: BLE001 - the database may be briefly away: wait a full interval
                logging.getLogger("lvyue.worker").exception("reading the next due timer failed")
                pause = interval
            time.sleep(pause)


def _pause(rt: Runtime, started: datetime, interval: float) -> float:
    """Seconds until the first waiting timer that was not yet due when the pass ``started``, at most
    ``interval``. Timers already due then were tried by that pass (another worker or a completion held their
    instance, or the engine refused them): they wait for the next wake-up, so nothing spins on them."""
    due = timers.next_due(rt, after=started)
    if due is None:
        return interval
    return min(interval, max(0.0, (due - rt.clock.now()).total_seconds()))


def _worker_pass(rt: Runtime, smtp: config.SmtpSettings, name: str):
    """One round of the worker: fire due timers, hand tasks to and back from substitutes, send due mail (if
    SMTP is set), anchor the audit chains when an anchor is due. A substitutes, mail or anchor failure is logged
    and does not stop the timers; the next round retries. A failure of one timer is recorded against it by
    ``fire_due_timers``; should the pass itself fail (the database is away), it is logged, the report is None,
    and the rest of the round still runs."""
    log = logging.getLogger("lvyue.worker")
    try:
        report = timers.fire_due_timers(rt, worker=name)
    except Exception:  # noqa: BLE001 - a timer's own failure is recorded against it; this is the database
        log.exception("firing the due timers failed")  # being away and the like: mail and anchors still go
        report = None
    if report is not None and (report.fired or report.errors):
        log.info("fired %d timer(s) on %d instance(s); %d error(s), %d conflict(s)", report.fired,
                 report.instances, report.errors, report.conflicts)
    try:  # away ranges that started or ended: their tasks to the substitute and back (services/substitutes.py)
        swept = substitutes.apply_due(rt)
        if swept.changed:
            log.info("substitutes: %s", swept)
    except Exception:  # noqa: BLE001 - as for mail: the next round retries
        log.exception("handing tasks to or back from substitutes failed")
    try:
        anchored = integrity.anchor_if_due(rt, config.anchor_interval())
        if anchored:
            log.info("audit anchor #%d over %d chain(s): %s", anchored.id, anchored.chains, anchored.digest)
    except Exception:  # noqa: BLE001 - as for mail: the next round retries
        log.exception("anchoring the audit chains failed")
    sent = None
    if smtp.enabled:
        try:
            sent = mail.send_due(rt, smtp)
        except Exception:  # noqa: BLE001 - the database may be briefly away; timers must keep firing
            log.exception("sending mail failed")
        if sent is not None and sent.claimed:
            log.info("mail: %s", sent)
    return report, sent


@main.command("send-mail")
@click.option("--limit", default=100, show_default=True, help="At most this many mails.")
@click.pass_context
def send_mail(ctx: click.Context, limit: int) -> None:
    """Send the due e-mails of the outbox once (LVYUE_SMTP_HOST and friends) and print the counts."""
    smtp = config.smtp_settings()
    if not smtp.enabled:
        click.secho("error: mail sending is disabled: set LVYUE_SMTP_HOST", fg="red", err=True)
        sys.exit(1)
    click.echo(str(mail.send_due(_runtime(ctx), smtp, limit=limit)))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
@click.option("--worker/--no-worker", "with_worker", default=True, show_default=True,
              help="Also fire timers and send mail from a background thread (for a one-process setup).")
@click.pass_context
def run(ctx: click.Context, host: str, port: int, with_worker: bool) -> None:
    """Serve the web app (development server; production runs a WSGI server and `lvyue worker`)."""
    import threading

    from webapp import Config, create_app

    rt = _runtime(ctx)
    config_class = Config
    if host in ("127.0.0.1", "localhost", "::1") and Config.SESSION_COOKIE_SECURE:
        # plain http on this machine only: a Secure cookie would never come back
        config_class = type("LoopbackConfig", (Config,), {"SESSION_COOKIE_SECURE": False,
                                                          "REMEMBER_COOKIE_SECURE": False})
    app = create_app(config_class, runtime=rt)
    if with_worker:
        threading.Thread(target=_background_worker, args=(rt,), daemon=True, name="lvyue-worker").start()
    click.echo(f"Lvyue on http://{host}:{port}/ (demo users: password '{accounts.DEMO_PASSWORD}')")
    app.run(host=host, port=port, debug=False, threaded=True)


def _background_worker(rt: Runtime, interval: float = 5.0) -> None:
    smtp = config.smtp_settings()
    while True:
        try:
            _worker_pass(rt, smtp, "web-worker")
        except Exception:  # noqa: BLE001 - keep serving pages; the next pass retries
            logging.getLogger("lvyue.worker").exception("background worker pass failed")
        time.sleep(interval)


@main.command("create-token")
@click.argument("username")
@click.option("--name", "token_name", required=True, help="What the token is for, e.g. 'ERP integration'.")
@click.option("--role", "roles", multiple=True,
              help="Create USERNAME as a service account with this role first, if it does not exist (repeatable).")
@click.option("--display-name", default=None, help="Display name of a service account created with --role.")
@click.pass_context
def create_token(ctx: click.Context, username: str, token_name: str, roles: tuple[str, ...],
                 display_name: str | None) -> None:
    """Issue an API token for a service account and print it (once: only its hash is stored)."""
    from .services import tokens
    from .services.errors import NotFound

    rt = _runtime(ctx)
    try:
        try:
            user_id = accounts.get_user(rt, username).id
        except NotFound:
            if not roles:
                raise NotFound(f"no active user '{username}'; "
                               "add --role ROLE to create it as a service account") from None
            user_id = accounts.create_service_account(rt, username, display_name, list(roles), actor=None).id
            click.echo(f"created service account {username} ({', '.join(sorted(set(roles)))})", err=True)
        token = tokens.issue_token(rt, user_id, token_name, actor=None)
    except ServiceError as err:
        _fail(err)
    click.echo(token)
    click.echo("This token is shown only once; store it now. Use it as 'Authorization: Bearer <token>'.", err=True)


def _new_password() -> str:
    """Asked at the terminal without echo (twice), or read from standard input when it is not a terminal: a
    password never travels as a command-line argument, where `ps` and the shell history would keep it."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


@main.command("add-user")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, help="A role code, e.g. admin (repeatable).")
@click.option("--name", "display_name", default=None)
@click.option("--team", default=None)
@click.option("--email", default=None)
@click.pass_context
def add_user_cmd(ctx: click.Context, username: str, roles: tuple[str, ...], display_name: str | None,
                 team: str | None, email: str | None) -> None:
    """Create a person's account, e.g. the first administrator of a database set up with `init-db --no-demo`."""
    rt = _runtime(ctx)
    try:
        made = accounts.add_user(rt, None, username, _new_password(), list(roles), display_name, team, email)
    except ServiceError as err:
        _fail(err)
    click.echo(f"created {made.username} ({', '.join(made.roles)})")


@main.command("set-password")
@click.argument("username")
@click.pass_context
def set_password_cmd(ctx: click.Context, username: str) -> None:
    """Give an account a new password (for example a demo account before the server goes live)."""
    rt = _runtime(ctx)
    try:
        accounts.set_password(rt, username, _new_password(), actor=None)
    except ServiceError as err:
        _fail(err)
    click.echo(f"password of {username} changed")


if __name__ == "__main__":
    main()


@main.command("check")
@click.option("--batch", default=200, show_default=True, help="Instances read per snapshot.")
@click.option("--audit/--no-audit", "with_audit", default=True, show_default=True,
              help="Also verify the audit hash chains and anchors.")
@click.pass_context
def check(ctx: click.Context, batch: int, with_audit: bool) -> None:
    """Check that every instance's stored workflow agrees with its task, timer, path and audit rows (safe on a
    live database); exit 1 and name each problem."""
    from tqdm import tqdm

    from .services import consistency

    rt = _runtime(ctx)
    with tqdm(total=consistency.count_instances(rt), desc="checking", unit="instance", file=sys.stderr) as bar:
        report = consistency.check_all(rt, batch=max(1, batch), progress=bar.update, audit=with_audit)
    for problem in report.problems:
        click.secho(f"PROBLEM {problem}", fg="red")
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@main.command("backfill-records")
@click.pass_context
def backfill_records(ctx: click.Context) -> None:
    """Give the contracts, complaints and ownership requests that ran before the business records existed
    (migration 0011) their customer, quote, contract, payment and complaint records, from their process data."""
    from tqdm import tqdm

    from .services import records_backfill

    rt = _runtime(ctx)
    with tqdm(desc="backfilling", unit="instance", file=sys.stderr) as bar:
        report = records_backfill.backfill(rt, progress=bar.update)
    click.echo(f"{report.filled} of {report.instances} instances without records were given them; the others have "
               "nothing to record yet (no quote submitted)")


@main.group()
def audit() -> None:
    """Check and anchor the tamper-evident audit record."""


@audit.command("verify")
@click.argument("business_key", required=False)
@click.option("--digest", help="An anchor digest kept outside the database: it must still be in the anchor chain.")
@click.pass_context
def audit_verify(ctx: click.Context, business_key: str | None, digest: str | None) -> None:
    """Verify one contract's audit chain, or every chain and anchor; exit 1 and name each break."""
    from tqdm import tqdm

    rt = _runtime(ctx)
    try:
        if business_key:
            report = integrity.verify_instance(rt, business_key)
        else:
            with tqdm(total=integrity.count_events(rt), desc="verifying", unit="event", file=sys.stderr) as bar:
                report = integrity.verify_all(rt, progress=bar.update, digest=digest)
    except ServiceError as err:
        _fail(err)
    for b in report.breaks:
        click.secho(f"BROKEN {b}", fg="red")
    click.echo(report.summary())
    sys.exit(0 if report.ok else 1)


@audit.command("anchor")
@click.pass_context
def audit_anchor(ctx: click.Context) -> None:
    """Anchor the chains that moved since the last anchor and print the digest (keep it outside the
    database: a mail, a ticket, a notary)."""
    rt = _runtime(ctx)
    made = integrity.anchor(rt)
    latest = made or integrity.latest_anchor(rt)
    if latest is None:
        click.echo("nothing to anchor yet")
        return
    verb = "anchored" if made else "nothing moved since"
    click.echo(f"{verb} anchor #{latest.id} at {latest.at:%Y-%m-%d %H:%M:%S} UTC over {latest.chains} chain(s)")
    click.echo(f"digest {latest.digest}")
