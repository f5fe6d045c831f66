"""Read and validate ``feeds.yaml`` into the frozen settings objects the rest of watcher uses.

Pure: reads only the file it is given (``load_config``) or the text it is handed
(``parse_config``), never the network, and the environment only through the ``env`` mapping.

The classes below are the schema. Each is a frozen pydantic dataclass whose field types carry
their own check and message (``Text``, ``Duration``, ``Port``, ...), so adding a key is adding
one field. A message is written to follow the value as the user wrote it: ``{value}`` in it
becomes the value quoted from the YAML *source*, so a ``${VAR}`` shows as written and never as
the secret it expands to; passwords and secrets are never quoted.

Loading runs in four steps, and every step adds to one list of problems, so a single
``ConfigError`` reports everything wrong with the file at once:

1. YAML text → node tree (``yaml.compose``), kept for line numbers, duplicate keys and the
   source text of scalars; then → plain data (``safe`` construction only).
2. ``${VAR}`` in string values is replaced from ``env``; ``$${VAR}`` is a literal ``${VAR}``.
   A value made with ``${VAR}`` may also give a number or a yes/no to a key that takes one
   (``port: ${SMTP_PORT}``, ``statements_only: ${ONLY}``: true/false, yes/no, on/off, 1/0);
   written in the file, ``"25"`` stays text and an error for ``port``.
3. Each section, and each item of a list section, is validated on its own into its class, so
   one bad feed hides neither the next one's problems nor the checks across items.
4. Checks across items: unique names, and warnings (polling a remote host too often, a
   password sent in clear).

Messages read ``line 14: feeds[3].interval: "5 minutes" is not a duration; use ...`` and
``ConfigError`` prefixes the file. Durations are a number and a unit: ``90s``, ``15m``,
``1.5h``, ``1d``. A bare number is refused (``interval: 15``: seconds or minutes?) with a
message that offers both readings.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field, fields
from datetime import timedelta
from email.utils import parseaddr
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal, cast, get_args
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from watcher.errors import ConfigError, located, redact_url, url_origin

__all__ = [
    "ArticleSettings",
    "ChannelSettings",
    "Config",
    "Defaults",
    "FeedSettings",
    "FullTextMode",
    "HttpSettings",
    "SmtpSettings",
    "Speaker",
    "Theme",
    "format_duration",
    "listening_on",
    "load_config",
    "parse_config",
    "parse_duration",
]

DEFAULT_DATABASE = "sqlite:///watcher.db"
#: Polling a remote host more often than this draws a politeness warning.
POLITE_INTERVAL = timedelta(minutes=5)
SMTP_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
DIGESTS = {"immediate": None, "hourly": timedelta(hours=1), "daily": timedelta(days=1)}

# ---------------------------------------------------------------------------------------------
# Durations


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_FIX = "use a number followed by s, m, h or d (e.g. 5m)"


def _duration(text: str) -> timedelta:
    """Parse ``text``; the ValueError says what is wrong without repeating the value."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"is not a duration; {_DURATION_FIX}")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if seconds < 1:
        # Nothing in watcher works in less than a second; 0.0000001s would schedule a
        # poll loop that never sleeps.
        raise ValueError(f"is {'zero' if seconds == 0 else 'under a second'}; {_DURATION_FIX}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"is too long; {_DURATION_FIX}") from None


def parse_duration(text: str) -> timedelta:
    """``"15m"`` → 15 minutes. A number (integer or decimal) and a unit: s, m, h or d.

    Bare numbers are refused on purpose: in a config file ``15`` is ambiguous.

    Raises:
        ValueError: not a positive duration; the message says how to write one.
    """
    try:
        return _duration(text)
    except ValueError as e:
        raise ValueError(f"{text!r} {e}") from None


def format_duration(value: timedelta) -> str:
    """The shortest way to write ``value`` in the config: ``15m``, ``1h``, ``2d``, ``90s``."""
    seconds = value.total_seconds()
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


# ---------------------------------------------------------------------------------------------
# Field types: each checks one kind of value and says what is wrong with it


def _fail(message: str) -> PydanticCustomError:
    """A problem with a value. ``{value}`` in ``message`` is where the value, as written in the
    file, is quoted; a message without it never shows the value."""
    return PydanticCustomError("watcher", message)


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _wrong(value: object, expected: str, *, scalar: bool = True) -> PydanticCustomError:
    """``value`` is not the kind of value its key takes (``expected``)."""
    if value is None:
        return _fail("is empty; give a value or remove the key")
    if not scalar or isinstance(value, list | tuple | dict):
        return _fail(f"is {_kind(value)}; use {expected}")
    quotes = " without quotes" if isinstance(value, str) else ""
    return _fail(f"{{value}} is {_kind(value)}; use {expected}{quotes}")


class _FromEnv(str):
    """A value made with ``${VAR}``: text by nature, but meant as whatever its key takes."""


def _text(value: object) -> str:
    if isinstance(value, str):
        if not value.strip():
            raise _fail("is empty; give a non-empty value or remove the key")
        return value.strip()
    if value is None or isinstance(value, list | tuple | dict):
        raise _wrong(value, "text")
    # YAML reads yes/no/on/off as booleans and 2024 as a number.
    raise _fail(f"{{value}} is {_kind(value)}, not text; put it in quotes")


def _secret(value: object) -> str:
    # Verbatim: surrounding spaces may be part of it.
    if isinstance(value, str) and value:
        return value
    return _text(value)


def _duration_value(value: object) -> object:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return _duration(value)
        except ValueError as e:
            raise _fail(f"{{value}} {e}") from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _fail(f"{{value}} has no unit; write {value:g}s for seconds or {value:g}m for minutes")
    raise _wrong(value, "a duration: a number followed by s, m, h or d (e.g. 5m)", scalar=False)


def _digest(value: object) -> object:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, str) and value.strip() in DIGESTS:
        return DIGESTS[value.strip()]
    try:
        return _duration_value(value)
    except PydanticCustomError:
        raise _fail("{value} is not a digest; use immediate, hourly, daily or a duration like 30m") from None


