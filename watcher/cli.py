"""The ``watcher`` command line: thin click commands over ``service`` and the DAO.

Only this module prints, and it gives every command its exit status: each ``WatcherError``
becomes ``error: <message>`` and exit status 1; ``-v`` shows debug logs and lets tracebacks
through. (One other exit: a stopping daemon whose jobs outlast their grace ends the process
in ``service``.)
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from watcher.config import Config, format_duration, load_config, parse_duration
from watcher.errors import WatcherError, redact_url, url_origin
from watcher.render import iso_time
from watcher.types import Article, FeedState, Hit, OutboxItem, OutboxStatus, StoredHit

if TYPE_CHECKING:
    from rich.console import Console

    from watcher.match import Explanation

F = TypeVar("F", bound=Callable[..., Any])


@functools.cache
def _console() -> Console:
    # Imported on first use: rich is a tenth of the start-up of a command that prints no table
    # (`poll --json`, `validate`), and start-up is most of a short command's time.
    from rich.console import Console

    # Piped output (grep, logs, tests) gets whole rows instead of columns wrapped at 80.
    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 400)


def _fails_cleanly(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except WatcherError as e:
            if click.get_current_context().find_root().obj.get("verbose"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _config(ctx: click.Context) -> Config:
    if "config" not in ctx.obj:
        ctx.obj["config"] = load_config(ctx.obj["config_path"])
        for warning in ctx.obj["config"].warnings:
            click.echo(f"warning: {warning}", err=True)
    return ctx.obj["config"]  # type: ignore[no-any-return]


def _watcher(ctx: click.Context, *, upgrade: bool, polls: bool = False) -> Any:
    config = _config(ctx)
    from watcher.service import make_watcher

    watcher = make_watcher(config, upgrade=upgrade, polls=polls)
    ctx.call_on_close(watcher.close)
    # What exists now (modules, config, engine) lives until exit. Frozen, the cycle collector
    # never scans it again: not in a daemon's every full collection, nor in the final one
    # at exit, which is a tenth of a second of a short command's time.
    gc.freeze()
    return watcher


@click.group()
@click.option(
    "-c",
    "--config",
    "config_path",
    default="feeds.yaml",
    envvar="WATCHER_CONFIG",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Configuration file (env WATCHER_CONFIG).",
)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging; show tracebacks.")
@click.version_option(package_name="watcher")
@click.pass_context
def cli(ctx: click.Context, config_path: str, verbose: bool) -> None:
    """Watch news feeds for tracked speakers and themes, and alert at once."""
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, verbose=verbose)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("apscheduler", "alembic", "urllib3", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
    # urllib3 logs each request's path with its query ("GET /feed?token=... HTTP/1.1"),
    # which may hold a feed's or webhook's token.
    pool_log = logging.getLogger("urllib3.connectionpool")
    if not any(isinstance(f, _RedactArgs) for f in pool_log.filters):
        pool_log.addFilter(_RedactArgs())


class _RedactArgs(logging.Filter):
    """Masks credentials and token-like query values in a log record's string arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_url(a) if isinstance(a, str) and ("?" in a or "@" in a) else a for a in record.args
            )
        return True


@cli.command()
@click.pass_context
@_fails_cleanly
def run(ctx: click.Context) -> None:
    """Run the daemon: poll every feed on its schedule and deliver alerts until stopped."""
    from watcher.service import Daemon

    # A reload request (systemctl reload) during start-up must not kill the daemon;
    # Daemon.run installs the real handler.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    watcher = _watcher(ctx, upgrade=True, polls=True)
    sys.exit(Daemon(watcher, ctx.obj["config_path"]).run())


@cli.command()
@click.option("--feed", "names", multiple=True, metavar="NAME", help="Poll only this feed (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed, with per-stage timings.")
@click.pass_context
@_fails_cleanly
def poll(ctx: click.Context, names: tuple[str, ...], as_json: bool) -> None:
    """Poll every feed (or those named) once, deliver what is due, and exit."""
    config = _config(ctx)
    unknown = sorted(set(names) - {f.name for f in config.feeds})
    if unknown:
        raise WatcherError(f"no feed named {', '.join(map(repr, unknown))}", "see `watcher validate`")
    watcher = _watcher(ctx, upgrade=True, polls=True)
    results = watcher.poll(list(names) or None)
    report = watcher.deliver()
    if as_json:
        for r in results:
            click.echo(json.dumps(dataclasses.asdict(r), ensure_ascii=False))
        click.echo(json.dumps({"delivery": {"sent": report.sent, "failed": report.failed, "dead": report.dead}}))
        return
    from rich.table import Table

    table = Table("feed", "result", "new", "hits")
    for r in results:
        outcome = f"[red]failed: {r.error}[/]" if r.error else ("not modified" if r.not_modified else "ok")
        table.add_row(r.feed, outcome, str(r.new), str(r.hits))
    _console().print(table)
    _console().print(f"alerts: {report}")


