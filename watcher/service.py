"""Composition root and daemon: builds the parts once, then schedules polls and delivery.

``make_watcher`` is the only place adapters are constructed; tests pass fakes or real
loopback-backed parts by argument. ``Daemon`` is ``watcher run`` on SQLite: one APScheduler
job per feed (its interval, with jitter, never two at once), one sender thread per channel
woken after any poll that recorded hits, a health job every minute and a retention job
daily, clean stop on SIGTERM/SIGINT and config reload on SIGHUP. ``ClusterDaemon`` is
``watcher run`` on PostgreSQL: the same polls and deliveries as jobs of the cluster's queue
(``watcher.cluster``), which every process on the database shares, and the same health and
retention jobs once for the cluster; ``make_daemon`` picks one.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING

from watcher import __version__, route
from watcher.config import Config, FeedSettings, HttpSettings, format_duration, load_config
from watcher.deliver import Channel, DeliveryReport, flush_outbox, make_channels, utcnow
from watcher.errors import StorageError, WatcherError, plural
from watcher.fetch import Fetcher
from watcher.logs import event
from watcher.pages import Pages
from watcher.pipeline import (
    POLL_THREADS,
    Articles,
    PollResult,
    ReplayResult,
    check_health,
    hit_kind,
    poll_feed,
    poll_feeds,
    replay,
    route_missed,
)
from watcher.pipeline import Fetcher as FetcherProtocol
from watcher.pipeline import Workers as WorkersProtocol
from watcher.store import Store, process_owner
from watcher.types import FeedState, HealthChange, NewHit
from watcher.workers import default_workers

if TYPE_CHECKING:
    from watcher.cluster import Cluster
    from watcher.metrics import Metrics
    from watcher.web import StatusServer

log = logging.getLogger(__name__)

#: How often the daemon looks for due alerts when no poll woke it (digests, retries).
DELIVERY_TICK = timedelta(seconds=5)
#: How often the daemon judges the feeds' health (a feed may turn silent without a poll).
HEALTH_TICK = timedelta(minutes=1)
#: How often the daemon applies the retention.
PRUNE_TICK = timedelta(days=1)
#: How long a stopping daemon waits for in-flight polls before abandoning them.
STOP_GRACE = timedelta(seconds=8)
#: How long a stop may take in all before the process exits regardless.
STOP_LIMIT = STOP_GRACE + timedelta(seconds=7)
#: How often the daemon matches, on the feed's text, the entries whose article page is late.
ARTICLE_SWEEP = timedelta(seconds=5)


@dataclass
class Watcher:
    """The assembled service: config plus the adapters every command works through."""

    config: Config
    store: Store
    fetcher: FetcherProtocol
    workers: WorkersProtocol
    channels: dict[str, Channel]
    #: The entries waiting for their article page, and the polite page fetcher under them.
    articles: Articles
    now: Callable[[], datetime] = utcnow
    owner: str = field(default_factory=process_owner)
    #: Counts what the daemon's polls and deliveries do, when its HTTP endpoint is on.
    metrics: Metrics | None = None
    #: The daemon's membership of the cluster (``watcher run`` on PostgreSQL), else None.
    cluster: Cluster | None = None

    def poll(self, names: Sequence[str] | None = None, *, force: bool = False) -> list[PollResult]:
        """Poll every configured feed (or those named) once, concurrently; with ``force``
        also those backing off after failures."""
        feeds = [f for f in self.config.feeds if names is None or f.name in names]
        resumed = self.articles.resume()  # what a stopped watcher left waiting for its article page
        results = poll_feeds(
            feeds,
            store=self.store,
            fetcher=self.fetcher,
            workers=self.workers,
            channels=self.config.channels,
            now=self.now,
            force=force,
            articles=self.articles,
        )
        # One poll gives the full-text hits: wait for the articles of the entries it found.
        late = self.articles.wait_for(resumed + [entry for r in results for entry in r.waiting])
        return [
            dataclasses.replace(
                r,
                hits=r.hits + len(mine),
                found=r.found + tuple((h.hit.watch, hit_kind(h.hit)) for h in mine),
            )
            if (mine := [h for h in late if h.feed == r.feed])
            else r
            for r in results
        ]

    def poll_one(self, feed: FeedSettings, state: FeedState | None = None) -> PollResult:
        """Poll one feed (``state``: its stored state, when the caller has read it)."""
        result = poll_feed(
            feed,
            store=self.store,
            fetcher=self.fetcher,
            workers=self.workers,
            channels=self.config.channels,
            now=self.now,
            state=state,
            articles=self.articles,
        )
        if self.metrics is not None:
            self.metrics.polled(result)
        return result

    def check_health(self) -> list[HealthChange]:
        """Alert the changes of the configured feeds' health (see ``pipeline.check_health``)."""
        return check_health(self.store, self.config.feeds, self.config.channels, self.now())

    def replay(self, watch: str, *, since: datetime, alert: bool) -> ReplayResult:
        """Run ``watch`` over the articles stored since ``since`` (see ``pipeline.replay``)."""
        config = self.config
        return replay(
            self.store,
            config.speakers,
            config.themes,
            watch,
            since=since,
            channels=config.channels,
            now=self.now(),
            alert=alert,
        )

    def prune(self) -> int:
        """Apply the retention: delete the articles stored longer ago than ``retention``."""
        pruned = self.store.prune(self.now() - self.config.retention)
        if pruned:
            log.info(
                "retention: %s stored over %s ago deleted",
                plural(pruned, "article"),
                format_duration(self.config.retention),
                extra=event("retention.pruned", articles=pruned),
            )
        return pruned

    def deliver(self, stop: threading.Event | None = None) -> DeliveryReport:
        """Send every alert that is due now, each channel in a thread of its own: a slow
        receiver holds up only its own channel."""
        names = list(self.channels)
        if len(names) < 2:
            reports = [self.deliver_channel(name, stop) for name in names]
        else:
            with ThreadPoolExecutor(max_workers=len(names), thread_name_prefix="deliver") as pool:
                reports = list(pool.map(lambda name: self.deliver_channel(name, stop), names))
        return DeliveryReport(tuple(d for report in reports for d in report.deliveries))

    def deliver_channel(self, name: str, stop: threading.Event | None = None) -> DeliveryReport:
        """Route to channel ``name`` the hits it missed while absent, then send its due alerts."""
        channel = self.channels.get(name)
        if channel is None:
            return DeliveryReport()
        settings = next((c for c in self.config.channels if c.name == name), None)
        if settings is not None:
            missed = route_missed(self.store, settings, self.now())
            if missed:
                log.info(
                    "channel %s: %s for hits stored while it was absent",
                    name,
                    plural(missed, "alert"),
                    extra=event("channel.missed", channel=name, alerts=missed),
                )
        report = flush_outbox(self.store, {name: channel}, now=self.now(), owner=self.owner, stop=stop)
        if self.metrics is not None:
            self.metrics.delivered(report)
        return report

    def close(self) -> None:
        self.articles.close()
        self.articles.pages.close()
        self.store.close()
        for part in (self.fetcher, self.workers):
            close = getattr(part, "close", None)
            if close is not None:
                close()


