"""The one exception tree of watcher.

::

    WatcherError                 str(e) = "message: context: CauseType: cause"
    ├── ConfigError              file, problems ("feeds[3].url: ...") — raised at load, never mid-run
    ├── FeedError                url — logged per feed with its reason; never stops other feeds
    │   ├── FetchError           status, retry_after, gone (timeouts, DNS, 4xx/5xx, too large)
    │   └── ParseError           not a feed / nothing usable
    ├── ArticleError             url — an article page not fetched or not read; its entry is
    │                            matched on the feed's text, with the reason kept on it
    ├── StorageError             any database failure, wrapped inside store.py
    │   └── SchemaOutdatedError  database revision is not head → "run `watcher db upgrade`"
    └── DeliveryError            channel, transient: bool (drives retry versus dead letter)

Library exceptions are translated into these, with ``raise ... from e``, in the module that
uses the library: the adapters (fetch, store, deliver), config (YAML and pydantic), parse
(feedparser) and workers (the pool's time limit and dead workers).
"""

from __future__ import annotations

import pickle
import re


class WatcherError(Exception):
    """Root of every error watcher raises on purpose."""

    def __init__(self, message: str, *context: str) -> None:
        super().__init__(message)
        self.message = message
        self.context = tuple(c for c in context if c)

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (parse workers, fetch helpers); the subclasses'
        # constructors take different arguments, so rebuild from the instance's state
        # instead, with the cause that the message names when it can travel too.
        return _rebuild, (type(self), self.args, self.__dict__, portable(self.__cause__))

    def __str__(self) -> str:
        parts = [self.message, *self.context]
        cause = self.__cause__
        if cause is not None and str(cause) not in self.message:
            parts.append(f"{type(cause).__name__}: {cause}")
        return ": ".join(parts)


def _rebuild(
    cls: type[WatcherError], args: tuple[object, ...], state: dict[str, object], cause: BaseException | None = None
) -> WatcherError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    error.__cause__ = cause
    return error


def portable(error: BaseException | None) -> BaseException | None:
    """``error`` if it can be pickled to another process, else None."""
    try:
        pickle.dumps(error)
    except Exception:
        return None
    return error


class ConfigError(WatcherError):
    """The configuration file cannot be used. Lists every problem found, one per line."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = list(problems)
        super().__init__("\n".join(located(path, p) for p in self.problems))

    def __str__(self) -> str:
        return self.message


def located(path: str, problem: str) -> str:
    """``file:LINE[:COLUMN]: problem``, the compiler style editors jump to, from a problem
    that starts ``line N: `` or ``line N, column M: ``; else ``file: problem``."""
    match = re.match(r"line (\d+)(?:, column (\d+))?: ", problem)
    if match is None:
        return f"{path}: {problem}"
    where = ":".join(g for g in match.groups() if g)
    return f"{path}:{where}: {problem[match.end() :]}"


class FeedError(WatcherError):
    """A feed could not be polled. Carries the feed URL (credentials masked)."""

    def __init__(self, url: str, reason: str, *, kind: str = "internal") -> None:
        self.url = url
        self.reason = reason
        #: The class of failure, one of a few words, for metrics and the status page:
        #: http_4xx, http_5xx, timeout, fetch (any other fetch failure), parse, storage or internal.
        self.kind = kind
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.url}: {super().__str__()}"


class FetchError(FeedError):
    """Fetching failed: network, HTTP status, size or time limits."""

    def __init__(
        self,
        url: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        gone: bool = False,
        timed_out: bool = False,
    ) -> None:
        if status is not None:
            kind = "http_5xx" if status >= 500 else "http_4xx"
        else:
            kind = "timeout" if timed_out else "fetch"
        super().__init__(url, reason, kind=kind)
        #: HTTP status when the server answered, else None (DNS, refused, timeout).
        self.status = status
        #: Seconds the server asked us to wait (429/503 Retry-After), if any.
        self.retry_after = retry_after
        #: True on 410 Gone: the feed is disabled until the operator re-enables it.
        self.gone = gone


class ParseError(FeedError):
    """The body is not a feed, or nothing usable could be read from it."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(url, reason, kind="parse")


class ArticleError(WatcherError):
    """An entry's article page could not be fetched or read: the entry is matched on the
    feed's own text, and ``reason`` is kept on it (``watcher hits``, ``watcher feeds``)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(reason)

    def __str__(self) -> str:
        return f"{self.url}: {super().__str__()}"


class Abandoned(WatcherError):
    """Work given up because watcher is stopping. Nothing is recorded of it: it is redone."""


class StorageError(WatcherError):
    """Any database failure."""


class SchemaOutdatedError(StorageError):
    """The database schema is not at the latest migration."""


class DeliveryError(WatcherError):
    """An alert could not be delivered through a channel."""

    def __init__(self, channel: str, reason: str, *, transient: bool, retry_after: float | None = None) -> None:
        self.channel = channel
        self.reason = reason
        #: True when retrying later may succeed (4xx SMTP, 5xx/429 HTTP, network errors).
        self.transient = transient
        #: Seconds the receiver asked us to wait (HTTP 429 Retry-After), if any.
        self.retry_after = retry_after
        super().__init__(reason)

    def __str__(self) -> str:
        return f"channel {self.channel!r}: {super().__str__()}"


def redact_url(url: str) -> str:
    """The URL with any password (and token-like query values) masked, for logs and errors."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    query = parts.query
    if netloc == parts.netloc and not query:
        return url  # nothing to mask; urlunsplit would also mangle "sqlite:////abs/path"
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        secretish = ("key", "token", "secret", "password", "passwd", "sig", "auth")
        masked = [(k, "***" if any(s in k.lower() for s in secretish) else v) for k, v in pairs]
        query = urlencode(masked, safe="*:/")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``"1 hit"``, ``"2 hits"``; ``nouns`` for the irregular ones (``"entry", "entries"``)."""
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def url_origin(url: str) -> str:
    """Scheme and host only (``https://hooks.example.org/…``), for URLs whose path is a
    secret, as webhook URLs so often are (Slack's and Discord's carry their token there)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparseable URL>"
    return f"{parts.scheme}://{host}{port}/…" if host else "<URL>"