@cli.command()
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON object per hit (or, with --explain, per verdict) per line."
)
@click.option(
    "--explain", is_flag=True, help="For every article and watch, what was found where and why it hit or did not."
)
@click.option("--watch", "watches", multiple=True, help="Only this speaker or theme (repeatable).")
@click.argument("sources", nargs=-1, required=True)
@click.pass_context
@_fails_cleanly
def match(ctx: click.Context, as_json: bool, explain: bool, watches: tuple[str, ...], sources: tuple[str, ...]) -> None:
    """Dry run: parse feed files or URLs and print the hits. Stores and sends nothing.

    With --explain, tune a theme on real articles: each verdict lists the groups met and
    where (headline, lead, body), the vetoes, the places where all groups meet, and the score."""
    from watcher.fetch import Fetcher
    from watcher.match import Matcher
    from watcher.parse import parse_feed

    config = _config(ctx)
    known = {*config.watch_names}
    unknown = [w for w in watches if w not in known]
    if unknown:
        raise click.UsageError(f"no speaker or theme named {', '.join(map(repr, unknown))}; see `watcher validate`")
    speakers = [s for s in config.speakers if not watches or s.name in watches]
    themes = [t for t in config.themes if not watches or t.name in watches]
    matcher = Matcher(speakers, themes)
    fetcher = Fetcher()
    try:
        for source in sources:
            fetched = fetcher.fetch(source, timeout=config.defaults.timeout.total_seconds())
            parsed = parse_feed(fetched.body or b"", url=source, headers=fetched.headers)
            for article in parsed.articles:
                if explain:
                    _print_explanations(article, matcher.explain(article), as_json)
                    continue
                for hit in matcher.match(article):
                    if as_json:
                        click.echo(
                            json.dumps(
                                _hit_json(article.entry_id, article.link, article.title, hit), ensure_ascii=False
                            )
                        )
                    else:
                        _print_hit(hit, article.title, article.link)
    finally:
        fetcher.close()


def _print_explanations(article: Article, explanations: list[Explanation], as_json: bool) -> None:
    if as_json:
        for e in explanations:
            verdict = {"watch": e.watch, "kind": e.kind, "hit": e.hit is not None, "reasons": list(e.reasons)}
            if e.hit is not None:
                verdict |= {"statement": e.hit.statement, "score": e.hit.score}
            click.echo(
                json.dumps({"entry_id": article.entry_id, "title": article.title, **verdict}, ensure_ascii=False)
            )
        return
    click.echo(f"== {article.title}" + (f" <{article.link}>" if article.link else ""))
    for e in explanations:
        if e.hit is None:
            outcome = "no hit"
        elif e.kind == "speaker":
            outcome = f"HIT, {'statement' if e.hit.statement else 'mention'}"
        else:
            outcome = f"HIT, score {e.hit.score}"
        click.echo(f"  {e.watch} ({e.kind}): {outcome}")
        for reason in e.reasons:
            click.echo(f"      {reason}")