def make_watcher(
    config: Config,
    *,
    store: Store | None = None,
    fetcher: FetcherProtocol | None = None,
    workers: WorkersProtocol | None = None,
    channels: dict[str, Channel] | None = None,
    now: Callable[[], datetime] = utcnow,
    upgrade: bool = True,
    polls: bool = False,
    metrics: Metrics | None = None,
    serve: bool = False,
    cluster: Cluster | None = None,
    articles: Articles | None = None,
) -> Watcher:
    """Build a Watcher for ``config``; any part given is used instead of the real one (a
    reloaded config keeps the running daemon's store, fetcher and workers this way).

    With ``upgrade`` the database is migrated to the latest schema first (``run`` and
    ``poll`` do this); without it an outdated schema raises SchemaOutdatedError. With
    ``polls`` the workers get ready now, in the background, while the database opens.
    With ``serve`` (``watcher run``) on PostgreSQL, the process joins the database's cluster
    (``cluster`` given is kept, as a reload does).
    Article pages are fetched politely through the real fetcher unless ``articles`` is given.
    """
    channels = channels if channels is not None else make_channels(config)
    workers = workers or default_workers(config.speakers, config.themes)
    if polls:
        workers.start()
    store = store or Store(config.database_url)
    if upgrade:
        store.upgrade()
    else:
        store.check_schema()
    store.sync_feeds([(f.name, f.url) for f in config.feeds], now())
    store.release_dead_claims()
    if cluster is None and serve and store.clustered:
        try:
            from watcher.cluster import Cluster  # only here: SQLite users need no procrastinate
        except ImportError as e:
            raise StorageError(
                "`watcher run` on PostgreSQL joins a cluster, which needs procrastinate",
                "install it with pip install -e '.[postgres]'",
            ) from e
        cluster = Cluster(store.url, concurrency=POLL_THREADS + len(channels) + 2, name=store.owner)
    if articles is None:
        pages = Pages(
            fetcher if isinstance(fetcher, Fetcher) else Fetcher(),
            gap=config.articles.host_gap.total_seconds(),
            per_minute=config.articles.per_minute,
        )
        articles = Articles(config, store=store, pages=pages, workers=workers, now=now)
    else:
        articles.configure(config)
    return Watcher(
        config=config,
        store=store,
        fetcher=fetcher or Fetcher(),
        workers=workers,
        channels=channels,
        articles=articles,
        now=now,
        metrics=metrics,
        cluster=cluster,
    )


