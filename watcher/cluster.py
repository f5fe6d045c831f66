"""The cluster's job queue: procrastinate on watcher's own PostgreSQL database.

An I/O adapter, and procrastinate's only home. Every `watcher run` on one PostgreSQL
database runs a procrastinate worker; the jobs are what the single-process daemon's
scheduler does:

- ``watcher.poll(name, due)``: poll one feed. At most one is queued per feed (queueing lock
  ``poll:NAME``) and at most one runs (lock ``feed:NAME``); each poll queues the next one at
  its due time plus the feed's interval, so the queue holds the schedule.
- ``watcher.deliver(channel)``: send a channel's due alerts through the outbox (one queued
  and one running per channel: the outbox's one sender per channel, cluster-wide).
- ``watcher.tick`` (periodic, every TICK seconds, run by one process of the cluster): retry
  the jobs of processes that stopped heart-beating (SIGKILL, a lost machine), queue a poll
  for any configured feed that has none, and a delivery round for every channel.
- ``watcher.health`` (every minute) and ``watcher.prune`` (daily, 03:13 UTC): the single
  daemon's health and retention jobs, once for the whole cluster.
- ``watcher.old_jobs`` (hourly): delete the jobs that ended unsuccessfully a week ago.

What a job does is the daemon's (``service.ClusterDaemon``, through the ``Jobs`` protocol);
this module only queues and runs them. The worker runs on its own asyncio loop in a thread;
sync jobs run in that loop's thread pool, and the daemon's threads queue jobs through
``call``. Every procrastinate failure is raised as ``StorageError``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import procrastinate
from procrastinate import exceptions, jobs
from procrastinate.schema import SchemaManager
from procrastinate.worker import Worker

from watcher.errors import StorageError, redact_url

log = logging.getLogger(__name__)
# procrastinate logs every job's start and end at INFO: thousands of lines a minute. Its
# warnings and errors still show.
logging.getLogger("procrastinate").setLevel(logging.WARNING)

T = TypeVar("T")

#: Seconds between two heartbeats of a worker.
HEARTBEAT = 2.0
#: A worker silent this long is dead: its running jobs are retried by the others.
STALLED_AFTER = 10.0
#: Seconds between two ticks (stalled jobs, feeds without a job, delivery rounds).
TICK = 5
#: Seconds between two looks for jobs whose time has come (a job queued for now wakes the
#: workers at once, through NOTIFY; one scheduled for later does not).
FETCH_EVERY = 0.5
#: Seconds a stopping worker waits for its running jobs before abandoning them.
STOP_GRACE = 8.0
#: Hours a job that ended otherwise than successfully stays in the queue's tables.
KEEP_ENDED_JOBS_HOURS = 7 * 24
#: Job priorities: ticks and deliveries go before a backlog of polls.
_PRIORITY = {"watcher.tick": 20, "watcher.deliver": 10, "watcher.poll": 0}


class Jobs(Protocol):
    """What the jobs do: the daemon's side (``service.ClusterDaemon``)."""

    def poll(self, name: str, due: datetime) -> None: ...

    def deliver(self, channel: str) -> None: ...

    def tick(self) -> None: ...

    def check_health(self) -> None: ...

    def prune(self) -> None: ...


@dataclass(frozen=True)
class QueueDepth:
    """Jobs of one task in the queue (``watcher cluster``)."""

    task: str
    #: Waiting to run now.
    due: int
    #: Waiting for their time (the next poll of each feed).
    scheduled: int
    running: int
    #: Failed with an unexpected error (kept for inspection; a poll's feed is queued again by the tick).
    failed: int


@dataclass(frozen=True)
class LiveWorker:
    id: int
    last_heartbeat: datetime
    #: Jobs it runs now.
    running: int


def engine_schema() -> str:
    """procrastinate's SQL schema (applied by migration 0007 on PostgreSQL)."""
    return str(SchemaManager.get_schema())


def conninfo(database_url: str) -> str:
    """The libpq URI of a SQLAlchemy PostgreSQL URL (options such as search_path kept)."""
    scheme, sep, rest = database_url.partition("://")
    return f"postgresql{sep}{rest}" if scheme.startswith("postgresql") else database_url