@cli.command()
@click.pass_context
@_fails_cleanly
def validate(ctx: click.Context) -> None:
    """Check the configuration and print what it watches; exit 1 on any error."""
    config = _config(ctx)
    click.echo(f"{config.path}: ok")
    click.echo(f"database: {redact_url(config.database_url)}")
    click.echo(f"feeds ({len(config.feeds)}):")
    for f in config.feeds:
        click.echo(f"  {f.name}: {redact_url(f.url)} every {format_duration(f.interval)}")
    click.echo(f"speakers ({len(config.speakers)}):")
    for s in config.speakers:
        aliases = f" (also {', '.join(s.aliases)})" if s.aliases else ""
        click.echo(f"  {s.name}{aliases}")
    click.echo(f"themes ({len(config.themes)}):")
    for t in config.themes:
        groups = " AND ".join("(" + " | ".join(g) + ")" for g in t.all_of)
        extra = f" AND ANY OF ({' | '.join(t.any_of)})" if t.any_of else ""
        veto = f" BUT NOT ({' | '.join(t.none_of)})" if t.none_of else ""
        near = f"within {t.near} words" if isinstance(t.near, int) else f"in one {t.near}"
        where = "" if t.where == "anywhere" else f", in the {t.where}"
        times = "" if t.at_least == 1 else f", {t.at_least} times"
        click.echo(f"  {t.name}: {groups}{extra}{veto}, {near}{where}{times}, score {t.min_score}+")
    click.echo(f"channels ({len(config.channels)}):")
    for c in config.channels:
        target = ", ".join(c.to) if c.type == "email" else url_origin(c.url or "")
        when = "immediate" if c.digest is None else f"digest every {format_duration(c.digest)}"
        watches = ", ".join(c.watches) if c.watches is not None else "all watches"
        only = ", statements only" if c.statements_only else ""
        click.echo(f"  {c.name}: {c.type} to {target}, {when}, {watches}{only}")


@cli.command()
@click.option("--since", default="24h", show_default=True, help="How far back, as a duration (e.g. 7d).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=None, help="At most this many hits.")
@click.pass_context
@_fails_cleanly
def hits(ctx: click.Context, since: str, as_json: bool, limit: int | None) -> None:
    """Stored hits, newest first."""
    watcher = _watcher(ctx, upgrade=False)
    stored = watcher.store.list_hits(since=watcher.now() - _parse_since(since), limit=limit)
    for s in stored:
        if as_json:
            click.echo(json.dumps(_stored_hit_json(s), ensure_ascii=False))
        else:
            _print_hit(s.hit, s.title, s.link, f"{s.created:%Y-%m-%d %H:%M} {s.feed}")
    if not as_json and not stored:
        click.echo(f"no hits in the last {since}")


@cli.command()
@click.option("--retry", "retry", multiple=True, metavar="NAME", help="Poll this failing or disabled feed again soon.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed per line.")
@click.pass_context
@_fails_cleanly
def feeds(ctx: click.Context, retry: tuple[str, ...], as_json: bool) -> None:
    """Each feed's state: last poll, status, errors, next poll, entries seen."""
    watcher = _watcher(ctx, upgrade=False)
    for name in retry:
        if not watcher.store.retry_feed(name, watcher.now()):
            raise WatcherError(f"no feed named {name!r} in the database", "see `watcher feeds`")
        click.echo(f"{name}: will be polled at the next chance")
    states = watcher.store.feed_states([f.name for f in watcher.config.feeds])
    if as_json:
        for s in states:
            click.echo(json.dumps(_feed_json(s), ensure_ascii=False))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("feed", "status", "last poll", "next poll", "entries", "failures", "last error")
    for s in states:
        style = {"ok": "green", "failed": "red", "disabled": "red", "empty": "yellow"}.get(s.status, "")
        table.add_row(
            s.name,
            f"[{style}]{s.status}[/]" if style else s.status,
            _when(s.last_polled_at),
            _when(s.next_poll_at),
            str(s.entries_seen),
            str(s.consecutive_failures),
            Text(s.last_error or ""),  # may quote a stranger's text: never rich markup
        )
    _console().print(table)


@cli.group()
def db() -> None:
    """Database administration."""


@db.command("upgrade")
@click.pass_context
@_fails_cleanly
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending database migrations."""
    from watcher.store import Store

    store = Store(_config(ctx).database_url)
    try:
        store.upgrade()
    finally:
        store.close()
    click.echo(f"database {redact_url(store.url)} is up to date")


@cli.group(invoke_without_command=True)
@click.option("--status", type=click.Choice(["due", "failed", "dead", "sent"]), help="Only rows in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_context
@_fails_cleanly
def outbox(ctx: click.Context, status: OutboxStatus | None, as_json: bool, limit: int) -> None:
    """List alert deliveries and their last error."""
    if ctx.invoked_subcommand is not None:
        return
    watcher = _watcher(ctx, upgrade=False)
    items = watcher.store.list_outbox(status, limit=limit)
    if as_json:
        for item in items:
            click.echo(json.dumps(_outbox_json(item), ensure_ascii=False))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table("id", "channel", "status", "attempts", "next attempt", "watch", "title", "last error")
    for i in items:
        table.add_row(
            str(i.id),
            i.channel,
            i.status,
            str(i.attempts),
            _when(i.next_attempt_at),
            Text(i.stored.hit.watch),
            Text(i.stored.title[:60]),
            Text(i.last_error or ""),
        )
    _console().print(table)


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every failed or dead row.")
@click.pass_context
@_fails_cleanly
def outbox_retry(ctx: click.Context, ids: tuple[int, ...], everything: bool) -> None:
    """Make failed or dead rows due now."""
    if not ids and not everything:
        raise click.UsageError("give row ids or --all")
    watcher = _watcher(ctx, upgrade=False)
    count = watcher.store.retry(None if everything else list(ids), watcher.now())
    click.echo(f"{count} rows due again; `watcher poll` or the daemon will send them")


@cli.command("send-test")
@click.argument("channel")
@click.pass_context
@_fails_cleanly
def send_test(ctx: click.Context, channel: str) -> None:
    """Send a sample alert through CHANNEL and report the server's answer."""
    from watcher.deliver import make_channels, utcnow
    from watcher.deliver import send_test as send

    channels = make_channels(_config(ctx))
    if channel not in channels:
        raise WatcherError(f"no channel named {channel!r}", f"configured: {', '.join(channels) or 'none'}")
    click.echo(f"{channel}: {send(channels[channel], utcnow())}")


@cli.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("watcher-demo"),
    show_default=True,
    help="Where the demo writes its database and mail.",
)
@click.pass_context
@_fails_cleanly
def demo(ctx: click.Context, directory: Path) -> None:
    """Show the product offline: sample feeds on loopback, the shipped watches, a local mail sink."""
    from watcher.demo import run_demo

    if not ctx.find_root().obj["verbose"]:
        logging.getLogger("watcher").setLevel(logging.WARNING)  # the summary below says it all
    result = run_demo(_config(ctx), directory)
    click.echo(
        f"served {result.feeds} sample feeds on {result.base_url} and polled them with "
        f"{len(result.watches)} watches from {ctx.obj['config_path']}"
    )
    for s in result.hits:
        _print_hit(s.hit, s.title, s.link, s.feed)
    click.echo(f"{len(result.emails)} alert emails delivered to the local mail sink, written to:")
    for path in result.emails:
        click.echo(f"  {path}")
    click.echo(f"database: {result.database}")
    click.echo(f"see the stored hits: WATCHER_DATABASE_URL={result.database} watcher hits --since 30d")