def make_daemon(watcher: Watcher, config_path: str, *, http: HttpSettings | None = None) -> Daemon:
    """``watcher run``'s daemon: a cluster member on PostgreSQL, the single process on SQLite."""
    if watcher.cluster is not None:
        return ClusterDaemon(watcher, config_path, http=http)
    return Daemon(watcher, config_path, http=http)


class Daemon:
    """``watcher run``: the scheduler, its jobs, signals and a clean stop."""

    def __init__(
        self,
        watcher: Watcher,
        config_path: str,
        env: dict[str, str] | None = None,
        *,
        http: HttpSettings | None = None,
    ) -> None:
        self.watcher = watcher
        self.config_path = config_path
        self.env = env
        #: The HTTP endpoint's settings, fixed for the daemon's life (``--http`` or the config's).
        self.http = http if http is not None else watcher.config.http
        self.server: StatusServer | None = None
        self.stop = threading.Event()
        self._stop_signal: str | None = None
        #: Set when the daemon can no longer work (a cluster member whose queue worker died):
        #: it exits 1 for its supervisor to restart it.
        self.failed = False
        self.started = watcher.now()
        #: When the scheduler last ran the cycle job, and how often it runs it (None without
        #: feeds): what /healthz judges the daemon alive by.
        self.last_cycle: datetime | None = None
        self.cycle_interval: timedelta | None = None
        #: Per channel, the event that wakes its sender: set after a poll records hits, so
        #: their alerts go out at once rather than next tick.
        self.wake: dict[str, threading.Event] = {}
        self._senders = threading.Lock()
        self.in_flight = _InFlight()
        #: Unexpected exceptions (bugs) caught per job kind, "poll" and "delivery": each is
        #: logged with its traceback and the job carries on (STYLE rule 4).
        self.unexpected: collections.Counter[str] = collections.Counter()
        self._unexpected_lock = threading.Lock()
        #: What the polls did since the last cycle line (see ``_log_cycle``).
        self.cycle = _Cycle()
        # APScheduler is imported here: only the daemon needs it, and every short-lived
        # command would otherwise pay for its import.
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=POLL_THREADS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    def run(self) -> int:
        """Run until SIGTERM/SIGINT. Returns the process exit code.

        Raises:
            WatcherError: the HTTP endpoint cannot listen where it was told to.
        """
        if self.http.listen is not None:
            from watcher.web import StatusServer

            self.server = StatusServer(self.http, self)
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, self._on_reload)
        self._schedule_feeds()
        self._schedule_upkeep()
        self.watcher.articles.on_hits = self._article_hits
        self.scheduler.add_job(
            self._finish_late_articles, "interval", seconds=ARTICLE_SWEEP.total_seconds(), id="articles"
        )
        self.scheduler.start()
        self._start_senders()
        with self._carry_on("articles", "articles left waiting"):
            self.watcher.articles.resume()
        feeds, channels = len(self.watcher.config.feeds), len(self.watcher.channels)
        log.info(
            "watcher %s running: %s, %s",
            __version__,
            plural(feeds, "feed"),
            plural(channels, "channel"),
            extra=event("daemon.started", version=__version__, feeds=feeds, channels=channels),
        )
        self._warn_unheard()
        while not self.stop.wait(1.0):
            pass
        name = self._stop_signal or "a stop"
        log.info("received %s, stopping", name, extra=event("daemon.stopping", signal=name))
        return self._shutdown()

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        # Only set a flag: the handler runs in the main thread between any two bytecodes, so
        # taking a lock here (logging's, the senders') could wait on the main thread itself.
        self._stop_signal = signal.Signals(signum).name
        self.stop.set()

    def _on_reload(self, _signum: int, _frame: FrameType | None) -> None:
        # Load in a thread: a signal handler must not block the main loop on file I/O.
        threading.Thread(target=self.reload, name="reload", daemon=True).start()

    def reload(self) -> None:
        """Re-read the config; on any error keep running with the last good one."""
        old = self.watcher
        try:
            config = load_config(self.config_path, self.env)
            watcher = make_watcher(
                config,
                store=old.store,
                fetcher=old.fetcher,
                workers=old.workers,
                now=old.now,
                upgrade=False,
                metrics=old.metrics,
                cluster=old.cluster,
                articles=old.articles,
            )
        except WatcherError as e:
            log.error("config reload failed, keeping the last good config:\n%s", e, extra=event("config.reload_failed"))
            return
        if config.database_url != old.config.database_url:
            log.warning("the database setting changed; restart watcher to use it")
        if config.http != old.config.http:
            log.warning("the http setting changed; restart watcher to use it")
        # The same pool matches with the new watches from its next job on.
        watcher.workers.watch(config.speakers, config.themes)
        self.watcher = watcher
        self._schedule_feeds()
        self._start_senders()
        log.info(
            "config reloaded: %s",
            plural(len(config.feeds), "feed"),
            extra=event("config.reloaded", feeds=len(config.feeds)),
        )
        self._warn_unheard()

    def _warn_unheard(self) -> None:
        problem = route.unheard(self.watcher.config)
        if problem:
            log.warning("%s", problem)

    def _schedule_cycle(self) -> None:
        """One line per cycle of the most frequent feed: a quiet daemon still says it is alive."""
        from apscheduler.triggers.interval import IntervalTrigger

        feeds = self.watcher.config.feeds
        if feeds:
            self.cycle_interval = min(f.interval for f in feeds)
            self.scheduler.add_job(
                self._log_cycle,
                IntervalTrigger(seconds=self.cycle_interval.total_seconds()),
                id="cycle",
                replace_existing=True,
            )
        elif self.scheduler.get_job("cycle"):
            self.scheduler.remove_job("cycle")
            self.cycle_interval = None

    def _schedule_feeds(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        wanted = {f"feed:{f.name}": f for f in self.watcher.config.feeds}
        for job in self.scheduler.get_jobs():
            if job.id.startswith("feed:") and job.id not in wanted:
                job.remove()
        self._schedule_cycle()
        states = {s.name: s for s in self.watcher.store.feed_states()}
        now = self.watcher.now()
        for job_id, feed in wanted.items():
            seconds = feed.interval.total_seconds()
            state = states.get(feed.name)
            first = max(now, state.next_poll_at) if state and state.next_poll_at else now
            self.scheduler.add_job(
                self.poll_if_due,
                IntervalTrigger(seconds=seconds, jitter=min(seconds * 0.1, 60)),
                args=[feed.name],
                id=job_id,
                replace_existing=True,
                next_run_time=first,
            )

    def _log_cycle(self) -> None:
        """The one line per cycle at the default level; each feed's own at -v (debug)."""
        self.last_cycle = self.watcher.now()
        upcoming = [j.next_run_time for j in self.scheduler.get_jobs() if j.id.startswith("feed:") and j.next_run_time]
        wait = max(1, round((min(upcoming) - self.watcher.now()).total_seconds())) if upcoming else 0
        next_poll = f"; next poll in {format_duration(timedelta(seconds=wait if wait < 60 else round(wait / 60) * 60))}"
        counts = self.cycle.take()
        log.info(
            "poll cycle: %s%s",
            _Cycle.phrase(counts),
            next_poll if upcoming else "",
            extra=event(
                "poll.cycle",
                polled=counts["ok"] + counts["not modified"],
                unchanged=counts["not modified"],
                failed=counts["failed"] + counts["disabled"],
                backing_off=counts["backing off"],
                new=counts["new"],
                hits=counts["hits"],
                next_poll_seconds=wait if upcoming else None,
            ),
        )

    def _article_hits(self, hits: list[NewHit]) -> None:
        """The hits of an entry matched once its article page came (or its wait ended)."""
        if self.watcher.metrics is not None:
            self.watcher.metrics.matched((h.hit.watch, hit_kind(h.hit)) for h in hits)
        self._wake_senders()

    def _finish_late_articles(self) -> None:
        """The job that matches, on the feed's text, each entry whose article page is late."""
        with self._carry_on("articles", "late articles"):
            self.watcher.articles.finish_overdue()

    def liveness(self) -> Liveness:
        """Alive when the scheduler has run its cycle job within two of its intervals (since
        the start, before the first): it shares the poll threads, so hung polls starve it too."""
        now = self.watcher.now()
        interval = self.cycle_interval
        since = self.last_cycle or self.started
        alive = interval is None or now - since <= 2 * interval
        return Liveness(alive, now, self.started, self.last_cycle, interval)

    def _schedule_upkeep(self) -> None:
        """The health job, at once and every HEALTH_TICK (a feed that fell silent while the
        daemon was down is told at start), and the retention job, daily from a minute on."""
        from apscheduler.triggers.interval import IntervalTrigger

        now = datetime.now(UTC)  # the scheduler's clock, not the watcher's
        self.scheduler.add_job(
            self.check_health, IntervalTrigger(seconds=HEALTH_TICK.total_seconds()), id="health", next_run_time=now
        )
        self.scheduler.add_job(
            self.prune,
            IntervalTrigger(seconds=PRUNE_TICK.total_seconds()),
            id="retention",
            next_run_time=now + HEALTH_TICK,
        )

    def check_health(self) -> None:
        """The health job: alert the feeds' changes of health, and wake the senders for them."""
        with self._carry_on("health", "health check"):
            if self.watcher.check_health():
                self._wake_senders()

    def prune(self) -> None:
        """The retention job, daily (its first a minute after the start)."""
        with self._carry_on("retention", "retention"):
            self.watcher.prune()

    def poll_if_due(self, name: str) -> None:
        """The job of one feed: poll it, unless it is backing off after failures."""
        with self._carry_on("poll", f"feed {name}"):
            self._poll_if_due(name)

    def _poll_if_due(self, name: str) -> None:
        feed = next((f for f in self.watcher.config.feeds if f.name == name), None)
        # Counted before the stop check: a stop that finds no job in flight must find none later.
        with self.in_flight.job():
            if feed is None or self.stop.is_set():
                return
            result = self.watcher.poll_one(feed)
        self._polled(name, result)

    def _polled(self, name: str, result: PollResult) -> None:
        """Count and log a poll, and wake the senders when it recorded hits."""
        self.cycle.add(result)
        if result.new:
            log.debug(
                "feed %s: %s new or changed, %s",
                name,
                plural(result.new, "entry", "entries"),
                plural(result.hits, "hit"),
                extra=event("feed.polled", name, new=result.new, hits=result.hits),
            )
        if result.hits:
            self._wake_senders()

    def _start_senders(self) -> None:
        """One sender thread per configured channel that has none (at start, after a reload)."""
        with self._senders:
            for name in self.watcher.channels:
                if name not in self.wake:
                    self.wake[name] = wake = threading.Event()
                    wake.set()  # its first round at once: what it missed, what is due
                    threading.Thread(
                        target=self._deliver_loop, args=(name, wake), name=f"deliver-{name}", daemon=True
                    ).start()

    def _wake_senders(self) -> None:
        with self._senders:
            for wake in self.wake.values():
                wake.set()

    def _deliver_loop(self, name: str, wake: threading.Event) -> None:
        """The sender of one channel: sends what is due whenever a poll records hits, and
        every tick for digests and retries, until stopped or its channel is taken out."""
        while not self.stop.is_set():
            wake.wait(DELIVERY_TICK.total_seconds())
            wake.clear()
            if self.stop.is_set():
                return
            with self._senders:
                if name not in self.watcher.channels:
                    del self.wake[name]  # a reload took it out; one putting it back starts a sender
                    return
            self._deliver_round(name)

    def _deliver_round(self, name: str) -> DeliveryReport:
        """One round of channel ``name``'s sender: what it missed, then what is due."""
        report = DeliveryReport()
        with self.in_flight.job(), self._carry_on("delivery", f"channel {name}"):
            report = self.watcher.deliver_channel(name, stop=self.stop)
            if report.sent or report.failed or report.dead:
                log.info(
                    "channel %s: %s",
                    name,
                    report,
                    extra=event(
                        "channel.delivered", channel=name, sent=report.sent, failed=report.failed, dead=report.dead
                    ),
                )
        return report

    @contextmanager
    def _carry_on(self, kind: str, what: str) -> Iterator[None]:
        """Log and count any exception of a job, so that the job and its loop go on."""
        try:
            yield
        except WatcherError as e:  # e.g. the database is briefly unavailable
            log.error("%s: %s", what, e)
        except Exception:
            with self._unexpected_lock:
                self.unexpected[kind] += 1
                count = self.unexpected[kind]
            log.critical("%s: unexpected error (%d in %s jobs so far); carrying on", what, count, kind, exc_info=True)

    def _shutdown(self) -> int:
        # Whatever stalls the stop (a library waiting on a stuck thread or process), the
        # process ends within a bound: a service manager's stop must not hang, and what was
        # in flight is redone on the next start.
        overdue = threading.Timer(STOP_LIMIT.total_seconds(), self._exit_overdue)
        overdue.daemon = True
        overdue.start()
        if self.server is not None:
            self.server.close()
        self.scheduler.shutdown(wait=False)
        abandoned = self._end_jobs()
        code = 1 if self.failed else 0
        if abandoned:
            log.warning("%s", abandoned)
            self.watcher.close()
            logging.shutdown()
            os._exit(code)
        self.watcher.close()
        overdue.cancel()
        log.info("stopped", extra=event("daemon.stopped"))
        return code

    def _end_jobs(self) -> str | None:
        """Let the running jobs end, within STOP_GRACE; say what is abandoned, if anything."""
        self._wake_senders()
        abandoned = self.in_flight.wait_idle(STOP_GRACE.total_seconds())
        # Each poll and each delivery mark is one transaction: abandoning one loses nothing;
        # its entries are fetched again and its alerts stay due.
        if abandoned:
            return f"abandoning {plural(abandoned, 'unfinished job')}; they will be redone on the next start"
        return None

    def _exit_overdue(self) -> None:
        log.critical(
            "still stopping after %s; exiting now (unfinished work is redone on the next start)",
            format_duration(STOP_LIMIT),
            extra=event("daemon.stop_overdue"),
        )
        logging.shutdown()
        os._exit(0)


#: How often each process of a cluster looks at its config file and the cluster's config.
CONFIG_CHECK = timedelta(seconds=2)


def config_hash(path: str) -> str | None:
    """The SHA-256 of a config file's bytes (None when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


class ClusterDaemon(Daemon):
    """``watcher run`` on PostgreSQL: one process of the cluster of every ``watcher run`` on the
    database. Polls and deliveries are jobs of procrastinate's queue (``watcher.cluster``),
    run by whichever process takes them; this class says what each job does.

    A poll job queues the feed's next poll at its due time plus the interval (fixed rate, as
    the single daemon's jobs), or at once when the poll was abandoned because this process
    is stopping: a stop hands its feeds back to the other processes. The config rule: each
    process re-reads its config file when the file's content changes (looked at every
    CONFIG_CHECK) or on SIGHUP; the database records which config each process runs, and a
    process whose config is not the one loaded last in the cluster says so.
    """

    def __init__(
        self, watcher: Watcher, config_path: str, env: dict[str, str] | None = None, *, http: HttpSettings | None = None
    ) -> None:
        super().__init__(watcher, config_path, env, http=http)
        assert watcher.cluster is not None
        self.cluster = watcher.cluster
        #: The hash of the config file this process runs, and of the last one it tried.
        self.config_hash = config_hash(config_path) or ""
        self._tried_hash = self.config_hash
        self._told_hash = self.config_hash
        self.worker_id: int | None = None

    def run(self) -> int:
        self.worker_id = self.cluster.start(self)
        self.watcher.store.join_cluster(self.worker_id, self.config_hash, self.watcher.now())
        return super().run()

    # -- scheduling: the queue holds it ----------------------------------------------

    def _schedule_feeds(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        self._schedule_cycle()
        self.scheduler.add_job(
            self._check_config,
            IntervalTrigger(seconds=CONFIG_CHECK.total_seconds()),
            id="config",
            replace_existing=True,
        )
        with self._carry_on("tick", "queueing feeds"):
            self._queue_missing_polls()

    def _queue_missing_polls(self) -> int:
        """Queue a poll of each configured feed that has none (new, or its chain broken), at
        its next poll time; return how many."""
        queued = self.cluster.queued_polls()
        states = {s.name: s for s in self.watcher.store.feed_states()}
        now = self.watcher.now()
        count = 0
        for feed in self.watcher.config.feeds:
            state = states.get(feed.name)
            if feed.name in queued or (state is not None and state.status == "disabled"):
                continue
            due = max(now, state.next_poll_at) if state is not None and state.next_poll_at else now
            count += self.cluster.queue_poll(feed.name, due)
        return count

    def _schedule_upkeep(self) -> None:
        """Nothing here: the health and retention jobs are the queue's (``watcher.health``,
        ``watcher.prune``), run once for the whole cluster."""

    def _start_senders(self) -> None:
        """A first delivery round of every channel (then after hits, and every tick)."""
        if self.stop.is_set():
            return
        for name in self.watcher.channels:
            with self._carry_on("delivery", f"queueing a delivery of {name}"):
                self.cluster.queue_delivery(name)

    def _wake_senders(self) -> None:
        self._start_senders()

    # -- the jobs (``cluster.Jobs``) -----------------------------------------------------

    def poll(self, name: str, due: datetime) -> None:
        """Poll feed ``name``, then queue its next poll."""
        feed = next((f for f in self.watcher.config.feeds if f.name == name), None)
        if feed is None:
            return  # taken out of the config: its polls end here
        result: PollResult | None = None
        if not self.stop.is_set():
            with self._carry_on("poll", f"feed {name}"), self.in_flight.job():
                state = self.watcher.store.feed_state(name)
                # Not when polled since this job's time by another job (two processes starting
                # together each queued it): that would poll it twice in an interval.
                if state.last_polled_at is None or state.last_polled_at < due:
                    result = self.watcher.poll_one(feed, state)
                    self._polled(name, result)
        now = self.watcher.now()
        if (result is None and self.stop.is_set()) or (result is not None and result.error_kind == "abandoned"):
            after = now  # handed back: another process polls it at once
        else:
            # Its next slot; slots missed (a poll later than an interval) are skipped, not made up.
            after = due + feed.interval
            while after <= now:
                after += feed.interval
        with self._carry_on("poll", f"queueing the next poll of {name}"):
            self.cluster.queue_poll(name, after)

    def deliver(self, channel: str) -> None:
        """A delivery round of ``channel``; alerts a stop released go to another process at once."""
        if channel not in self.watcher.channels:
            return  # not in this process's config: a process that has it sends its alerts
        report = self._deliver_round(channel)
        if report.released:
            with self._carry_on("delivery", f"handing back {channel}"):
                self.cluster.queue_delivery(channel)

    def tick(self) -> None:
        """The cluster's periodic work, in one process at a time: retry the jobs of processes
        gone silent, forget them, queue feeds that have no poll, and a delivery round."""
        with self._carry_on("tick", "the cluster's tick"):
            retried = self.cluster.retry_stalled()
            if retried:
                log.warning(
                    "retried %s of processes that stopped without a word",
                    plural(retried, "job"),
                    extra=event("cluster.retried", jobs=retried),
                )
            live = [w.id for w in self.cluster.live_workers()]
            self.watcher.store.forget_members(live, self.watcher.now() - timedelta(seconds=60))
            self._queue_missing_polls()
            self._start_senders()

    # -- config --------------------------------------------------------------------------

    def reload(self) -> None:
        digest = config_hash(self.config_path) or ""
        self._tried_hash = digest
        old = self.watcher
        super().reload()
        if self.watcher is not old and self.worker_id is not None:
            self.config_hash = digest
            with self._carry_on("tick", "recording the config"):
                self.watcher.store.loaded_config(self.worker_id, digest, self.watcher.now())

    def _check_config(self) -> None:
        """Reload when the config file changed; say so when the cluster runs another config.
        (And stop when the worker died: a member that takes no job must not look alive.)"""
        if not self.cluster.running and not self.stop.is_set():
            log.critical("the cluster's worker stopped; exiting for a supervisor to restart watcher")
            self.failed = True
            self.stop.set()
            return
        digest = config_hash(self.config_path)
        if digest is not None and digest != self._tried_hash:
            self.reload()
            return
        with self._carry_on("tick", "reading the cluster's config"):
            live = {w.id for w in self.cluster.live_workers()}
            members = self.watcher.store.members(live)
            newest = max(members, key=lambda m: m.config_loaded_at, default=None)
            if newest is not None and newest.config_hash not in (self.config_hash, self._told_hash):
                self._told_hash = newest.config_hash
                log.warning(
                    "%s runs another config than this process (%s): its file differs from this one's; "
                    "put the same config on every process of the cluster",
                    newest.owner,
                    self.config_path,
                    extra=event("config.differs", member=newest.owner),
                )

    def _end_jobs(self) -> str | None:
        # A parse in flight is abandoned now, and its feed handed back; a fetch in flight ends
        # within its timeout. The worker takes no new job and waits for the running ones.
        self.watcher.workers.close()
        ended = self.cluster.stop(STOP_GRACE.total_seconds() + 2)
        if self.worker_id is not None:
            with self._carry_on("tick", "leaving the cluster"):
                self.watcher.store.leave_cluster(self.worker_id)
        return None if ended else "abandoning unfinished jobs; the other processes retry them"


@dataclass(frozen=True)
class Liveness:
    """Whether the daemon's scheduler is alive, and what that was judged on (``/healthz``)."""

    alive: bool
    now: datetime
    started: datetime
    last_cycle: datetime | None
    #: How often the cycle job runs (the shortest feed interval); None with no feeds.
    interval: timedelta | None


