"""The daemon's Prometheus metrics, with the official ``prometheus-client`` library.

Counters and histograms move with what each poll and each delivery reports (``PollResult``,
``DeliveryReport``); gauges are read from the database at each scrape (``Store.overview``),
so they say what is true now, whichever process changed it. Every label takes a bounded
set of values: outcomes and failure classes are fixed words, and watches and channels are
the config's own names. No URL, title or error text is ever a label.

=============================================  =========================================
``watcher_polls_total{outcome,reason}``        outcome ok, not_modified or failed; reason
                                               the failure's class (``FeedError.kind``)
``watcher_fetch_duration_seconds``             one fetch, connect to last byte
``watcher_poll_duration_seconds``              one poll: fetch, parse and match, store
``watcher_entries_new_total``                  new or changed entries stored
``watcher_hits_total{watch,kind}``             hits; kind statement, mention or theme
``watcher_delivery_attempts_total``            alerts (outbox rows) by channel and the
``{channel,outcome}``                          outcome of a send: sent, failed or dead
``watcher_alert_latency_seconds{channel}``     from a hit recorded to its alert accepted
``watcher_outbox_alerts{status}``              alerts not sent: due, failed, dead
``watcher_outbox_oldest_due_age_seconds``      how long the longest-waiting due alert has
                                               been due (0 when none is)
``watcher_feeds{health}``                      feeds by status of the last poll (new, ok,
                                               empty, failed, disabled)
``watcher_feed_health{health}``                feeds by health alerted: ok, failing, gone,
                                               silent (see ``watcher.health``)
``watcher_database_up``                        1 when the last scrape could read the
                                               database, else 0
``watcher_info{version}``, ``process_*``,      the version; the process's memory, CPU,
``python_*``                                   open files, and the garbage collector
=============================================  =========================================
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from watcher import __version__
from watcher.types import FeedStatus, Health

if TYPE_CHECKING:
    from watcher.deliver import DeliveryReport
    from watcher.pipeline import PollResult
    from watcher.store import Overview

#: The Content-Type of ``Metrics.exposition``.
CONTENT_TYPE = CONTENT_TYPE_LATEST

#: Seconds: fetches and polls take from a few milliseconds (a 304 on loopback) to the fetch
#: deadline (20 s by default) and beyond on a slow parse.
_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)
#: Seconds from hit to alert: immediate alerts within seconds, retries and digests hours later.
_LATENCY_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 4 * 3600.0, 8 * 3600.0, 86400.0)

_POLLED = {"ok": "ok", "not modified": "not_modified", "failed": "failed"}


class Metrics:
    """The metrics of one daemon, in a registry of its own (tests build as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "watcher_polls",
            "Polls of feeds, by outcome and, for failures, reason class.",
            ["outcome", "reason"],
            registry=r,
        )
        for outcome in ("ok", "not_modified"):
            self.polls.labels(outcome, "")
        self.fetch_seconds = Histogram(
            "watcher_fetch_duration_seconds", "Time to fetch a feed.", buckets=_DURATION_BUCKETS, registry=r
        )
        self.poll_seconds = Histogram(
            "watcher_poll_duration_seconds",
            "Time to poll a feed: fetch, parse and match, store.",
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.entries = Counter("watcher_entries_new", "New or changed entries stored.", registry=r)
        self.hits = Counter("watcher_hits", "Hits recorded, by watch and kind.", ["watch", "kind"], registry=r)
        self.attempts = Counter(
            "watcher_delivery_attempts",
            "Alerts (outbox rows) by channel and the outcome of their delivery attempt.",
            ["channel", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "watcher_alert_latency_seconds",
            "Time from a hit being recorded to its alert being accepted by the channel's server.",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.alerts = Gauge("watcher_outbox_alerts", "Alerts not sent, by outbox status.", ["status"], registry=r)
        self.oldest_due = Gauge(
            "watcher_outbox_oldest_due_age_seconds",
            "How long the longest-waiting due alert has been due; 0 when none is.",
            registry=r,
        )
        self.feeds = Gauge(
            "watcher_feeds", "Configured feeds by the status of their last poll.", ["health"], registry=r
        )
        self.feed_health = Gauge(
            "watcher_feed_health", "Feeds by health alerted: ok, failing, gone, silent.", ["health"], registry=r
        )
        self.database_up = Gauge("watcher_database_up", "1 when the database could be read at this scrape.", registry=r)
        Info("watcher", "The running watcher.", registry=r).info({"version": __version__})
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._scrape = threading.Lock()

    def polled(self, result: PollResult) -> None:
        """Count one poll's outcome, its timings, entries and hits. A feed not fetched (backing
        off, disabled) or abandoned at a stop is no poll, and counts nothing."""
        outcome = _POLLED.get(result.status)
        if outcome is None or result.error_kind == "abandoned":
            return
        self.polls.labels(outcome, result.error_kind or "").inc()
        if "fetch" in result.timings:
            self.fetch_seconds.observe(result.timings["fetch"])
        self.poll_seconds.observe(sum(result.timings.values()))
        if result.new:
            self.entries.inc(result.new)
        self.matched(result.found)

    def matched(self, found: Iterable[tuple[str, str]]) -> None:
        """Count new hits, (watch, kind) each: a poll's, or those of an entry matched once
        its article page came."""
        for watch, kind in found:
            self.hits.labels(watch, kind).inc()

    def delivered(self, report: DeliveryReport) -> None:
        """Count each alert's delivery attempt, and the latency of those sent."""
        for d in report.deliveries:
            if d.outcome == "released":  # given back untried at a stop
                continue
            self.attempts.labels(d.channel, d.outcome).inc(len(d.ids))
            for waited in d.waited:
                self.latency.labels(d.channel).observe(max(0.0, waited.total_seconds()))

    def exposition(self, overview: Overview | None, now: datetime) -> bytes:
        """Every metric in Prometheus' text format, the gauges set from ``overview`` (None when
        the database could not be read: then only ``watcher_database_up`` says so)."""
        with self._scrape:
            self.database_up.set(0 if overview is None else 1)
            if overview is not None:
                # Every value always, 0 included: an alert rule on a series that vanishes
                # when its count is 0 would never resolve.
                for health in get_args(FeedStatus):
                    self.feeds.labels(health).set(overview.feeds.get(health, 0))
                for health in get_args(Health):
                    self.feed_health.labels(health).set(overview.health.get(health, 0))
                for status, count in overview.alerts.items():
                    self.alerts.labels(status).set(count)
                due = overview.oldest_due
                self.oldest_due.set(max(0.0, (now - due).total_seconds()) if due else 0.0)
            return generate_latest(self.registry)