def _print_hit(hit: Hit, title: str, link: str | None, where: str = "") -> None:
    from rich.markup import escape

    what = "statement" if hit.statement else ("mention" if hit.kind == "speaker" else "theme")
    _console().print(f"[bold]{escape(hit.watch)}[/] ({what}, score {hit.score}) {escape(where)}".rstrip(), markup=True)
    _console().print(f"  {title}", markup=False)
    if link:
        _console().print(f"  {link}", markup=False)
    _console().print(f"  evidence: {hit.evidence_text}", markup=False)


def _hit_json(entry_id: str | None, link: str | None, title: str, hit: Hit) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "link": link,
        "title": title,
        "watch": hit.watch,
        "kind": hit.kind,
        "statement": hit.statement,
        "score": hit.score,
        "evidence": hit.evidence_text,
    }


def _stored_hit_json(s: StoredHit) -> dict[str, Any]:
    return {**_hit_json(s.entry_id, s.link, s.title, s.hit), "feed": s.feed, "created": iso_time(s.created)}


def _feed_json(s: FeedState) -> dict[str, Any]:
    return {
        "name": s.name,
        "url": redact_url(s.fetch_url),
        "status": s.status,
        "last_error": s.last_error,
        "last_polled_at": iso_time(s.last_polled_at),
        "last_success_at": iso_time(s.last_success_at),
        "next_poll_at": iso_time(s.next_poll_at),
        "entries_seen": s.entries_seen,
        "consecutive_failures": s.consecutive_failures,
    }


def _outbox_json(i: OutboxItem) -> dict[str, Any]:
    return {
        "id": i.id,
        "channel": i.channel,
        "status": i.status,
        "attempts": i.attempts,
        "next_attempt_at": iso_time(i.next_attempt_at),
        "last_error": i.last_error,
        "alert_id": i.alert_id,
        "watch": i.stored.hit.watch,
        "title": i.stored.title,
    }


def _parse_since(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 24h, 7d, 30m") from e


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def main(argv: Iterable[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="watcher", obj={})