def _whole(low: int, high: int, note: str = "") -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, _FromEnv):
            # Strict about text in the file (`port: "25"`), but `port: ${SMTP_PORT}` cannot be
            # anything but text, so a whole number from the environment is taken as one.
            if not re.fullmatch(r"\s*[+-]?\d+\s*", value):
                raise _fail("{value} is not a whole number; set the variable to one")
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _wrong(value, "a whole number")
        if not low <= value <= high:
            raise _fail(f"{{value}} is out of range; use a whole number from {low} to {high}{note}")
        return value

    return check


_ENV_BOOLEANS = {
    "true": True,
    "yes": True,
    "on": True,
    "1": True,
    "false": False,
    "no": False,
    "off": False,
    "0": False,
}


def _flag(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, _FromEnv):
        if value.strip().lower() in _ENV_BOOLEANS:
            return _ENV_BOOLEANS[value.strip().lower()]
        raise _fail("{value} is not a yes or no; set the variable to true or false")
    raise _wrong(value, "true or false")


def _one_of(choices: tuple[str, ...]) -> Callable[[object], str]:
    listing = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"

    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        if isinstance(value, str):
            raise _fail(f"{{value}} is not allowed; use one of: {listing}")
        raise _wrong(value, f"one of the listed words: {listing}", scalar=False)

    return check


_EMPTY_LIST = "is an empty list; list at least one item or remove the key"


def _items(expected: str = "a list, e.g. [a, b]", *, at_least_one: bool = False) -> Callable[[object], object]:
    """A YAML list, kept as a tuple."""

    def check(value: object) -> object:
        if not isinstance(value, list | tuple):
            raise _wrong(value, expected, scalar=False)
        if at_least_one and not value:
            raise _fail(_EMPTY_LIST)
        return tuple(value)

    return check


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # 2+ letters, so C:\feeds is a path


def _check_url(url: str, *, files: bool) -> str:
    fix = "use an http(s) URL or a file path" if files else "use an http(s) URL like https://hooks.example.org/x"
    if any(c.isspace() for c in url):
        raise _fail("{value} contains whitespace; percent-encode spaces as %20")
    if not _SCHEME.match(url):
        if files:
            return url
        raise _fail(f"{{value}} is not a URL; {fix}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if files and scheme == "file":
        if not parts.path:
            raise _fail("{value} is a file URL without a path; write file:///path/to/feed.xml or just the path")
        return url
    if scheme not in ("http", "https"):
        raise _fail(f"{{value}} uses the {scheme}: scheme; {fix}")
    try:
        _ = parts.port  # urlsplit only checks the port when asked for it
    except ValueError:
        raise _fail("{value} has an invalid port; use a number from 1 to 65535") from None
    if not parts.hostname:
        raise _fail("{value} has no host; write it like https://example.org/feed.xml")
    return scheme + url[len(scheme) :]  # so FeedSettings.is_file can trust the prefix


def _feed_location(url: str, info: ValidationInfo) -> str:
    """Where to read a feed: URLs as given; paths and ``file://`` URLs as paths, relative ones
    resolved against the config file's directory."""
    checked = _check_url(url, files=True)
    if not _SCHEME.match(url):
        path = url
    elif urlsplit(url).scheme.lower() == "file":
        path = unquote(urlsplit(url).path)
    else:
        return checked
    base = (info.context or {}).get("base")
    return os.path.normpath(os.path.join(base, path)) if base else path


def _check_database(url: str) -> str:
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise _fail("{value} is not a database URL; use e.g. sqlite:///watcher.db or postgresql+psycopg://user@host/db")
    return url


def _check_address(address: str) -> str:
    _, addr = parseaddr(address)
    if "@" not in addr or any(c.isspace() for c in addr) or "\n" in address or "\r" in address:
        raise _fail("{value} is not an email address; write it like analyst@example.org")
    return address


def _known_watch(name: str, info: ValidationInfo) -> str:
    names: set[str] | None = (info.context or {}).get("watches")
    if names is None or name in names:
        return name
    exact = [n for n in names if n.casefold() == name.casefold()]
    close = exact or difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.5)
    if close:
        raise _fail(f'{{value}} is not a speaker or theme; did you mean "{close[0]}"?')
    known = ", ".join(f'"{n}"' for n in sorted(names)) or "none are configured"
    raise _fail(f"{{value}} is not a speaker or theme; use one of their names ({known})")


ChannelType = Literal["email", "webhook"]


