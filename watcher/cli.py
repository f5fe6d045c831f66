"""The ``watcher`` command line: thin click commands over ``service`` and the DAO.

Only this module prints, and it gives every command its exit status: each ``WatcherError``
becomes ``error: <message>`` and exit status 1; ``-v``, before or after the command's name,
shows debug logs and lets tracebacks through. (One other exit: a stopping daemon whose
jobs outlast their grace ends the process in ``service``.)

One spelling everywhere: in ``--json`` output a feed's name is ``feed`` and every time is
ISO 8601 UTC ending in ``Z`` (``render.iso_time``); durations read as in the config
(``15m``, ``1h``; ``config.format_duration``). Commands printed for the user to run next are
spelled the way this process was started (``.venv/bin/watcher`` when that is how), so they
work as printed.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import logging
import os
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from click.core import ParameterSource

from watcher import logs, route
from watcher.config import Config, format_duration, load_config, parse_duration
from watcher.errors import WatcherError, plural, redact_url, url_origin
from watcher.render import human_time, iso_time
from watcher.types import Article, FeedState, Hit, OutboxItem, OutboxStatus, StoredHit

if TYPE_CHECKING:
    from rich.console import Console

    from watcher.match import Explanation
    from watcher.pipeline import PollResult
    from watcher.store import Store

F = TypeVar("F", bound=Callable[..., Any])

#: `watcher poll`: some feeds failed (or are backing off after failures); the others were polled.
EXIT_SOME_FEEDS_FAILED = 3


@functools.cache
def _console() -> Console:
    # Imported on first use: rich is a tenth of the start-up of a command that prints no table
    # (`poll --json`, `validate`), and start-up is most of a short command's time.
    from rich.console import Console

    # Piped output (grep, logs, tests) gets whole rows instead of columns wrapped at 80,
    # unless COLUMNS says how wide to be.
    wide = sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit()
    return Console(soft_wrap=True, width=None if wide else 400)


def _program(ctx: click.Context, *, config: bool = True) -> str:
    """How to run watcher again from here, the way this process was run: ``watcher`` when
    that is the program on PATH, else its path (``.venv/bin/watcher``) or ``python -m
    watcher``; with ``-c PATH`` when the config was given that way (and ``config``)."""
    argv0 = sys.argv[0]
    if Path(argv0).name == "__main__.py":
        program = f"{_shown_path(sys.executable)} -m watcher"
    else:
        found = shutil.which("watcher")
        same = found is not None and os.path.exists(argv0) and os.path.samefile(found, argv0)
        program = "watcher" if same else _shown_path(argv0)
    root = ctx.find_root()
    if config and root.get_parameter_source("config_path") == ParameterSource.COMMANDLINE:
        program += f" -c {shlex.quote(root.obj['config_path'])}"
    return program


def _shown_path(path: str) -> str:
    """``path`` relative to the working folder when it is below it, else absolute; never a
    bare name, which a shell would look up on PATH."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    shown = absolute if relative.startswith("..") else relative
    return shlex.quote(shown if os.sep in shown else f".{os.sep}{shown}")


def _runnable(ctx: click.Context, text: str) -> str:
    """``text`` with every `watcher ...` command it suggests spelled as :func:`_program`."""
    return text.replace("`watcher ", f"`{_program(ctx)} ")


