"""Deliver alerts: the email and webhook channels, and the outbox flush that drives them.

An I/O adapter. Channels take frozen settings from ``config``, render with the pure
``render`` module and raise ``DeliveryError`` with a transient or permanent flag; each
channel has exactly one function that turns its library's exceptions into that error.

Outcome of one send, per channel::

    channel  what happened                                         result
    -------  ----------------------------------------------------  ---------------------------
    email    server accepted the message (250)                     sent
    email    4xx reply; refused/reset/timed-out connection; DNS;   transient: retried later
             TLS failure; server hung up
    email    5xx reply; server lacks STARTTLS/AUTH asked for       permanent: dead
    webhook  2xx                                                   sent
    webhook  408, 429, 5xx; connection error, timeout, TLS error   transient (Retry-After honoured)
    webhook  3xx (redirects are not followed), other 4xx           permanent: dead

``flush_outbox`` gives at-least-once delivery: a row is marked sent only after the server
accepted it, and a crash between claim and mark leaves the row claimed by a dead process,
which ``Store.release_dead_claims`` (run at the start of every flush) or the end of the
lease makes due again. The only duplicate is therefore a crash after the server accepted
and before the row was marked; the resent alert carries the same Message-ID / webhook-id.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import requests
import standardwebhooks

from watcher import __version__
from watcher.backoff import doubling_delay, parse_retry_after
from watcher.config import ChannelSettings, Config, SmtpSettings
from watcher.errors import ConfigError, DeliveryError, plural, url_origin
from watcher.logs import event
from watcher.render import error_excerpt, render_alert, render_digest, sample_item, webhook_payload
from watcher.types import OutboxItem

log = logging.getLogger(__name__)

#: Attempts before a transiently failing alert is given up as dead.
MAX_ATTEMPTS = 10
#: Delay after the first failed attempt; it doubles per attempt up to RETRY_CAP.
FIRST_RETRY = timedelta(minutes=4)
#: 4m, 8m, 16m, 32m, 64m, 128m, 256m, 8h, 8h: about 24.5 hours over 10 attempts.
RETRY_CAP = timedelta(hours=8)
#: A receiver's Retry-After is obeyed within these bounds (a hostile value cannot park us).
RETRY_AFTER_BOUNDS = (timedelta(seconds=1), timedelta(days=1))
#: Rows claimed per round; also the most alerts one digest email carries (a bigger backlog
#: goes out as several digests rather than one unreadable one).
BATCH = 200
#: (connect, read) seconds for webhook requests.
WEBHOOK_TIMEOUT = (5.0, 15.0)
#: The longest one send may take, from connecting to the server's last byte: a receiver
#: answering a byte every few seconds never trips a per-read timeout.
SEND_DEADLINE = timedelta(seconds=60)
#: Bytes of a webhook error response kept for the error message.
RESPONSE_SNIPPET = 300


class OutboxStore(Protocol):
    """The part of ``store.Store`` the flush uses (adapters do not import each other)."""

    def release_dead_claims(self) -> int: ...
    def claim_due(
        self, now: datetime, *, owner: str, lease: timedelta, channels: Collection[str], limit: int = ...
    ) -> list[OutboxItem]: ...
    def mark_sent(self, ids: Sequence[int], now: datetime) -> None: ...
    def revive(self, channel: str, now: datetime) -> int: ...
    def mark_failed(self, ids: Sequence[int], error: str, next_attempt_at: datetime) -> None: ...
    def mark_dead(self, ids: Sequence[int], error: str) -> None: ...
    def release(self, ids: Sequence[int], *, owner: str) -> None: ...
    def renew_claims(self, ids: Sequence[int], *, owner: str, until: datetime) -> int: ...


class Channel(Protocol):
    """Somewhere alerts go. ``send`` raises ``DeliveryError``; it never returns a failure."""

    name: str
    #: True when all due alerts of the channel go out together as one digest.
    digest: bool

    def send(self, items: Sequence[OutboxItem], now: datetime, *, test: bool = False) -> str:
        """Deliver one alert (or, for a digest channel, several as one); return the server's answer."""
        ...