def _channel_type(value: object, info: ValidationInfo) -> str:
    if value not in get_args(ChannelType):
        raise _fail("{value} is not a channel type; use email or webhook")
    if value == "email" and (info.context or {}).get("smtp") is False:
        raise _fail("an email channel needs an smtp section; add smtp: {host: ..., from: ...}")
    return str(value)


Text = Annotated[str, BeforeValidator(_text)]
Secret = Annotated[str, BeforeValidator(_secret)]
Duration = Annotated[timedelta, BeforeValidator(_duration_value)]
Digest = Annotated[timedelta | None, BeforeValidator(_digest)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Threshold = Annotated[int, BeforeValidator(_whole(0, 100, " (higher is stricter)"))]
Port = Annotated[int, BeforeValidator(_whole(1, 65535))]
Phrases = Annotated[tuple[Text, ...], BeforeValidator(_items())]
Group = Annotated[
    tuple[Text, ...],
    BeforeValidator(
        _items('a list, e.g. [a, b] (all_of is a list of groups, e.g. [["US", "U.S."], ["China"]])', at_least_one=True)
    ),
]
FeedUrl = Annotated[Text, AfterValidator(_feed_location)]
HttpUrl = Annotated[Text, AfterValidator(lambda url: _check_url(url, files=False))]
Address = Annotated[Text, AfterValidator(_check_address)]
DatabaseUrl = Annotated[Text, AfterValidator(_check_database)]
Watch = Annotated[Text, AfterValidator(_known_watch)]
Security = Literal["none", "starttls", "ssl"]
#: When a feed's entries have their article page fetched for its full text (``watcher.article``).
FullTextMode = Literal["auto", "always", "never"]
FullText = Annotated[FullTextMode, BeforeValidator(_one_of(get_args(FullTextMode)))]
PerMinute = Annotated[int, BeforeValidator(_whole(1, 100_000))]


def _near(value: object) -> object:
    if isinstance(value, str) and value.strip() in ("sentence", "paragraph", "article"):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 1000:
        return value
    raise _fail("{value} is not a proximity; use sentence, paragraph, article or a number of words like 20")


#: How close a theme's groups must be: in one sentence, one paragraph, anywhere in the
#: article, or (a number) within that many words.
Near = Annotated[Literal["sentence", "paragraph", "article"] | int, BeforeValidator(_near)]
#: Where a theme must show to count: in the headline, the headline or lead, or anywhere.
Where = Annotated[Literal["title", "lead", "anywhere"], BeforeValidator(_one_of(("title", "lead", "anywhere")))]
#: What a ``none_of`` phrase vetoes: its sentence, its paragraph, or the whole article.
VetoScope = Annotated[
    Literal["sentence", "paragraph", "article"], BeforeValidator(_one_of(("sentence", "paragraph", "article")))
]
Score = Annotated[int, BeforeValidator(_whole(0, 100, " (higher alerts less)"))]


def _listen(value: object) -> object:
    """``host:port`` (``[::1]:8080`` for IPv6; port 0 takes any free port) → (host, port)."""
    if isinstance(value, tuple):
        return value
    text = _text(value)
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[^\s:\[\]]+):(\d{1,5})", text)
    if match is None or int(match[2]) > 65535:
        raise _fail("{value} is not an address to listen on; write host:port, e.g. 127.0.0.1:8080")
    return match[1].strip("[]"), int(match[2])


#: Where the daemon's HTTP endpoint listens: (host, port).
Listen = Annotated[tuple[str, int], BeforeValidator(_listen)]
Count = Annotated[int, BeforeValidator(_whole(1, 100))]

# ---------------------------------------------------------------------------------------------
# The schema: what the rest of watcher sees

#: Unknown keys are errors; code may build settings by field name (``sender=``), a file by
#: its YAML key (``from:``).
_SCHEMA = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)


@dataclass(frozen=True, config=_SCHEMA)
class Defaults:
    """Per-feed values used when a feed does not set its own."""

    interval: Duration = timedelta(minutes=15)
    timeout: Duration = timedelta(seconds=20)
    #: False: a feed's first poll stores its backlog silently instead of alerting on all of it.
    alert_on_first_poll: Flag = False
    #: A feed failing for longer than this is reported as failing (``feed.failing``).
    failing_after: Duration = timedelta(hours=24)
    #: A feed that brings no new entry for longer than this is reported as silent
    #: (``feed.silent``); None: never.
    expect_every: Duration | None = None
    #: auto: fetch an entry's article page when the feed gives only a headline or a teaser;
    #: always; never.
    full_text: FullText = "auto"


@dataclass(frozen=True, config=_SCHEMA, repr=False)
class FeedSettings:
    """One feed to poll. Read from a file, a feed without ``name`` is named after its URL and
    one without ``interval``, ``timeout``, ``alert_on_first_poll``, ``failing_after``,
    ``expect_every`` or ``full_text`` takes ``defaults``'."""

    #: An http(s) URL, or an absolute file path (relative paths are resolved against the
    #: config file's directory; ``file://`` URLs are turned into paths).
    url: FeedUrl
    name: Text
    interval: Duration
    timeout: Duration
    alert_on_first_poll: Flag
    failing_after: Duration = Defaults.failing_after
    expect_every: Duration | None = None
    full_text: FullText = "auto"

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = (info.context or {}).get("defaults", Defaults())
        url = data.get("url")
        fallback = {f.name: getattr(defaults, f.name) for f in fields(Defaults)}
        fallback["name"] = _feed_name(url) if isinstance(url, str) else "feed"
        return data | {key: value for key, value in fallback.items() if data.get(key) is None}

    @property
    def is_file(self) -> bool:
        """True when ``url`` is a local file path rather than an http(s) URL."""
        return not self.url.startswith(("http://", "https://"))

    def __repr__(self) -> str:
        return _repr(self, url=repr(_masked(self.url)))