@contextmanager
def _wrap_errors(what: str) -> Iterator[None]:
    try:
        yield
    except exceptions.ProcrastinateException as e:
        raise StorageError(f"job queue: {what} failed") from e


class Cluster:
    """One process's membership: the procrastinate app and, once started, its worker."""

    def __init__(self, database_url: str, *, concurrency: int, name: str) -> None:
        self.url = database_url
        self.concurrency = concurrency
        self.name = name
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(
                conninfo=conninfo(database_url), min_size=1, max_size=max(4, concurrency // 2)
            )
        )
        self._register()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._worker: Worker | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._jobs: Jobs | None = None

    def _register(self) -> None:
        app = self.app

        @app.task(name="watcher.poll", priority=_PRIORITY["watcher.poll"])
        def poll(name: str, due: float) -> None:
            self._handler().poll(name, datetime.fromtimestamp(due, UTC))

        @app.task(name="watcher.deliver", priority=_PRIORITY["watcher.deliver"])
        def deliver(channel: str) -> None:
            self._handler().deliver(channel)

        # croniter's sixth field is seconds.
        @app.periodic(cron=f"* * * * * */{TICK}", periodic_id="tick")
        @app.task(name="watcher.tick", priority=_PRIORITY["watcher.tick"], queueing_lock="tick")
        def tick(timestamp: int) -> None:
            self._handler().tick()

        @app.periodic(cron="* * * * *", periodic_id="health")
        @app.task(name="watcher.health", priority=_PRIORITY["watcher.tick"], queueing_lock="health", lock="health")
        def check_health(timestamp: int) -> None:
            self._handler().check_health()

        @app.periodic(cron="13 3 * * *", periodic_id="prune")
        @app.task(name="watcher.prune", queueing_lock="prune", lock="prune")
        def prune(timestamp: int) -> None:
            self._handler().prune()

        # A job that succeeded is deleted as it ends; the others (a poll that hit a bug, one
        # aborted at a stop) stay a week for `watcher cluster` and inspection.
        @app.periodic(cron="17 * * * *", periodic_id="old_jobs")
        @app.task(name="watcher.old_jobs", queueing_lock="old_jobs")
        async def old_jobs(timestamp: int) -> None:
            await app.job_manager.delete_old_jobs(
                nb_hours=KEEP_ENDED_JOBS_HOURS, include_failed=True, include_cancelled=True, include_aborted=True
            )

        self._poll, self._deliver = poll, deliver

    def _handler(self) -> Jobs:
        assert self._jobs is not None, "a job ran before the worker started"
        return self._jobs

    # -- the worker ------------------------------------------------------------------

    def start(self, jobs: Jobs, timeout: float = 60) -> int:
        """Start this process's worker in a thread; return its id once it is registered.

        Raises:
            StorageError: the worker could not start (database unreachable, schema missing).
        """
        self._jobs = jobs
        self._thread = threading.Thread(target=self._run, name="cluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._failure is not None:
            raise StorageError(f"job queue on {redact_url(self.url)} did not start") from self._failure
        assert self._worker is not None and self._worker.worker_id is not None
        return self._worker.worker_id

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        # procrastinate runs sync jobs in the loop's default executor: as many threads as jobs.
        loop.set_default_executor(ThreadPoolExecutor(self.concurrency, thread_name_prefix="job"))
        try:
            loop.run_until_complete(self._work())
        except BaseException as e:
            self._failure = e
            log.critical("the cluster worker stopped: %s", e, exc_info=True)
        finally:
            self._ready.set()
            loop.close()

    async def _work(self) -> None:
        async with self.app.open_async():
            self._worker = worker = Worker(
                self.app,
                name=self.name,
                concurrency=self.concurrency,
                install_signal_handlers=False,  # the daemon owns the signals
                delete_jobs=jobs.DeleteJobCondition.SUCCESSFUL,
                update_heartbeat_interval=HEARTBEAT,
                stalled_worker_timeout=STALLED_AFTER,
                shutdown_graceful_timeout=STOP_GRACE,
                fetch_job_polling_interval=FETCH_EVERY,
            )
            running = asyncio.create_task(worker.run())  # type: ignore[no-untyped-call]
            while worker.worker_id is None and not running.done():
                await asyncio.sleep(0.01)
            self._ready.set()
            await running

    def stop(self, timeout: float) -> bool:
        """Ask the worker to stop taking jobs, and wait up to ``timeout`` seconds for its running
        jobs; return True when it ended (False: some job still runs)."""
        if self._worker is not None:
            self._worker.stop()  # type: ignore[no-untyped-call]
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coro`` on the worker's loop from any other thread, and return its result."""
        assert self._loop is not None, "the worker is not started"
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- queueing ----------------------------------------------------------------------

    def queue_poll(self, name: str, due: datetime) -> bool:
        """Queue a poll of feed ``name`` at ``due``; False when one is queued already."""
        job = self._poll.configure(queueing_lock=f"poll:{name}", lock=f"feed:{name}", schedule_at=due)
        return self._queue(job.defer_async(name=name, due=due.timestamp()), f"queueing a poll of {name}")

    def queue_delivery(self, channel: str) -> bool:
        """Queue a delivery round of ``channel`` now; False when one is queued already."""
        job = self._deliver.configure(queueing_lock=f"deliver:{channel}", lock=f"deliver:{channel}")
        return self._queue(job.defer_async(channel=channel), f"queueing a delivery of {channel}")

    def _queue(self, defer: Coroutine[Any, Any, int], what: str) -> bool:
        with _wrap_errors(what):
            try:
                self.call(defer)
            except exceptions.AlreadyEnqueued:
                return False
        return True

    def queued_polls(self) -> set[str]:
        """The feeds that have a poll queued or running."""
        rows = self._query(
            "SELECT args->>'name' AS name FROM procrastinate_jobs"
            " WHERE task_name = 'watcher.poll' AND status IN ('todo', 'doing')"
        )
        return {r["name"] for r in rows}

    def retry_stalled(self) -> int:
        """Put back in the queue the jobs of workers that stopped heart-beating; return how many."""
        return self.call(self._retry_stalled())

    async def _retry_stalled(self) -> int:
        manager = self.app.job_manager
        retried = 0
        with _wrap_errors("retrying stalled jobs"):
            for job in await manager.get_stalled_jobs(seconds_since_heartbeat=STALLED_AFTER):
                try:
                    await manager.retry_job(job)
                    retried += 1
                except exceptions.ConnectorException:
                    # A twin is queued already (same queueing lock): it does this job's work.
                    await manager.finish_job(job, status=jobs.Status.FAILED, delete_job=False)
            await manager.prune_stalled_workers(STALLED_AFTER)
        return retried

    def live_workers(self) -> list[LiveWorker]:
        """The workers whose heartbeat is recent, with the jobs each runs."""
        rows = self._query(
            "SELECT w.id, w.last_heartbeat, count(j.id) AS running FROM procrastinate_workers w"
            " LEFT JOIN procrastinate_jobs j ON j.worker_id = w.id AND j.status = 'doing'"
            f" WHERE w.last_heartbeat > now() - interval '{STALLED_AFTER} seconds'"
            " GROUP BY w.id, w.last_heartbeat ORDER BY w.id"
        )
        return [LiveWorker(r["id"], r["last_heartbeat"], r["running"]) for r in rows]

    def depth(self) -> list[QueueDepth]:
        """The jobs in the queue per task."""
        rows = self._query(
            "SELECT task_name,"
            " count(*) FILTER (WHERE status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now())) AS due,"
            " count(*) FILTER (WHERE status = 'todo' AND scheduled_at > now()) AS scheduled,"
            " count(*) FILTER (WHERE status = 'doing') AS running,"
            " count(*) FILTER (WHERE status = 'failed') AS failed"
            " FROM procrastinate_jobs GROUP BY task_name ORDER BY task_name"
        )
        return [QueueDepth(r["task_name"], r["due"], r["scheduled"], r["running"], r["failed"]) for r in rows]

    def _query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a read-only query on procrastinate's tables: through the worker's pool when it
        runs, else through a connection of its own (``watcher cluster``)."""
        with _wrap_errors("reading the queue"):
            if self._loop is not None and self.running:
                return self.call(self.app.connector.execute_query_all_async(sql))
            with self.app.open():
                connector = self.app.connector.get_sync_connector()
                return connector.execute_query_all(sql)