class _Cycle:
    """What the polls of one cycle did, summed across the poll threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, result: PollResult) -> None:
        with self._lock:
            self._counts[result.status] += 1
            self._counts["new"] += result.new
            self._counts["hits"] += result.hits

    def take(self) -> collections.Counter[str]:
        """The counts so far (by poll status, "new" and "hits"); the next cycle starts from zero."""
        with self._lock:
            c, self._counts = self._counts, collections.Counter()
        return c

    @staticmethod
    def phrase(c: collections.Counter[str]) -> str:
        """The counts of a cycle as the cycle line says them."""
        polled = c["ok"] + c["not modified"]
        failed = c["failed"] + c["disabled"]
        parts = [f"{plural(polled, 'feed')} polled ({c['not modified']} unchanged)"]
        if failed:
            parts.append(f"{plural(failed, 'failure')}")
        if c["backing off"]:
            parts.append(f"{c['backing off']} backing off")
        parts.append(f"{plural(c['new'], 'new entry', 'new entries')}, {plural(c['hits'], 'hit')}")
        return ", ".join(parts)


class _InFlight:
    """Counts running jobs, so that a stop can wait for them to finish."""

    def __init__(self) -> None:
        self._count = 0
        self._cond = threading.Condition()

    @contextmanager
    def job(self) -> Iterator[None]:
        with self._cond:
            self._count += 1
        try:
            yield
        finally:
            with self._cond:
                self._count -= 1
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for every job to end; return how many still run."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._count and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return self._count