@dataclass(frozen=True, config=_SCHEMA)
class Speaker:
    """A tracked person."""

    name: Text
    aliases: Phrases = ()
    #: 0-100; higher is stricter. None means the matching contract's default tolerance.
    threshold: Threshold | None = None


@dataclass(frozen=True, config=_SCHEMA)
class Theme:
    """A tracked theme: every ``all_of`` group and one ``any_of`` phrase (if any) met close
    together (``near``), prominently enough (``where``, ``at_least``, ``min_score``), where no
    ``none_of`` phrase vetoes them. docs/matching.md, "Themes", is the whole rule."""

    name: Text
    all_of: Annotated[tuple[Group, ...], BeforeValidator(_items())] = ()
    any_of: Phrases = ()
    none_of: Phrases = ()
    #: 0-100; higher is stricter. None means the matching contract's default tolerance.
    threshold: Threshold | None = None
    near: Near = "sentence"
    where: Where = "anywhere"
    #: How many separate places must show the theme.
    at_least: Count = 1
    none_of_scope: VetoScope = "sentence"
    #: 0-100: the relevance score a hit needs.
    min_score: Score = 50

    @model_validator(mode="after")
    def _matches_something(self) -> Theme:
        if not self.all_of and not self.any_of:
            raise _fail("matches nothing; give all_of groups and/or any_of phrases")
        return self