def utcnow() -> datetime:
    return datetime.now(UTC)


# -- email -----------------------------------------------------------------------------


class _Recording:
    """Remembers the server's reply to DATA, the answer ``send-test`` reports."""

    accepted: str = ""

    def data(self, msg: Any) -> tuple[int, bytes]:
        code, text = super().data(msg)  # type: ignore[misc]
        self.accepted = f"{code} {text.decode('utf-8', 'replace')}"
        return code, text


class _SMTP(_Recording, smtplib.SMTP):
    pass


class _SMTPSSL(_Recording, smtplib.SMTP_SSL):
    pass


class EmailChannel:
    """Alerts as emails through one SMTP server (``security``: none, starttls or ssl).

    ``ssl_context`` is a test seam (a context trusting a test CA); by default the system's
    trust store is used with hostname checking. STARTTLS is never skipped: a server that
    does not offer it is a permanent error, not a reason to send in clear.
    """

    def __init__(
        self, settings: ChannelSettings, smtp: SmtpSettings, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.name = settings.name
        self.digest = settings.digest is not None
        self.settings = settings
        self.smtp = smtp
        self._ssl = ssl_context or ssl.create_default_context()

    @classmethod
    def configure(cls, settings: ChannelSettings, config: Config) -> EmailChannel:
        if config.smtp is None:
            raise ConfigError(config.path, [f"channels: {settings.name}: an email channel needs an `smtp` section"])
        return cls(settings, config.smtp)

    @property
    def server(self) -> str:
        return f"SMTP {self.smtp.host}:{self.smtp.port}"

    def render(self, items: Sequence[OutboxItem], now: datetime, *, test: bool = False) -> EmailMessage:
        """The email for ``items``: a digest on digest channels, else the one alert."""
        if self.digest and not test and items[0].health is None:
            return render_digest(items, sender=self.smtp.sender, to=self.settings.to, now=now)
        (item,) = items
        return render_alert(item, sender=self.smtp.sender, to=self.settings.to, now=now, test=test)

    def send(self, items: Sequence[OutboxItem], now: datetime, *, test: bool = False) -> str:
        msg = self.render(items, now, test=test)
        # Leaving the client's `with` sends QUIT (a hang-up at that point is ignored by smtplib).
        with _smtp_errors(self.name, self.server), self._connect() as client:
            if self.smtp.security == "starttls":
                client.starttls(context=self._ssl)
            if self.smtp.username:
                client.login(self.smtp.username, self.smtp.password or "")
            refused = client.send_message(msg, from_addr=self.smtp.sender, to_addrs=list(self.settings.to))
        if refused:
            # Some recipients got it: retrying would duplicate for them, so it counts as sent.
            log.warning("channel %s: recipients refused: %s", self.name, _refusals(refused))
            return f"{client.accepted} (refused: {_refusals(refused)})"
        return client.accepted

    def _connect(self) -> _SMTP | _SMTPSSL:
        timeout = self.smtp.timeout.total_seconds()
        if self.smtp.security == "ssl":
            return _SMTPSSL(self.smtp.host, self.smtp.port, timeout=timeout, context=self._ssl)
        return _SMTP(self.smtp.host, self.smtp.port, timeout=timeout)


def _refusals(refused: Mapping[str, tuple[int, bytes]]) -> str:
    return "; ".join(f"{addr}: {code} {text.decode('utf-8', 'replace')}" for addr, (code, text) in refused.items())


@contextmanager
def _smtp_errors(channel: str, server: str) -> Iterator[None]:
    """The one place smtplib's exceptions become ``DeliveryError``.

    ====================================================  ==========
    5xx reply (greeting, HELO, AUTH, MAIL, RCPT, DATA)    permanent
    4xx reply, or a reply code smtplib could not read     transient
    every recipient refused                               transient if any refusal is 4xx
    STARTTLS or AUTH not offered, no usable AUTH method   permanent (fix the config)
    hang-up, refused, reset, timeout, DNS, TLS failure    transient
    ====================================================  ==========
    """
    try:
        yield
    except smtplib.SMTPRecipientsRefused as e:
        codes = [code for code, _ in e.recipients.values()]
        raise DeliveryError(
            channel,
            f"{server}: every recipient refused: {_refusals(e.recipients)}",
            transient=any(400 <= c < 500 for c in codes),
        ) from e
    except smtplib.SMTPResponseException as e:
        text = e.smtp_error.decode("utf-8", "replace") if isinstance(e.smtp_error, bytes) else str(e.smtp_error)
        raise DeliveryError(
            channel, f"{server}: server answered {e.smtp_code} {text}", transient=not 500 <= e.smtp_code < 600
        ) from e
    except smtplib.SMTPServerDisconnected as e:
        raise DeliveryError(channel, f"{server}: server closed the connection", transient=True) from e
    except smtplib.SMTPException as e:
        raise DeliveryError(channel, f"{server}: {e}", transient=False) from e
    except OSError as e:
        raise DeliveryError(channel, f"{server}: cannot talk to the server", transient=True) from e


# -- webhook ---------------------------------------------------------------------------


def signing_key(secret: str) -> str:
    """The key given to ``standardwebhooks.Webhook`` for a configured secret.

    A ``whsec_<base64>`` secret is used as the Standard Webhooks spec defines. Any other
    string is taken as raw key bytes (UTF-8) and base64-encoded here, so any secret works;
    receivers verify with ``Webhook("whsec_" + base64(secret))`` or, equivalently, with
    ``Webhook(secret.encode())``.
    """
    if secret.startswith("whsec_"):
        return secret
    return "whsec_" + base64.b64encode(secret.encode("utf-8")).decode("ascii")


class WebhookChannel:
    """Alerts as signed JSON POSTs (Standard Webhooks: webhook-id, -timestamp, -signature).

    ``session`` is a test seam (e.g. one whose ``verify`` trusts a test CA); TLS
    verification is on by default. ``clock`` gives the signature timestamp: receivers
    reject one more than five minutes from their own clock, so it is the real time of the
    request, not the ``now`` of the flush that started it.
    """

    digest = False

    def __init__(
        self,
        settings: ChannelSettings,
        *,
        session: requests.Session | None = None,
        timeout: tuple[float, float] = WEBHOOK_TIMEOUT,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not settings.url or not settings.secret:
            raise ValueError(f"webhook channel {settings.name!r} needs a url and a secret")
        self.name = settings.name
        self.url = settings.url
        self._signer = standardwebhooks.Webhook(signing_key(settings.secret))
        self._session = session or requests.Session()
        self._timeout = timeout
        self._clock = clock

    @classmethod
    def configure(cls, settings: ChannelSettings, config: Config) -> WebhookChannel:
        try:
            return cls(settings)
        except (ValueError, standardwebhooks.webhooks.EmptyWebhookSecretError) as e:
            raise ConfigError(config.path, [f"channels: {settings.name}: secret: not usable ({e})"]) from e

    def send(self, items: Sequence[OutboxItem], now: datetime, *, test: bool = False) -> str:
        (item,) = items
        payload = webhook_payload(item, test=test)
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sent_at = self._clock()
        headers = {
            "content-type": "application/json",
            "user-agent": f"watcher/{__version__}",
            "webhook-id": payload["id"],
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": self._signer.sign(payload["id"], sent_at, body),
        }
        with (
            _http_errors(self.name, self.url),
            self._session.post(
                self.url,
                data=body.encode("utf-8"),
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            ) as response,
        ):
            snippet = next(response.iter_content(RESPONSE_SNIPPET), b"")
        return _check_status(self.name, self.url, response, snippet, sent_at)


def _check_status(channel: str, url: str, response: requests.Response, snippet: bytes, now: datetime) -> str:
    """Return the answer for 2xx; raise per the table in the module docstring otherwise."""
    status = response.status_code
    answer = f"HTTP {status} {response.reason or ''}".rstrip()
    if 200 <= status < 300:
        return answer
    where = f"POST {url_origin(url)}"
    body = error_excerpt(snippet, response.headers.get("content-type"))
    detail = f"{where}: {answer}" + (f": {body}" if body else "")
    if 300 <= status < 400:
        location = url_origin(response.headers.get("location", "?"))
        raise DeliveryError(channel, f"{where}: {answer} to {location}; configure the final URL", transient=False)
    transient = status in (408, 429) or status >= 500
    retry_after = parse_retry_after(response.headers.get("retry-after"), now=now) if transient else None
    raise DeliveryError(channel, detail, transient=transient, retry_after=retry_after)


@contextmanager
def _http_errors(channel: str, url: str) -> Iterator[None]:
    """The one place requests' exceptions become ``DeliveryError``.

    A bad URL (no scheme, unsupported scheme, invalid) is permanent; every other failure
    (refused, reset, DNS, timeout, TLS) is transient. The error is raised ``from None``:
    requests' messages repeat the URL, whose query may hold a token; the text kept is
    scrubbed of it instead.
    """
    where = f"POST {url_origin(url)}"
    try:
        yield
    except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema) as e:
        raise DeliveryError(channel, f"{where}: invalid URL ({type(e).__name__})", transient=False) from None
    except requests.RequestException as e:
        kind = "timed out" if isinstance(e, requests.Timeout) else "failed"
        text = _scrub(str(e), url)
        raise DeliveryError(channel, f"{where}: {kind}: {type(e).__name__}: {text}", transient=True) from None


def _scrub(text: str, url: str) -> str:
    """``text`` without the URL's path and query (a webhook's token often sits in either),
    also where requests quotes them on their own."""
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    text = text.replace(url, url_origin(url))
    return text.replace(path, "/…") if path not in ("", "/") else text


# -- registry --------------------------------------------------------------------------


CHANNELS: dict[str, type[EmailChannel | WebhookChannel]] = {"email": EmailChannel, "webhook": WebhookChannel}


def make_channels(config: Config) -> dict[str, Channel]:
    """One channel object per configured channel, by name.

    Raises:
        ConfigError: an email channel without an ``smtp`` section, or an unusable secret.
    """
    return {c.name: CHANNELS[c.type].configure(c, config) for c in config.channels}


def send_test(channel: Channel, now: datetime) -> str:
    """Send a sample alert through ``channel`` and return the server's answer.

    Raises:
        DeliveryError: the server refused it or could not be reached.
    """
    return channel.send([sample_item(channel.name, now)], now, test=True)


# -- the outbox ------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What happened to one send: one alert, or one digest of several rows."""

    channel: str
    #: The outbox rows concerned.
    ids: tuple[int, ...]
    outcome: Literal["sent", "failed", "dead", "released"]
    #: The server's answer when sent; the reason otherwise.
    detail: str
    #: When sent: for each row, how long after its hit was recorded the server accepted it.
    waited: tuple[timedelta, ...] = ()


@dataclass(frozen=True)
class DeliveryReport:
    """Every delivery of one ``flush_outbox`` call. Counts are of outbox rows."""

    deliveries: tuple[Delivery, ...] = ()

    def _rows(self, outcome: str) -> int:
        return sum(len(d.ids) for d in self.deliveries if d.outcome == outcome)

    @property
    def sent(self) -> int:
        return self._rows("sent")

    @property
    def failed(self) -> int:
        return self._rows("failed")

    @property
    def dead(self) -> int:
        return self._rows("dead")

    @property
    def released(self) -> int:
        return self._rows("released")

    def __str__(self) -> str:
        return f"{self.sent} sent, {self.failed} failed, {self.dead} dead, {self.released} released"


def retry_delay(attempts: int, *, retry_after: float | None = None, jitter: float = 0.5) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt.

    FIRST_RETRY doubles per attempt up to RETRY_CAP, spread by ±20% (``jitter`` in [0, 1))
    so alerts that failed together do not all return at the same second. A receiver's
    Retry-After (bounded by RETRY_AFTER_BOUNDS) can make the wait longer, never shorter:
    a receiver answering "503, Retry-After: 5" while it restarts must not use up the ten
    attempts meant to span a day within a minute.
    """
    delay = doubling_delay(FIRST_RETRY, attempts - 1, RETRY_CAP, jitter=jitter, spread=0.2)
    if retry_after is not None:
        low, high = RETRY_AFTER_BOUNDS
        delay = max(delay, timedelta(seconds=min(max(retry_after, low.total_seconds()), high.total_seconds())))
    return delay


def flush_outbox(
    store: OutboxStore,
    channels: Mapping[str, Channel],
    *,
    now: datetime,
    owner: str,
    lease: timedelta = timedelta(minutes=5),
    stop: threading.Event | None = None,
    deadline: timedelta = SEND_DEADLINE,
) -> DeliveryReport:
    """Send everything due at ``now`` on ``channels``; return one ``Delivery`` per send.

    Only the rows of ``channels`` are claimed: the rows of a channel this process does not
    know (another watcher's, or one taken out of the config) wait, due or failed, for a
    watcher that knows it. Claims due rows in rounds of BATCH until none is left. A digest
    channel's claimed rows go out as one email; every other row alone. Each row ends sent,
    failed (retried after ``retry_delay``; dead after MAX_ATTEMPTS), dead (permanent error)
    or, when ``stop`` is set, released untouched for the next run.

    Each send has ``deadline`` in all (see ``_send_within``). After a transient failure the
    channel's other rows of this flush are not tried: they are marked failed with the same
    reason, which keeps a dead server from holding the claims past their lease one timeout
    at a time. After a success, the channel's failed rows are due at once, oldest first:
    its receiver is back, and the backlog of an outage goes out before it ages further.
    """
    store.release_dead_claims()
    started = time.monotonic()

    def current() -> datetime:
        # ``now`` moved on by the time this flush has taken: claims and marks stay right
        # during a long flush, and tests can still pass any ``now``.
        return now + timedelta(seconds=time.monotonic() - started)

    deliveries: list[Delivery] = []
    broken: dict[str, DeliveryError] = {}
    revived: set[str] = set()
    while channels and not (stop and stop.is_set()):
        claimed = store.claim_due(current(), owner=owner, lease=lease, channels=list(channels), limit=BATCH)
        if not claimed:
            break
        for name, items in _sends(claimed, channels):
            ids = [i.id for i in items]
            if stop and stop.is_set():
                deliveries.append(_release(store, name, items, owner))
            elif store.renew_claims(ids, owner=owner, until=current() + lease) < len(ids):
                # The round outlived the lease and another sender took rows over: they are its.
                deliveries.append(_release(store, name, items, owner))
            else:
                done = _deliver(store, name, channels[name], items, current(), broken, deadline)
                deliveries.extend(done)
                if name not in revived and any(d.outcome == "sent" for d in done):
                    revived.add(name)
                    if store.revive(name, current()):
                        log.info("channel %s: works again; its failed alerts are due now", name)
    return DeliveryReport(tuple(deliveries))


def _sends(claimed: Sequence[OutboxItem], channels: Mapping[str, Channel]) -> list[tuple[str, list[OutboxItem]]]:
    """Claimed rows cut into sends, in claim order: a digest channel's hits together, every
    other row (a health alert among them) alone."""
    sends: dict[tuple[str, int], list[OutboxItem]] = {}
    for item in claimed:
        together = channels[item.channel].digest and item.health is None
        key = (item.channel, 0 if together else item.id)
        sends.setdefault(key, []).append(item)
    return [(name, items) for (name, _), items in sends.items()]


def _release(store: OutboxStore, name: str, items: Sequence[OutboxItem], owner: str) -> Delivery:
    ids = tuple(i.id for i in items)
    store.release(ids, owner=owner)
    return Delivery(name, ids, "released", "stopping")


def _deliver(
    store: OutboxStore,
    name: str,
    channel: Channel,
    items: Sequence[OutboxItem],
    now: datetime,
    broken: dict[str, DeliveryError],
    deadline: timedelta,
) -> list[Delivery]:
    ids = tuple(i.id for i in items)
    error = broken.get(name)
    if error is None:
        try:
            answer = _send_within(channel, items, now, deadline)
        except DeliveryError as e:
            error = e
        except Exception as e:
            # A bug, not the server: keep the alert (retried with backoff, dead after
            # MAX_ATTEMPTS) and carry on with the others (STYLE rule 4).
            log.critical("channel %s: unexpected error sending %s", name, ids, exc_info=True)
            error = DeliveryError(name, f"internal error: {type(e).__name__}: {e}", transient=True)
        else:
            store.mark_sent(ids, now)
            log.info(
                "channel %s: sent %s: %s",
                name,
                plural(len(ids), "alert"),
                answer,
                extra=event("alert.sent", channel=name, alerts=len(ids), answer=answer),
            )
            return [Delivery(name, ids, "sent", answer, waited=tuple(now - i.created for i in items))]
        if error.transient:
            broken[name] = error
        reason = str(error)
    else:
        reason = f"{error} (not tried: the channel failed earlier in this run)"
    return _mark_failure(store, name, items, error, reason, now)


#: Per channel name, the thread of a send abandoned at its deadline, while it still runs.
_hanging: dict[str, threading.Thread] = {}
_hanging_lock = threading.Lock()


def _send_within(channel: Channel, items: Sequence[OutboxItem], now: datetime, deadline: timedelta) -> str:
    """``channel.send`` with a total deadline.

    The send runs in a thread of its own; one still running at the deadline is abandoned
    (a transient failure: the alert is retried with backoff) and its thread ends when the
    receiver lets go. Neither requests nor smtplib can bound a whole exchange, and this
    way no library's sockets are reached into. While an abandoned send still runs, the
    channel fails at once: at most one thread per channel is ever stuck on a receiver.
    """
    seconds = deadline.total_seconds()
    with _hanging_lock:
        hanging = _hanging.get(channel.name)
        if hanging is not None and hanging.is_alive():
            raise DeliveryError(
                channel.name,
                f"not tried: an earlier send has had no complete answer for over {seconds:.0f}s",
                transient=True,
            )
    outcome: list[str | BaseException] = []

    def send() -> None:
        try:
            outcome.append(channel.send(items, now))
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=send, name=f"send-{channel.name}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        with _hanging_lock:
            _hanging[channel.name] = thread
        raise DeliveryError(channel.name, f"no complete answer within {seconds:.0f}s", transient=True)
    [result] = outcome
    if isinstance(result, BaseException):
        raise result
    return result


def _mark_failure(
    store: OutboxStore, name: str, items: Sequence[OutboxItem], error: DeliveryError, reason: str, now: datetime
) -> list[Delivery]:
    if not error.transient:
        ids = tuple(i.id for i in items)
        store.mark_dead(ids, reason)
        log.warning(
            "channel %s: %s dead: %s",
            name,
            plural(len(ids), "alert"),
            reason,
            extra=event("alert.dead", channel=name, alerts=len(ids), reason=reason),
        )
        return [Delivery(name, ids, "dead", reason)]
    out: list[Delivery] = []
    exhausted = tuple(i.id for i in items if i.attempts >= MAX_ATTEMPTS)
    if exhausted:
        gave_up = f"gave up after {MAX_ATTEMPTS} attempts: {reason}"
        store.mark_dead(exhausted, gave_up)
        out.append(Delivery(name, exhausted, "dead", gave_up))
    # One jitter draw per send keeps a digest's rows together on their next attempt.
    jitter = random.random()
    by_attempts: dict[int, list[int]] = {}
    for item in items:
        if item.attempts < MAX_ATTEMPTS:
            by_attempts.setdefault(item.attempts, []).append(item.id)
    for attempts, row_ids in sorted(by_attempts.items()):
        when = now + retry_delay(attempts, retry_after=error.retry_after, jitter=jitter)
        store.mark_failed(row_ids, reason, when)
        out.append(Delivery(name, tuple(row_ids), "failed", reason))
    log.warning(
        "channel %s: %s failed: %s",
        name,
        plural(len(items), "alert"),
        reason,
        extra=event("alert.failed", channel=name, alerts=len(items), reason=reason),
    )
    return out