def _fails_cleanly(command: F) -> F:
    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            return command(*args, **kwargs)
        except WatcherError as e:
            if ctx.find_root().obj.get("verbose"):
                raise
            click.echo(f"error: {_runnable(ctx, str(e))}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _config(ctx: click.Context) -> Config:
    obj = ctx.find_root().obj
    if "config" not in obj:
        obj["config"] = load_config(obj["config_path"])
        for warning in obj["config"].warnings:
            click.echo(f"warning: {warning}", err=True)
    return obj["config"]  # type: ignore[no-any-return]


def _store(ctx: click.Context) -> Store:
    """The database alone, for the commands that only look at it (and mark it): the one
    WATCHER_DATABASE_URL names, without reading any config, else the config's ``database``."""
    from watcher.store import Store

    store = Store(os.environ.get("WATCHER_DATABASE_URL") or _config(ctx).database_url)
    ctx.call_on_close(store.close)
    store.check_schema()
    return store


def _configured_feeds(ctx: click.Context) -> list[str] | None:
    """The config's feed names, or None when the database was named by WATCHER_DATABASE_URL
    and the config not read (then every feed in the database is shown)."""
    if os.environ.get("WATCHER_DATABASE_URL"):
        return None
    return [f.name for f in _config(ctx).feeds]


def _watcher(
    ctx: click.Context, *, upgrade: bool, polls: bool = False, metrics: bool = False, serve: bool = False
) -> Any:
    config = _config(ctx)
    from watcher.service import make_watcher

    counted = None
    if metrics:
        from watcher.metrics import Metrics

        counted = Metrics()
    watcher = make_watcher(config, upgrade=upgrade, polls=polls, metrics=counted, serve=serve)
    ctx.call_on_close(watcher.close)
    # What exists now (modules, config, engine) lives until exit. Frozen, the cycle collector
    # never scans it again: not in a daemon's every full collection, nor in the final one
    # at exit, which is a tenth of a second of a short command's time.
    gc.freeze()
    return watcher


def _configure_logging(ctx: click.Context) -> None:
    obj = ctx.find_root().obj
    logs.configure(verbose=bool(obj.get("verbose")), form=obj.get("log_format") or "human")


def _verbose_after_command(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.find_root().obj["verbose"] = True
        _configure_logging(ctx)


def _log_format_after_command(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value:
        ctx.find_root().obj["log_format"] = value
        _configure_logging(ctx)


_VERBOSE_HELP = "Debug logging; show tracebacks."
_LOG_FORMAT_HELP = "Log lines for people (human, the default) or one JSON object per line (json)."


class _Group(click.Group):
    """A command group whose commands also take ``-v`` and ``--log-format`` after their name
    (``watcher poll -v``, ``watcher run --log-format json``)."""

    group_class = type  # subgroups (db, outbox) are _Groups too

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.append(
            click.Option(
                ["-v", "--verbose"],
                is_flag=True,
                expose_value=False,
                callback=_verbose_after_command,
                help=_VERBOSE_HELP,
            )
        )
        cmd.params.append(
            click.Option(
                ["--log-format"],
                type=click.Choice(["human", "json"]),
                expose_value=False,
                callback=_log_format_after_command,
                help=_LOG_FORMAT_HELP,
            )
        )
        super().add_command(cmd, name)


@click.group(cls=_Group, context_settings={"max_content_width": 100})
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
@click.option("-v", "--verbose", is_flag=True, help=_VERBOSE_HELP)
@click.option(
    "--log-format",
    type=click.Choice(["human", "json"]),
    default="human",
    envvar="WATCHER_LOG_FORMAT",
    show_default=True,
    help=_LOG_FORMAT_HELP + " Env WATCHER_LOG_FORMAT.",
)
@click.version_option(package_name="watcher")
@click.pass_context
def cli(ctx: click.Context, config_path: str, verbose: bool, log_format: str) -> None:
    """Watch news feeds for tracked speakers and themes, and alert at once."""
    ctx.ensure_object(dict)
    ctx.obj.update(config_path=config_path, verbose=verbose, log_format=log_format)
    _configure_logging(ctx)
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
@click.option(
    "--http",
    "address",
    metavar="HOST:PORT",
    help="Serve the status page, /metrics, /healthz and /readyz there (e.g. 127.0.0.1:8080); "
    "beyond loopback http.token must be set.",
)
@click.pass_context
@_fails_cleanly
def run(ctx: click.Context, address: str | None) -> None:
    """Run the daemon: poll feeds on schedule and send alerts."""
    from watcher.config import listening_on
    from watcher.service import make_daemon

    # A reload request (systemctl reload) during start-up must not kill the daemon;
    # Daemon.run installs the real handler.
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    http = _config(ctx).http
    if address is not None:
        http = listening_on(http, address)
    watcher = _watcher(ctx, upgrade=True, polls=True, metrics=http.listen is not None, serve=True)
    sys.exit(make_daemon(watcher, ctx.obj["config_path"], http=http).run())


@cli.command()
@click.option("--feed", "names", multiple=True, metavar="NAME", help="Poll only this feed (repeatable).")
@click.option("--force", is_flag=True, help="Also poll feeds that are backing off after failures or Retry-After.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed, with per-stage timings.")
@click.pass_context
@_fails_cleanly
def poll(ctx: click.Context, names: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Poll every feed once, send the alerts that are due, and exit.

    A feed backing off after failures (or told by its server to wait, with Retry-After) is
    not fetched before its time unless --force is given.

    \b
    Exit status:
      0  every feed was polled (changed or not)
      3  some feeds failed or are backing off; the others were polled
      1  no feed could be polled, or an error (config, database)
    """
    config = _config(ctx)
    unknown = sorted(set(names) - {f.name for f in config.feeds})
    if unknown:
        raise WatcherError(f"no feed named {', '.join(map(repr, unknown))}", "see `watcher validate`")
    # The workers start at the first changed feed: an all-304 poll, the common case from cron,
    # never pays for them (on two cores their start slows its fetches).
    watcher = _watcher(ctx, upgrade=True)
    results = watcher.poll(list(names) or None, force=force)
    watcher.check_health()
    report = watcher.deliver()
    if as_json:
        for r in results:
            click.echo(json.dumps(_poll_json(r), ensure_ascii=False))
        click.echo(json.dumps({"delivery": {"sent": report.sent, "failed": report.failed, "dead": report.dead}}))
    else:
        _print_poll(ctx, results, watcher.now())
        _console().print(f"alerts: {report}")
    failed = [r for r in results if not r.polled]
    if failed:
        count = f"{len(failed)} of {plural(len(results), 'feed')} not polled"
        # Not raised as an error: -v would show a traceback of nothing but this decision.
        everything = len(failed) == len(results)
        click.echo(f"error: no feed could be polled ({count})" if everything else f"warning: {count}", err=True)
        ctx.exit(1 if everything else EXIT_SOME_FEEDS_FAILED)


def _print_poll(ctx: click.Context, results: Sequence[PollResult], now: datetime) -> None:
    from rich.table import Table

    table = Table("feed", "result", "new", "hits")
    styles = {"ok": "green", "not modified": "", "failed": "red", "backing off": "yellow", "disabled": "red"}
    for r in results:
        table.add_row(_text(r.feed), _styled(r.status, styles[r.status]), str(r.new), str(r.hits))
    _console().print(table)
    for r in results:
        if r.waiting_until is not None:
            why = f"{r.error}; " if r.error else ""
            _say(
                ctx,
                f"{r.feed}: {why}backing off until {_when(r.waiting_until)} ({_relative(r.waiting_until, now)}); "
                "`watcher poll --force` polls it now",
            )
        elif r.error:
            _say(ctx, f"{r.feed}: {r.error}")


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
    """Check the config and print what it watches.

    Exit status 1 when the config has any problem; each is printed with its file and line.
    """
    config = _config(ctx)
    click.echo(f"{config.path}: ok")
    click.echo(f"database: {redact_url(config.database_url)}")
    click.echo(f"feeds ({len(config.feeds)}):")
    for f in config.feeds:
        silent = f", silent after {format_duration(f.expect_every)}" if f.expect_every else ""
        click.echo(
            f"  {f.name}: {redact_url(f.url)} every {format_duration(f.interval)}, "
            f"failing after {format_duration(f.failing_after)}{silent}"
        )
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
        health = ", feed health alerts" if c.health else ""
        click.echo(f"  {c.name}: {c.type} to {target}, {when}, {watches}{only}{health}")
    problem = route.unheard(config)
    if problem:
        click.echo(f"warning: {_runnable(ctx, problem)}", err=True)


@cli.command()
@click.option("--watch", "watch", required=True, metavar="NAME", help="The speaker or theme to run.")
@click.option("--since", default="30d", show_default=True, help="Articles stored this far back (e.g. 7d).")
@click.option("--alert", is_flag=True, help="Send the hits' alerts (each once); without it nothing is sent.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per hit per line, then a summary object.")
@click.pass_context
@_fails_cleanly
def replay(ctx: click.Context, watch: str, since: str, alert: bool, as_json: bool) -> None:
    """Run a watch over the stored articles; record its hits.

    Without --alert nothing is sent, now or later: see what a new theme finds before it can
    reach an inbox. With --alert each hit alerts once (those an earlier replay recorded
    too), through the channels that take the watch; a second replay sends nothing new.
    """
    config = _config(ctx)
    if watch not in config.watch_names:
        raise click.UsageError(f"no speaker or theme named {watch!r}; see `watcher validate`")
    window = _parse_since(since)
    watcher = _watcher(ctx, upgrade=True)
    result = watcher.replay(watch, since=watcher.now() - window, alert=alert)
    report = watcher.deliver() if alert else None
    if as_json:
        for feed, article, hit in result.found:
            found = {**_hit_json(article.entry_id, article.link, article.title, hit), "feed": feed}
            click.echo(json.dumps({**found, "published": iso_time(article.published)}, ensure_ascii=False))
        summary = {"articles": result.articles, "hits": len(result.found), "recorded": result.recorded}
        summary |= {"alerts": result.alerts, "sent": report.sent if report else 0}
        click.echo(json.dumps({"replay": summary}))
        return
    for feed, article, hit in result.found:
        _print_hit(hit, article.title, article.link, feed, published=article.published)
    _say(
        ctx,
        f"{watch}: {plural(len(result.found), 'hit')} in {plural(result.articles, 'article')} stored in the last "
        f"{since}; {result.recorded} new recorded",
    )
    if report is None:
        _say(ctx, f"nothing sent; `watcher replay --watch {shlex.quote(watch)} --since {since} --alert` sends them")
    else:
        _say(ctx, f"{plural(result.alerts, 'alert')} made; alerts: {report}")


@cli.command()
@click.option("--since", default="24h", show_default=True, help="How far back, as a duration (e.g. 7d).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=None, help="At most this many hits.")
@click.pass_context
@_fails_cleanly
def hits(ctx: click.Context, since: str, as_json: bool, limit: int | None) -> None:
    """Stored hits, newest first: when published and when found."""
    store = _store(ctx)
    stored = store.list_hits(since=datetime.now(UTC) - _parse_since(since), limit=limit)
    for s in stored:
        if as_json:
            click.echo(json.dumps(_stored_hit_json(s), ensure_ascii=False))
        else:
            _print_hit(s.hit, s.title, s.link, s.feed, published=s.published, found=s.created, text=_text_source(s))
    if not as_json and not stored:
        click.echo(f"no hits in the last {since}")


@cli.command()
@click.argument("name", required=False)
@click.option("--retry", "retry", multiple=True, metavar="NAME", help="Poll this failing or disabled feed again soon.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per feed per line.")
@click.pass_context
@_fails_cleanly
def feeds(ctx: click.Context, name: str | None, retry: tuple[str, ...], as_json: bool) -> None:
    """Each feed's last and next poll, entries and problems.

    With NAME, the whole story of that feed: its URL, last poll and last success, the
    last error, validators (ETag, Last-Modified), and when it is polled next and why.
    """
    store = _store(ctx)
    now = datetime.now(UTC)
    for feed in retry:
        if not store.retry_feed(feed, now):
            raise WatcherError(f"no feed named {feed!r} in the database", "see `watcher feeds`")
        click.echo(f"{feed}: will be polled at the next chance")
    if name is not None:
        found = store.feed_states([name])
        if not found:
            raise WatcherError(f"no feed named {name!r} in the database", "see `watcher feeds`")
        state = found[0]
        if as_json:
            click.echo(json.dumps(_feed_json(state), ensure_ascii=False))
        else:
            _print_feed(ctx, state, now)
        return
    states = store.feed_states(_configured_feeds(ctx))
    if as_json:
        for s in states:
            click.echo(json.dumps(_feed_json(s), ensure_ascii=False))
        return
    if retry:
        return
    from rich.table import Table

    table = Table("feed", "status", "health", "last poll", "next poll", "entries", "polled by")
    for column in table.columns[1:]:
        column.no_wrap = True  # short, and cut they say nothing; the name wraps instead
    styles = {"ok": "green", "failed": "red", "disabled": "red", "empty": "yellow"}
    styles |= {"failing": "red", "gone": "red", "silent": "yellow"}
    for s in states:
        next_poll = "never" if s.status == "disabled" else _relative(s.next_poll_at, now)
        table.add_row(
            _text(s.name),
            _styled(s.status, styles.get(s.status, "")),
            _styled(s.health, styles.get(s.health, "")),
            _relative(s.last_polled_at, now),
            next_poll,
            str(s.entries_seen),
            _text(s.polled_by or ""),
        )
    _console().print(table)
    for s in states:
        if s.last_error:
            failures = f" ({plural(s.consecutive_failures, 'failure')} in a row)" if s.consecutive_failures else ""
            _say(ctx, f"{s.name}: {s.last_error}{failures}")
    if any(s.last_error for s in states):
        _say(ctx, "The whole story of one feed: `watcher feeds NAME`")


def _print_feed(ctx: click.Context, s: FeedState, now: datetime) -> None:
    """``watcher feeds NAME``: one feed, every fact the database holds about it."""
    validators = "; ".join(
        f"{label} {value}" for label, value in (("ETag", s.etag), ("Last-Modified", s.last_modified)) if value
    )
    rows = [
        ("feed", s.name),
        ("url", redact_url(s.url)),
        ("moved to", redact_url(s.fetch_url) if s.fetch_url != s.url else ""),
        (
            "status",
            s.status + (f", {plural(s.consecutive_failures, 'failure')} in a row" if s.consecutive_failures else ""),
        ),
        ("health", _health(s, now)),
        ("last error", s.last_error or "none"),
        ("last poll", _when_relative(s.last_polled_at, now) + (f" by {s.polled_by}" if s.polled_by else "")),
        ("last success", _when_relative(s.last_success_at, now)),
        ("next poll", _next_poll(s, now)),
        ("validators", validators or "none (every poll fetches the whole feed)"),
        ("entries seen", str(s.entries_seen)),
    ]
    for label, value in rows:
        if value:
            _say(ctx, f"{label + ':':<14}{value}")


def _health(s: FeedState, now: datetime) -> str:
    """The health last alerted, and since when its problem has lasted."""
    if s.health == "failing":
        return f"failing, since {_when_relative(s.failing_since, now)}"
    if s.health == "silent":
        return f"silent: no new entry since {_when_relative(s.quiet_since, now)}"
    if s.health == "gone":
        return "gone: it answered 410 Gone"
    return "ok"


def _next_poll(s: FeedState, now: datetime) -> str:
    """When the feed is polled next, and why then."""
    if s.status == "disabled":
        return "never: it answered 410 Gone; fix its URL, then `watcher feeds --retry NAME`"
    if s.next_poll_at is None:
        return "at the next chance"
    when = _when_relative(s.next_poll_at, now)
    if s.consecutive_failures:
        return f"{when}: backing off after {plural(s.consecutive_failures, 'failure')} in a row (`watcher poll --force` polls it now)"
    if s.last_polled_at is not None and s.next_poll_at > s.last_polled_at:
        return f"{when}: its interval, {format_duration(s.next_poll_at - s.last_polled_at)}, after the last poll"
    return when


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object: the processes and the queue.")
@click.pass_context
@_fails_cleanly
def cluster(ctx: click.Context, as_json: bool) -> None:
    """The cluster's live processes and its job queue (PostgreSQL).

    Each live process: its host:pid, since when it runs, the jobs it runs now and whether it
    runs the cluster's config. The queue: per task, the jobs due now, scheduled for later
    (each feed's next poll), running, and failed.
    """
    store = _store(ctx)
    if not store.clustered:
        raise WatcherError(
            f"database {redact_url(store.url)} is SQLite: `watcher run` is one process there, not a cluster"
        )
    from watcher.cluster import Cluster

    engine = Cluster(store.url, concurrency=1, name="cli")
    workers = {w.id: w for w in engine.live_workers()}
    members = store.members(workers)
    depth = engine.depth()
    newest = max(members, key=lambda m: m.config_loaded_at).config_hash if members else None
    now = datetime.now(UTC)
    if as_json:
        processes = [
            {
                "owner": m.owner,
                "started_at": iso_time(m.started_at),
                "running": workers[m.worker_id].running,
                "last_heartbeat": iso_time(workers[m.worker_id].last_heartbeat),
                "config_hash": m.config_hash,
                "cluster_config": m.config_hash == newest,
            }
            for m in members
        ]
        click.echo(json.dumps({"processes": processes, "queue": [dataclasses.asdict(q) for q in depth]}))
        return
    from rich.table import Table

    table = Table("process", "started", "running jobs", "config")
    for m in members:
        config = m.config_hash[:12] + ("" if m.config_hash == newest else " (not the cluster's)")
        table.add_row(_text(m.owner), _relative(m.started_at, now), str(workers[m.worker_id].running), config)
    _console().print(table)
    queue = Table("task", "due now", "scheduled", "running", "failed")
    for q in depth:
        queue.add_row(q.task, str(q.due), str(q.scheduled), str(q.running), str(q.failed))
    _console().print(queue)


@cli.group(cls=_Group)
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


@db.command("prune")
@click.pass_context
@_fails_cleanly
def db_prune(ctx: click.Context) -> None:
    """Apply the retention now: delete old articles.

    Deletes the articles stored longer ago than `retention` (90d by default), as `watcher
    run` does daily. Kept: what a feed still lists, and what has an alert to send.
    """
    watcher = _watcher(ctx, upgrade=True)
    pruned = watcher.prune()
    click.echo(f"{plural(pruned, 'article')} stored over {format_duration(watcher.config.retention)} ago deleted")


@cli.group(cls=_Group, invoke_without_command=True)
@click.option("--status", type=click.Choice(["due", "failed", "dead", "sent"]), help="Only rows in this state.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", type=int, default=100, show_default=True)
@click.pass_context
@_fails_cleanly
def outbox(ctx: click.Context, status: OutboxStatus | None, as_json: bool, limit: int) -> None:
    """Alert deliveries: when due or sent, attempts, last error."""
    if ctx.invoked_subcommand is not None:
        return
    items = _store(ctx).list_outbox(status, limit=limit)
    if as_json:
        for item in items:
            click.echo(json.dumps(_outbox_json(item), ensure_ascii=False))
        return
    from rich.table import Table

    table = Table("id", "channel", "status", "attempts", "when", "watch", "title", "last error")
    for i in items:
        table.add_row(
            str(i.id),
            _text(i.channel),
            i.status,
            str(i.attempts),
            _outbox_when(i),
            _text(i.watch),
            _text(i.title[:60]),
            _text(i.last_error or ""),
        )
    _console().print(table)


def _outbox_when(i: OutboxItem) -> str:
    if i.status == "sent":
        return f"sent {_when(i.sent_at)}"
    if i.status == "dead":
        return "never (dead)"
    return f"due {_when(i.next_attempt_at)}"


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "everything", is_flag=True, help="Every failed or dead row.")
@click.pass_context
@_fails_cleanly
def outbox_retry(ctx: click.Context, ids: tuple[int, ...], everything: bool) -> None:
    """Make failed or dead deliveries due now."""
    if not ids and not everything:
        raise click.UsageError("give row ids or --all")
    store = _store(ctx)
    if not everything:
        found = {i.id: i for i in store.outbox_items(ids)}
        problems = [_not_retryable(row_id, found.get(row_id)) for row_id in dict.fromkeys(ids)]
        if any(problems):
            raise WatcherError(
                "; ".join(p for p in problems if p), "nothing was changed; see `watcher outbox` for the rows"
            )
    count = store.retry(None if everything else list(ids), datetime.now(UTC))
    if count == 0:
        click.echo("no failed or dead rows to retry")
    else:
        _say(ctx, f"{plural(count, 'row')} due again; `watcher poll` or the daemon will send them")


def _not_retryable(row_id: int, row: OutboxItem | None) -> str | None:
    """Why ``outbox retry`` cannot make this row due, or None when it can."""
    if row is None:
        return f"no outbox row {row_id}"
    if row.status == "sent":
        return f"row {row_id} was sent {_when(row.sent_at)}; there is nothing to retry"
    if row.status == "due":
        return f"row {row_id} is already due"
    return None


@cli.command("send-test")
@click.argument("channel")
@click.pass_context
@_fails_cleanly
def send_test(ctx: click.Context, channel: str) -> None:
    """Send a sample alert through CHANNEL; print the answer."""
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
    help="Where the demo writes its database and mail: a new or empty folder, or one an earlier demo made.",
)
@click.pass_context
@_fails_cleanly
def demo(ctx: click.Context, directory: Path) -> None:
    """Try it offline: sample feeds, your watches, a local mail sink."""
    from watcher.demo import run_demo

    if not ctx.find_root().obj["verbose"]:
        logging.getLogger("watcher").setLevel(logging.WARNING)  # the summary below says it all
    result = run_demo(_config(ctx), directory)
    click.echo(
        f"served {plural(result.feeds, 'sample feed')} on {result.base_url} and polled them with "
        f"{plural(len(result.watches), 'watch', 'watches')} from {ctx.obj['config_path']}"
    )
    for s in result.hits:
        _print_hit(s.hit, s.title, s.link, s.feed, published=s.published, found=s.created)
    click.echo(f"{plural(len(result.emails), 'alert email')} delivered to the local mail sink, written to:")
    for path in result.emails:
        click.echo(f"  {path}")
    click.echo(f"database: {result.database}")
    # No -c: with WATCHER_DATABASE_URL, `hits` reads the database alone.
    program = _program(ctx, config=False)
    click.echo(f"see the stored hits: WATCHER_DATABASE_URL={shlex.quote(result.database)} {program} hits --since 30d")


def _say(ctx: click.Context, text: str) -> None:
    """Print a line of watcher's own words with any `watcher ...` in it runnable as shown;
    wrapped at the terminal's width, never cut."""
    _console().print(_runnable(ctx, text), markup=False, highlight=False, soft_wrap=not sys.stdout.isatty())


def _text(value: str) -> Any:
    from rich.text import Text

    return Text(value)  # may quote a stranger's text: never rich markup


def _styled(value: str, style: str) -> Any:
    from rich.text import Text

    return Text(value, style=style)


def _print_hit(
    hit: Hit,
    title: str,
    link: str | None,
    where: str = "",
    *,
    published: datetime | None = None,
    found: datetime | None = None,
    text: str | None = None,
) -> None:
    from rich.markup import escape

    what = "statement" if hit.statement else ("mention" if hit.kind == "speaker" else "theme")
    _console().print(f"[bold]{escape(hit.watch)}[/] ({what}, score {hit.score}) {escape(where)}".rstrip(), markup=True)
    _console().print(f"  {title}", markup=False)
    if link:
        _console().print(f"  {link}", markup=False)
    dates = [f"published {_when(published) if published else 'unknown'}"] if found or published else []
    if found:
        dates.append(f"found {_when(found)}")
    if dates:
        _console().print(f"  {', '.join(dates)}", markup=False, highlight=False)
    if text:
        _console().print(f"  matched on: {text}", markup=False, highlight=False)
    _console().print(f"  evidence: {hit.evidence_text}", markup=False)


def _text_source(s: StoredHit) -> str | None:
    """What a stored hit was matched on, when its article page was wanted."""
    if s.full_text:
        return "the article page's full text"
    if s.article_note:
        return f"the feed's text only (article page: {s.article_note})"
    return None


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
    return {
        **_hit_json(s.entry_id, s.link, s.title, s.hit),
        "feed": s.feed,
        "published": iso_time(s.published),
        "detected_at": iso_time(s.created),
        "full_text": s.full_text,
        "article_note": s.article_note,
    }


def _poll_json(r: PollResult) -> dict[str, Any]:
    return {
        "feed": r.feed,
        "url": redact_url(r.url),
        "status": r.status,
        "new": r.new,
        "hits": r.hits,
        "error": r.error,
        "waiting_until": iso_time(r.waiting_until),
        "timings": r.timings,
    }


def _feed_json(s: FeedState) -> dict[str, Any]:
    return {
        "feed": s.name,
        "url": redact_url(s.fetch_url),
        "status": s.status,
        "health": s.health,
        "failing_since": iso_time(s.failing_since),
        "quiet_since": iso_time(s.quiet_since),
        "last_error": s.last_error,
        "last_polled_at": iso_time(s.last_polled_at),
        "last_success_at": iso_time(s.last_success_at),
        "next_poll_at": iso_time(s.next_poll_at),
        "entries_seen": s.entries_seen,
        "consecutive_failures": s.consecutive_failures,
        "polled_by": s.polled_by,
        "etag": s.etag,
        "last_modified": s.last_modified,
    }


def _outbox_json(i: OutboxItem) -> dict[str, Any]:
    return {
        "id": i.id,
        "alert_id": i.alert_id,
        "channel": i.channel,
        "status": i.status,
        "attempts": i.attempts,
        "next_attempt_at": iso_time(i.next_attempt_at),
        "sent_at": iso_time(i.sent_at),
        "last_error": i.last_error,
        "watch": i.watch,
        "feed": i.feed,
        "title": i.title,
    }


def _parse_since(value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r} is not a duration; use e.g. 24h, 7d, 30m") from e


def _when(value: datetime | None) -> str:
    return "never" if value is None else human_time(value)


def _relative(value: datetime | None, now: datetime) -> str:
    """``5m ago`` or ``in 2h``: short enough for a table column at 80 characters."""
    if value is None:
        return "never"
    seconds = int((value - now).total_seconds())
    span = abs(seconds)
    if span < 60:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if span >= size:
            amount = f"{span // size}{unit}"
            break
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def _when_relative(value: datetime | None, now: datetime) -> str:
    return "never" if value is None else f"{_when(value)} ({_relative(value, now)})"


def main(argv: Iterable[str] | None = None) -> None:
    cli.main(args=list(argv) if argv is not None else None, prog_name="watcher", obj={})