@dataclass(frozen=True, config=_SCHEMA)
class SmtpSettings:
    """How email channels reach their mail server. Read from a file, ``security`` defaults to
    starttls when a username is given (a password never travels in clear unless asked for),
    else none; ``port`` to the one for ``security``."""

    host: Text
    port: Port
    security: Annotated[Security, BeforeValidator(_one_of(get_args(Security)))]
    #: The From address (YAML key ``from``).
    sender: Address = Field(validation_alias="from")
    username: Text | None = None
    password: Secret | None = field(default=None, repr=False)
    timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="before")
    @classmethod
    def _fill_in(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        if filled.get("security") is None:
            filled["security"] = "starttls" if filled.get("username") else "none"
        if filled.get("port") is None:
            security = filled["security"]
            filled["port"] = SMTP_PORTS.get(security, 25) if isinstance(security, str) else 25
        return filled

    @model_validator(mode="after")
    def _both_or_neither(self) -> SmtpSettings:
        if (self.username is None) != (self.password is None):
            given, missing = ("username", "password") if self.password is None else ("password", "username")
            raise _problems([((missing,), f"required when {given} is set; give both or neither", None)])
        return self


@dataclass(frozen=True, config=_SCHEMA, repr=False)
class ChannelSettings:
    """One place alerts go: an email channel (``to``, ``digest``) or a webhook (``url``, ``secret``).

    For webhooks, ``secret`` is the Standard Webhooks signing key, kept verbatim. A secret of
    the form ``whsec_<base64>`` is used as the spec defines; any other non-empty string is
    taken as raw key bytes (the deliverer base64-encodes it before handing it to
    ``standardwebhooks.Webhook``), so receivers must be given the same string.
    """

    name: Text
    type: Annotated[ChannelType, BeforeValidator(_channel_type)] = field(
        metadata={"missing": "type: email or type: webhook"}
    )
    #: Recipients (email); empty for webhooks.
    to: Annotated[tuple[Address, ...], BeforeValidator(_items())] = field(
        default=(), metadata={"for": "email", "required": True}
    )
    #: None sends each alert at once; otherwise one digest per period (hourly = 1h, daily = 1d).
    digest: Digest = field(default=None, metadata={"for": "email"})
    #: Names of the speakers/themes this channel receives; None means all of them.
    watches: Annotated[tuple[Watch, ...], BeforeValidator(_items(at_least_one=True))] | None = None
    #: True: only hits where a speaker is quoted (statements), not mere mentions or themes.
    statements_only: Flag = False
    #: Webhook endpoint; None for email.
    url: HttpUrl | None = field(default=None, metadata={"for": "webhook", "required": True})
    #: Webhook signing secret; None for email.
    secret: Secret | None = field(default=None, repr=False, metadata={"for": "webhook", "required": True})
    #: True: also the feeds' health alerts (failing, gone, silent, recovered).
    health: Flag = False

    @model_validator(mode="wrap")
    @classmethod
    def _keys_of_its_type(cls, data: Any, handler: ModelWrapValidatorHandler[ChannelSettings]) -> ChannelSettings:
        """Each type takes its own keys, and needs its required ones."""
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in get_args(ChannelType):
            return handler(data)
        known = [f.name for f in fields(cls) if f.metadata.get("for", kind) == kind]
        problems: list[tuple[Loc, str | ErrorDetails, object]] = [
            ((key,), _unknown_key(key, known), value) for key, value in data.items() if key not in known
        ]
        for f in fields(cls):
            if f.metadata.get("for") == kind and f.metadata.get("required") and data.get(f.name) in (None, []):
                given = data.get(f.name) is not None
                problem = _EMPTY_LIST if given else f"required key is missing; add {f.name}: ..."
                problems.append(((f.name,), problem, data.get(f.name)))
        try:
            channel = handler({key: value for key, value in data.items() if key in known})
        except ValidationError as e:
            problems = [(tuple(err["loc"]), err, err["input"]) for err in e.errors()] + problems
        if problems:
            raise _problems(problems)
        return channel

    def __repr__(self) -> str:
        return _repr(self, url=repr(url_origin(self.url)) if self.url else "None")


@dataclass(frozen=True, config=_SCHEMA, repr=False)
class HttpSettings:
    """The daemon's HTTP endpoint (health, metrics, status page): on when ``listen`` is set,
    here or by ``watcher run --http``. Anything but loopback needs ``token``."""

    listen: Listen | None = None
    #: Asked of every request, as a bearer token or as the basic-auth password.
    token: Secret | None = field(default=None, repr=False)

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> HttpSettings:
        problem = self.exposed()
        if problem:
            raise _problems([(("token",), problem, None)])
        return self

    def exposed(self) -> str | None:
        """Why these settings may not be used: listening beyond loopback without a token."""
        if self.listen is None or self.token is not None or _is_loopback(self.listen[0]):
            return None
        return (
            f"required to listen on {self.address} (not loopback): anyone who reaches it could read the "
            "status page; set token: ${WATCHER_HTTP_TOKEN} with a long random value, or listen on 127.0.0.1"
        )

    @property
    def address(self) -> str:
        if self.listen is None:
            return "nowhere"
        host, port = self.listen
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def __repr__(self) -> str:
        return _repr(self)


@dataclass(frozen=True, config=_SCHEMA)
class ArticleSettings:
    """Fetching entries' article pages for their full text (``full_text`` per feed)."""

    #: How long an entry waits for its page before it is matched on the feed's own text.
    wait: Duration = timedelta(minutes=2)
    #: Requests for pages (and robots.txt) per minute, in all.
    per_minute: PerMinute = 120
    #: The least time between the starts of two requests to one host.
    host_gap: Duration = timedelta(seconds=1)


@dataclass(frozen=True, config=_SCHEMA, repr=False)
class Config:
    """The whole validated configuration."""

    #: The config file, as given by the caller.
    path: str
    #: SQLAlchemy URL; relative SQLite paths already resolved against the config directory.
    database_url: str = DEFAULT_DATABASE
    defaults: Defaults = Defaults()
    feeds: tuple[FeedSettings, ...] = ()
    speakers: tuple[Speaker, ...] = ()
    themes: tuple[Theme, ...] = ()
    smtp: SmtpSettings | None = None
    channels: tuple[ChannelSettings, ...] = ()
    http: HttpSettings = HttpSettings()
    #: How long stored articles are kept (``watcher run`` deletes older ones daily).
    retention: Duration = timedelta(days=90)
    articles: ArticleSettings = ArticleSettings()
    #: Complete lines (``feeds.yaml: line 7: feeds[0].interval: ...``) for the operator.
    warnings: tuple[str, ...] = ()

    @property
    def watch_names(self) -> tuple[str, ...]:
        """Every speaker and theme name, the names channels' ``watches`` refer to."""
        return tuple(s.name for s in self.speakers) + tuple(t.name for t in self.themes)

    def __repr__(self) -> str:
        return _repr(self, database_url=repr(_masked(self.database_url)))


#: The top-level keys of the file: the sections of ``Config``, and ``database``.
_SECTIONS = ("database", *(f.name for f in fields(Config) if f.name not in ("path", "database_url", "warnings")))


def _repr(obj: object, **shown: str) -> str:
    """A dataclass-style repr that leaves out ``repr=False`` fields and shows ``shown`` instead
    of the real value (used to mask credentials in URLs)."""
    parts = [
        f"{f.name}={shown[f.name] if f.name in shown else repr(getattr(obj, f.name))}"
        for f in fields(obj)  # type: ignore[arg-type]
        if f.repr
    ]
    return f"{type(obj).__name__}({', '.join(parts)})"


def _problems(problems: Sequence[tuple[tuple[str | int, ...], str | ErrorDetails, object]]) -> ValidationError:
    """Problems a validator found at keys below its own value, located there: each a message,
    or an error pydantic found (a missing key stays one)."""

    def kind(problem: str | ErrorDetails) -> str | PydanticCustomError:
        if isinstance(problem, str):
            return _fail(problem)
        return "missing" if problem["type"] == "missing" else _fail(problem["msg"])

    return ValidationError.from_exception_data(
        "settings", [InitErrorDetails(type=kind(problem), loc=loc, input=value) for loc, problem, value in problems]
    )


def _unknown_key(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]!r}?" if close else f"remove it; valid keys here: {', '.join(known)}"
    return f"unknown key {key!r}; {fix}"


def _yaml_keys(cls: Any) -> list[str]:
    """The keys the settings class ``cls`` takes in the file, in order."""
    return [info.validation_alias or name for name, info in cls.__pydantic_fields__.items()]


@cache
def _adapter(cls: Any) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


# ---------------------------------------------------------------------------------------------
# Problems, with line numbers and safe quoting

Loc = tuple[str | int, ...]


def _key_path(loc: Loc) -> str:
    """``("feeds", 3, "url")`` → ``feeds[3].url``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# Keys that hold secrets: their values are never quoted in a message.
_SECRET_KEYS = {"password", "secret"}


class _Report:
    """The YAML's line numbers and source text, and the problems and warnings found so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines: dict[Loc, int] = {}
        #: Scalar values as written in the file (before ``${VAR}`` substitution).
        self.source: dict[Loc, str] = {}
        self.substituted: set[Loc] = set()
        self.problems: list[tuple[int, str]] = []
        self.warnings: list[str] = []

    def line(self, loc: Loc) -> int | None:
        """The line of ``loc``, or of its nearest ancestor the file has (a missing key → its
        mapping's line)."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return None

    def _format(self, loc: Loc, message: str, line: int | None = None) -> tuple[int, str]:
        line = line or self.line(loc)
        where = f"line {line}: " if line else ""
        return line or 0, f"{where}{_key_path(loc) or 'top level'}: {message}"

    def add(self, loc: Loc, message: str, line: int | None = None) -> None:
        """Record a problem at ``loc`` (on ``line`` when the key path alone cannot tell it)."""
        self.problems.append(self._format(loc, message, line))

    def warn(self, loc: Loc, message: str) -> None:
        self.warnings.append(located(self.path, self._format(loc, message)[1]))

    def quote(self, loc: Loc, value: object) -> str:
        """The value at ``loc`` as the user wrote it, safe to print."""
        text = self.source.get(loc)
        if (loc and loc[-1] in _SECRET_KEYS) or text is None:
            # Not a scalar in the file: never str() it, it may hold a ${VAR} value.
            return "the value"
        if len(loc) == 3 and loc[0] == "channels" and loc[2] == "url" and "://" in text:
            text = url_origin(text)  # webhook URLs often carry their token in the path
        elif "://" in text:
            text = _masked(text)
        if len(text) > 80:
            text = text[:77] + "..."
        if not isinstance(value, str):
            return text  # 120, true: quoting them would suggest they were text
        suffix = " (after ${VAR} substitution)" if loc in self.substituted else ""
        return f'"{text}"{suffix}'

    def validate(self, cls: Any, raw: object, loc: Loc, context: dict[str, Any]) -> Any:
        """``raw`` validated into ``cls``, or None with its problems recorded."""
        try:
            return _adapter(cls).validate_python(raw, context=context, by_alias=True, by_name=False)
        except ValidationError as e:
            for err in e.errors():
                where = loc + tuple(err["loc"])
                if err["type"] == "missing":
                    hint = next((f.metadata.get("missing") for f in fields(cls) if f.name == where[-1]), None)
                    self.add(where, f"required key is missing; add {hint or f'{where[-1]}: ...'}")
                elif err["type"] == "unexpected_keyword_argument":
                    self.add(where, _unknown_key(str(where[-1]), _yaml_keys(cls)))
                else:
                    self.add(where, err["msg"].replace("{value}", self.quote(where, err["input"])))
            return None


def _masked(url: str) -> str:
    """``url`` with credentials and token-like query values masked. Only rewritten when there
    is something to mask, because ``urlunsplit`` drops a slash from ``sqlite:////abs/path``."""
    return redact_url(url) if "@" in url or "?" in url else url


def _is_loopback(host: str) -> bool:
    host = host.lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------
# Steps 1-2: YAML and ${VAR}


def _index(node: yaml.Node, loc: Loc, report: _Report, seen: set[int]) -> None:
    """Record the line of every key and list item, the source text of every scalar, and
    duplicate keys (which YAML would silently collapse to the last one)."""
    if id(node) in seen:  # an alias: index the anchored node once (also bounds alias bombs)
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                continue
            key, line = key_node.value, key_node.start_mark.line + 1
            child = (*loc, key)
            if key in first:
                message = f"duplicate key (first on line {first[key]}); YAML keeps only the last, so delete one"
                report.add(child, message, line)
                continue
            first[key] = line
            report.lines[child] = line
            _index(value_node, child, report, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            report.lines[(*loc, i)] = item.start_mark.line + 1
            _index(item, (*loc, i), report, seen)
    elif isinstance(node, yaml.ScalarNode):
        report.source[loc] = node.value


def _read_yaml(text: str, report: _Report) -> object:
    """Parse ``text``; a syntax error becomes a problem with line and column."""
    # libyaml's parser when PyYAML has it: 10x faster on a large config, same nodes and marks.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _index(node, (), report, set())
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = ": ".join(filter(None, [e.context, e.problem]))
        if "\\t" in what or (mark and "\t" in _line_of(text, mark.line)[: mark.column + 1]):
            hint = "indent with spaces, not tabs"
        elif isinstance(e, yaml.constructor.ConstructorError):
            hint = "remove the !!tag; watcher reads plain YAML values only"
        else:
            hint = "check indentation, and quote values that contain ': ', '#' or start with a special character"
        report.problems.append((mark.line + 1 if mark else 0, f"{where}invalid YAML: {what}; {hint}"))
    except yaml.YAMLError as e:  # e.g. a reader error on control characters
        report.problems.append((0, f"invalid YAML: {e}; save the file as plain UTF-8 text"))
    finally:
        loader.dispose()
    return None


def _line_of(text: str, index: int) -> str:
    lines = text.splitlines()
    return lines[index] if 0 <= index < len(lines) else ""


_VAR = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _substitute(data: object, loc: Loc, env: Mapping[str, str], report: _Report) -> object:
    """Replace ``${VAR}`` in every string value from ``env``; ``$${VAR}`` stays ``${VAR}``."""
    if isinstance(data, dict):
        return {k: _substitute(v, (*loc, k), env, report) for k, v in data.items()}
    if isinstance(data, list):
        return [_substitute(v, (*loc, i), env, report) for i, v in enumerate(data)]
    if not isinstance(data, str):
        return data

    def expand(match: re.Match[str]) -> str:
        if match[1]:
            return match[0][1:]
        name = match[2]
        if name not in env:
            report.add(
                loc,
                f"environment variable {name} is not set; set it in watcher's environment (export {name}=..., or EnvironmentFile= in the systemd unit)",
            )
            return match[0]
        report.substituted.add(loc)
        return env[name]

    expanded = _VAR.sub(expand, data)
    return _FromEnv(expanded) if loc in report.substituted else expanded


# ---------------------------------------------------------------------------------------------
# Steps 3-4: sections, and checks across items


def _section(data: dict[str, Any], key: str, report: _Report) -> dict[str, Any] | None:
    """A mapping section, or None when it is absent, empty or not a mapping (reported)."""
    raw = data.get(key)
    if raw is None or isinstance(raw, dict):
        return raw
    report.add((key,), f"is {_kind(raw)}; use a mapping of keys, e.g. {{key: value}}")
    return None


def _list_section(
    data: dict[str, Any], key: str, cls: type, report: _Report, context: dict[str, Any]
) -> list[tuple[Loc, Any]]:
    """Each valid item of a list section, with its location."""
    raw = data.get(key)
    if raw is None:
        return []
    if not isinstance(raw, list):
        report.add((key,), f"is {_kind(raw)}; use a list, e.g. [a, b]")
        return []
    valid: list[tuple[Loc, Any]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            report.add((key, i), f"is {_kind(item)}; use a mapping of keys, e.g. {{key: value}}")
        elif (value := report.validate(cls, item, (key, i), context)) is not None:
            valid.append(((key, i), value))
    return valid


def _unique(named: list[tuple[Loc, str]], report: _Report, why: str) -> None:
    """Report each name already used earlier in ``named`` (compared case-insensitively,
    since "Jen Zhu Scott" and "jen zhu scott" would be the same watch to a reader)."""
    first: dict[str, Loc] = {}
    for loc, name in named:
        key = name.casefold()
        if key in first:
            prior = first[key]
            line = report.line(prior)
            at = f"{_key_path(prior)}" + (f" (line {line})" if line else "")
            report.add(loc, f'"{name}" is already used by {at}; {why}')
        else:
            first[key] = loc


def _raw_names(raw: object, section: str) -> list[tuple[Loc, str]]:
    """``(loc of name, name)`` for every item of a list section that has a text name."""
    return [
        ((section, i, "name"), item["name"].strip())
        for i, item in enumerate(raw if isinstance(raw, list) else [])
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _feed_name(url: str) -> str:
    if not _SCHEME.match(url):
        return url
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() == "file":
            return unquote(parts.path)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a bad port: reported as the URL's problem
        return url
    return f"{parts.hostname}{port}{parts.path.rstrip('/')}"


def _check_feeds(feeds: list[tuple[Loc, FeedSettings]], data: dict[str, Any], report: _Report) -> None:
    for loc, feed in feeds:
        host = urlsplit(feed.url).hostname or ""
        if not feed.is_file and not _is_loopback(host) and feed.interval < POLITE_INTERVAL:
            own = data["feeds"][loc[1]].get("interval") is not None
            report.warn(
                (*loc, "interval") if own else loc,
                f"polls {host} every {format_duration(feed.interval)}{'' if own else ' (from defaults.interval)'}; use 5m or more for remote servers (loopback and file feeds are exempt)",
            )
    _unique(
        [((*loc, "name"), feed.name) for loc, feed in feeds],
        report,
        "feed names must be unique (a feed without name: is named after its URL); set a distinct name: on one of them",
    )
    _unique([((*loc, "url"), _masked(feed.url)) for loc, feed in feeds], report, "remove the duplicate feed")


def _database(data: dict[str, Any], env: Mapping[str, str], base: str, report: _Report) -> str:
    override = env.get("WATCHER_DATABASE_URL")
    if override:
        # Taken verbatim: a path in the environment is relative to the caller's directory.
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", override):
            report.add(
                ("WATCHER_DATABASE_URL",), "(environment variable) is not a database URL; use e.g. sqlite:///watcher.db"
            )
        return override
    url = DEFAULT_DATABASE
    if data.get("database") is not None:
        url = report.validate(DatabaseUrl, data["database"], ("database",), {}) or DEFAULT_DATABASE
    match = re.fullmatch(r"(sqlite(?:\+\w+)?:///)(.*)", url, flags=re.DOTALL)
    if match and match[2] and not match[2].startswith(("/", ":memory:", "file:")):
        # Relative to the config file, so the daemon finds the same database from any cwd.
        url = match[1] + os.path.join(base, match[2])
    return url


def _top_level(data: object, report: _Report) -> dict[str, Any]:
    """The file's sections; unknown ones are reported and left out."""
    if data is None:  # an empty file, or only comments
        return {}
    if not isinstance(data, dict):
        report.add((), f"is {_kind(data)}; the file must be a mapping of sections ({', '.join(_SECTIONS)})")
        return {}
    for key in data:
        if key not in _SECTIONS:
            report.add((key,), _unknown_key(str(key), list(_SECTIONS)))
    return {key: value for key, value in data.items() if key in _SECTIONS}


def parse_config(text: str, path: str, env: Mapping[str, str]) -> Config:
    """Validate config ``text`` that was read from ``path``.

    ``path`` names the file in messages and anchors relative paths (file feeds, SQLite).
    ``env`` supplies ``${VAR}`` values and ``WATCHER_DATABASE_URL``.

    Raises:
        ConfigError: listing every problem found, one line each.
    """
    report = _Report(path)
    base = os.path.dirname(os.path.abspath(path))
    data = _substitute(_read_yaml(text, report), (), env, report)
    if report.problems and data is None:  # the YAML itself is broken: nothing more to check
        raise ConfigError(path, [p for _, p in report.problems])

    data = _top_level(data, report)
    raw_defaults = _section(data, "defaults", report)
    raw_smtp = _section(data, "smtp", report)
    raw_http = _section(data, "http", report)
    raw_articles = _section(data, "articles", report)
    # Names are taken from the raw items, so that a watch with some other problem still counts:
    # its duplicate is reported, and a channel naming it draws no misleading "unknown watch".
    watch_names = _raw_names(data.get("speakers"), "speakers") + _raw_names(data.get("themes"), "themes")
    context: dict[str, Any] = {
        "base": base,
        "defaults": report.validate(Defaults, raw_defaults or {}, ("defaults",), {}) or Defaults(),
        "smtp": raw_smtp is not None,
        "watches": {name for _, name in watch_names},
    }
    feeds = _list_section(data, "feeds", FeedSettings, report, context)
    speakers = _list_section(data, "speakers", Speaker, report, context)
    themes = _list_section(data, "themes", Theme, report, context)
    smtp = report.validate(SmtpSettings, raw_smtp, ("smtp",), context) if raw_smtp is not None else None
    channels = _list_section(data, "channels", ChannelSettings, report, context)
    http = report.validate(HttpSettings, raw_http or {}, ("http",), {}) or HttpSettings()
    retention = Config.retention
    if data.get("retention") is not None:
        retention = report.validate(Duration, data["retention"], ("retention",), {}) or retention
    articles = report.validate(ArticleSettings, raw_articles or {}, ("articles",), {}) or ArticleSettings()

    _check_feeds(feeds, data, report)
    _unique(watch_names, report, "speaker and theme names must be unique, because channels' watches refer to them")
    _unique(_raw_names(data.get("channels"), "channels"), report, "channel names must be unique")
    if smtp and smtp.username and smtp.security == "none" and not _is_loopback(smtp.host):
        report.warn(
            ("smtp", "security"), f"sends the password to {smtp.host} unencrypted; use security: starttls or ssl"
        )
    database = _database(data, env, base, report)
    if report.problems:
        raise ConfigError(path, [p for _, p in sorted(report.problems, key=lambda p: p[0])])
    return Config(
        path=path,
        database_url=database,
        defaults=context["defaults"],
        feeds=tuple(feed for _, feed in feeds),
        speakers=tuple(speaker for _, speaker in speakers),
        themes=tuple(theme for _, theme in themes),
        smtp=smtp,
        channels=tuple(channel for _, channel in channels),
        http=http,
        retention=retention,
        articles=articles,
        warnings=tuple(report.warnings),
    )


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``; ``env`` defaults to ``os.environ``.

    Raises:
        ConfigError: the file cannot be read, or lists every problem in it.
    """
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(name, ["no such file; create it (see feeds.yaml in the project) or pass -c PATH"]) from None
    except UnicodeDecodeError as e:
        raise ConfigError(name, [f"not UTF-8 text ({e.reason} at byte {e.start}); save the file as UTF-8"]) from None
    except OSError as e:
        raise ConfigError(name, [f"cannot read: {e.strerror}; check the path and its permissions"]) from None
    return parse_config(text, name, os.environ if env is None else env)


def listening_on(http: HttpSettings, address: str) -> HttpSettings:
    """``http`` listening on ``address`` (``watcher run --http ADDR``), checked as
    ``http.listen`` in the file is: beyond loopback, ``http.token`` must be set.

    Raises:
        ConfigError: naming ``--http``, when the address is not host:port or needs a token.
    """
    report = _Report(f"--http {address}")
    report.source[("http", "listen")] = address
    raw = {"listen": address, "token": http.token}
    checked = report.validate(HttpSettings, {k: v for k, v in raw.items() if v is not None}, ("http",), {})
    if checked is None:
        raise ConfigError(report.path, [p for _, p in report.problems])
    return cast(HttpSettings, checked)
