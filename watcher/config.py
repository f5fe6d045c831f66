"""Read and validate ``feeds.yaml`` into frozen settings objects.

Pure: reads only the file it is given (``load_config``) or the text it is handed
(``parse_config``), never the network, and the environment only through the ``env`` mapping.

Loading runs in five steps, and every step adds to one list of problems, so a single
``ConfigError`` reports everything wrong with the file at once:

1. YAML text → node tree (``yaml.compose``), kept for line numbers, duplicate keys and the
   source text of scalars; then → plain data (``safe`` construction only).
2. ``${VAR}`` in string values is replaced from ``env``; ``$${VAR}`` is a literal ``${VAR}``.
   A value made with ``${VAR}`` may also give a number or a yes/no to a key that takes one
   (``port: ${SMTP_PORT}``, ``statements_only: ${ONLY}``: true/false, yes/no, on/off, 1/0);
   written in the file, ``"25"`` stays text and an error for ``port``.
3. Shape and types: each section, and each list item separately, through a strict pydantic
   model with ``extra="forbid"``. Pydantic is used because it reports *every* wrong type,
   missing key and unknown key with its exact location, which is what the key paths in our
   messages are made of; its error codes are translated here into messages that say the fix.
   Strict mode stops silent coercion (``port: "25"``, ``statements_only: "no"``).
4. Cross-references: unique names, channel ``watches``, email channels need ``smtp``.
5. Frozen dataclasses (below) are built; pydantic objects never leave this module.

Messages read ``line 14: feeds[3].interval: "5 minutes" is not a duration; use ...`` and
``ConfigError`` prefixes the file. A value is quoted from the YAML *source*, so a ``${VAR}``
shows as written and never as the secret it expands to; passwords and secrets are never quoted.

Durations are a number and a unit: ``90s``, ``15m``, ``1.5h``, ``1d``. A bare number is refused
(``interval: 15``: seconds or minutes?) with a message that offers both readings.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic_core import PydanticCustomError

from watcher.errors import ConfigError, located, redact_url, url_origin
from watcher.types import Speaker, Theme

__all__ = [
    "ChannelSettings",
    "Config",
    "Defaults",
    "FeedSettings",
    "SmtpSettings",
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
# What the rest of watcher sees


def _repr(obj: object, **shown: str) -> str:
    """A dataclass-style repr that leaves out ``repr=False`` fields and shows ``shown`` instead
    of the real value (used to mask credentials in URLs)."""
    parts = [
        f"{f.name}={shown[f.name] if f.name in shown else repr(getattr(obj, f.name))}"
        for f in fields(obj)  # type: ignore[arg-type]
        if f.repr
    ]
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True)
class Defaults:
    """Per-feed values used when a feed does not set its own."""

    interval: timedelta = timedelta(minutes=15)
    timeout: timedelta = timedelta(seconds=20)
    #: False: a feed's first poll stores its backlog silently instead of alerting on all of it.
    alert_on_first_poll: bool = False


@dataclass(frozen=True, repr=False)
class FeedSettings:
    """One feed to poll."""

    #: An http(s) URL, or an absolute file path (relative paths are resolved against the
    #: config file's directory; ``file://`` URLs are turned into paths).
    url: str
    #: The configured name, else host and path of the URL (or the path as written).
    name: str
    interval: timedelta
    timeout: timedelta
    alert_on_first_poll: bool

    @property
    def is_file(self) -> bool:
        """True when ``url`` is a local file path rather than an http(s) URL."""
        return not self.url.startswith(("http://", "https://"))

    def __repr__(self) -> str:
        return _repr(self, url=repr(_masked(self.url)))


@dataclass(frozen=True)
class SmtpSettings:
    """How email channels reach their mail server."""

    host: str
    port: int
    security: Literal["none", "starttls", "ssl"]
    username: str | None
    password: str | None = field(repr=False)
    #: The From address (YAML key ``from``).
    sender: str
    timeout: timedelta


@dataclass(frozen=True, repr=False)
class ChannelSettings:
    """One place alerts go.

    For webhooks, ``secret`` is the Standard Webhooks signing key, kept verbatim. A secret of
    the form ``whsec_<base64>`` is used as the spec defines; any other non-empty string is
    taken as raw key bytes (the deliverer base64-encodes it before handing it to
    ``standardwebhooks.Webhook``), so receivers must be given the same string.
    """

    name: str
    type: Literal["email", "webhook"]
    #: Recipients (email); empty for webhooks.
    to: tuple[str, ...]
    #: None sends each alert at once; otherwise one digest per period (hourly = 1h, daily = 1d).
    digest: timedelta | None
    #: Names of the speakers/themes this channel receives; None means all of them.
    watches: tuple[str, ...] | None
    #: True: only hits where a speaker is quoted (statements), not mere mentions or themes.
    statements_only: bool
    #: Webhook endpoint; None for email.
    url: str | None
    #: Webhook signing secret; None for email.
    secret: str | None = field(repr=False)

    def __repr__(self) -> str:
        return _repr(self, url=repr(url_origin(self.url)) if self.url else "None")


@dataclass(frozen=True, repr=False)
class Config:
    """The whole validated configuration."""

    #: The config file, as given by the caller.
    path: str
    #: SQLAlchemy URL; relative SQLite paths already resolved against the config directory.
    database_url: str
    defaults: Defaults
    feeds: tuple[FeedSettings, ...]
    speakers: tuple[Speaker, ...]
    themes: tuple[Theme, ...]
    smtp: SmtpSettings | None
    channels: tuple[ChannelSettings, ...]
    #: Complete lines (``feeds.yaml: line 7: feeds[0].interval: ...``) for the operator.
    warnings: tuple[str, ...] = ()

    @property
    def watch_names(self) -> tuple[str, ...]:
        """Every speaker and theme name, the names channels' ``watches`` refer to."""
        return tuple(s.name for s in self.speakers) + tuple(t.name for t in self.themes)

    def __repr__(self) -> str:
        return _repr(self, database_url=repr(_masked(self.database_url)))


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


# ---------------------------------------------------------------------------------------------
# Field types: shape checks that pydantic runs, with our wording


def _fail(kind: str, message: str) -> PydanticCustomError:
    # Messages are about "the value" and never contain it: _Report prefixes the value as
    # written in the YAML source, which keeps secrets out.
    return PydanticCustomError(kind, message)


def _to_duration(value: object) -> object:
    if isinstance(value, str):
        try:
            return _duration(value)
        except ValueError as e:
            raise _fail("duration", str(e)) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise _fail("duration", f"has no unit; write {value:g}s for seconds or {value:g}m for minutes")
    return value  # None and timedeltas pass on; anything else fails pydantic's own type check


def _to_digest(value: object) -> object:
    if isinstance(value, str) and value.strip() in DIGESTS:
        return DIGESTS[value.strip()]
    try:
        return _to_duration(value)
    except PydanticCustomError:
        raise _fail("digest", "is not a digest; use immediate, hourly, daily or a duration like 30m") from None


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:")  # 2+ letters, so C:\feeds is a path


def _check_url(url: str, *, files: bool) -> str:
    fix = "use an http(s) URL or a file path" if files else "use an http(s) URL like https://hooks.example.org/x"
    if any(c.isspace() for c in url):
        raise _fail("url", "contains whitespace; percent-encode spaces as %20")
    if not _SCHEME.match(url):
        if files:
            return url
        raise _fail("url", f"is not a URL; {fix}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if files and scheme == "file":
        if not parts.path:
            raise _fail("url", "is a file URL without a path; write file:///path/to/feed.xml or just the path")
        return url
    if scheme not in ("http", "https"):
        raise _fail("url", f"uses the {scheme}: scheme; {fix}")
    try:
        _ = parts.port  # urlsplit only checks the port when asked for it
    except ValueError:
        raise _fail("url", "has an invalid port; use a number from 1 to 65535") from None
    if not parts.hostname:
        raise _fail("url", "has no host; write it like https://example.org/feed.xml")
    return url


def _check_database(url: str) -> str:
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", url):
        raise _fail(
            "database", "is not a database URL; use e.g. sqlite:///watcher.db or postgresql+psycopg://user@host/db"
        )
    return url


def _check_address(address: str) -> str:
    _, addr = parseaddr(address)
    if "@" not in addr or any(c.isspace() for c in addr) or "\n" in address or "\r" in address:
        raise _fail("address", "is not an email address; write it like analyst@example.org")
    return address


def _range(low: int, high: int, note: str = "") -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise _fail("range", f"is out of range; use a whole number from {low} to {high}{note}")
        return value

    return check


class _FromEnv(str):
    """A value made with ``${VAR}``: text by nature, but meant as whatever its key takes."""


def _env_int(value: object) -> object:
    # Strict validation keeps `port: "25"` an error; `port: ${SMTP_PORT}` cannot be anything
    # but text, so a whole number from the environment is taken as one.
    if isinstance(value, _FromEnv) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    return value


def _env_bool(value: object) -> object:
    if isinstance(value, _FromEnv):
        return _ENV_BOOLEANS.get(value.strip().lower(), value)
    return value


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

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Secret = Annotated[str, Field(min_length=1)]  # verbatim: surrounding spaces may be part of it
Duration = Annotated[timedelta, BeforeValidator(_to_duration)]
Digest = Annotated[timedelta | None, BeforeValidator(_to_digest)]
FeedUrl = Annotated[Text, AfterValidator(lambda u: _check_url(u, files=True))]
HttpUrl = Annotated[Text, AfterValidator(lambda u: _check_url(u, files=False))]
Address = Annotated[Text, AfterValidator(_check_address)]
Threshold = Annotated[int, BeforeValidator(_env_int), AfterValidator(_range(0, 100, " (higher is stricter)"))]
Port = Annotated[int, BeforeValidator(_env_int), AfterValidator(_range(1, 65535))]
Flag = Annotated[bool, BeforeValidator(_env_bool)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class _Root(_Model):
    database: Annotated[Text, AfterValidator(_check_database)] | None = None
    # Sections are validated one by one (and list items one by one) so that one bad feed
    # neither hides the problems of the next nor stops the cross-reference checks.
    defaults: dict[str, Any] | None = None
    feeds: list[Any] | None = None
    speakers: list[Any] | None = None
    themes: list[Any] | None = None
    smtp: dict[str, Any] | None = None
    channels: list[Any] | None = None


class _Defaults(_Model):
    interval: Duration = Defaults.interval
    timeout: Duration = Defaults.timeout
    alert_on_first_poll: Flag = Defaults.alert_on_first_poll


class _Feed(_Model):
    url: FeedUrl
    name: Text | None = None
    interval: Duration | None = None
    timeout: Duration | None = None
    alert_on_first_poll: Flag | None = None


class _Speaker(_Model):
    name: Text
    aliases: list[Text] = []
    threshold: Threshold | None = None


class _Theme(_Model):
    name: Text
    all_of: list[Annotated[list[Text], Field(min_length=1)]] = []
    any_of: list[Text] = []
    none_of: list[Text] = []
    threshold: Threshold | None = None


class _Smtp(_Model):
    host: Text
    port: Port | None = None
    #: Default: starttls when a username is given (a password never travels in clear unless
    #: asked for), else none.
    security: Literal["none", "starttls", "ssl"] | None = None
    username: Text | None = None
    password: Secret | None = None
    sender: Address = Field(alias="from")
    timeout: Duration = timedelta(seconds=30)


class _EmailChannel(_Model):
    name: Text
    type: Literal["email"]
    to: Annotated[list[Address], Field(min_length=1)]
    digest: Digest = None
    watches: Annotated[list[Text], Field(min_length=1)] | None = None
    statements_only: Flag = False


class _WebhookChannel(_Model):
    name: Text
    type: Literal["webhook"]
    url: HttpUrl
    secret: Secret
    watches: Annotated[list[Text], Field(min_length=1)] | None = None
    statements_only: Flag = False


_CHANNEL_MODELS: dict[str, type[_Model]] = {"email": _EmailChannel, "webhook": _WebhookChannel}
# Keys that hold secrets: their values are never quoted in a message.
_SECRET_KEYS = {"password", "secret"}

# ---------------------------------------------------------------------------------------------
# Problems, with line numbers and safe quoting

Loc = tuple[str | int, ...]


def _key_path(loc: Loc) -> str:
    """``("feeds", 3, "url")`` → ``feeds[3].url``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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
        if loc and loc[-1] in _SECRET_KEYS:
            return "the value"
        text = self.source.get(loc)
        if text is None:  # not a scalar in the file; never str() it, it may hold a ${VAR} value
            return _kind(value)
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

    def pydantic(self, error: ValidationError, at: Loc, model: type[BaseModel]) -> None:
        """Translate pydantic's errors for a value found at ``at`` into our messages."""
        for err in error.errors():
            loc = at + tuple(err["loc"])
            if err["type"] == "extra_forbidden":
                self.unknown_key(loc, _known_keys(model))
            else:
                self.add(loc, self._describe(loc, err["type"], err["input"], err["msg"]))

    def unknown_key(self, loc: Loc, known: list[str]) -> None:
        key = str(loc[-1])
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]!r}?" if close else f"remove it; valid keys here: {', '.join(known)}"
        self.add(loc, f"unknown key {key!r}; {fix}")

    def _describe(self, loc: Loc, kind: str, value: object, msg: str) -> str:
        shown = self.quote(loc, value)
        got = _kind(value)
        if kind == "missing":
            return f"required key is missing; add {loc[-1]}: ..."
        if value is None:
            return "is empty; give a value or remove the key"
        if kind in ("duration", "digest", "url", "database", "address", "range"):
            return f"{shown} {msg}"
        if isinstance(value, list | dict) and kind in _SINGLE_VALUE:
            return f"is {got}; use {_SINGLE_VALUE[kind]}"
        if kind == "string_type":
            # YAML reads yes/no/on/off as booleans and 2024 as a number.
            return f"{shown} is {got}, not text; put it in quotes"
        if kind == "string_too_short":
            return "is empty; give a non-empty value or remove the key"
        if kind == "too_short":
            return "is an empty list; list at least one item or remove the key"
        if kind in ("int_type", "int_from_float"):
            if loc in self.substituted:
                return f"{shown} is not a whole number; set the variable to one"
            return f"{shown} is {got}; use a whole number without quotes"
        if kind == "bool_type":
            if loc in self.substituted:
                return f"{shown} is not a yes or no; set the variable to true or false"
            return f"{shown} is {got}; use true or false without quotes"
        if kind in ("list_type", "tuple_type"):
            hint = ' (all_of is a list of groups, e.g. [["US", "U.S."], ["China"]])' if "all_of" in loc else ""
            return f"is {got}; use a list, e.g. [a, b]{hint}"
        if kind in ("dict_type", "model_type", "model_attributes_type"):
            return f"is {got}; use a mapping of keys, e.g. {{key: value}}"
        if kind == "literal_error":
            return f"{shown} is not allowed; use one of: {msg.removeprefix('Input should be ')}"
        return f"{shown}: {msg}"


# What a scalar field expects, for when it was given a list or a mapping.
_SINGLE_VALUE = {
    "string_type": "text",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "time_delta_type": "a duration: a number followed by s, m, h or d (e.g. 5m)",
    "literal_error": "one of the listed words",
}


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _known_keys(model: type[BaseModel]) -> list[str]:
    """The keys ``model`` accepts, by their YAML names (every section model is flat)."""
    return [f.alias or name for name, f in model.model_fields.items()]


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
# Steps 3-5: validate, cross-check, build


def _validate(model: type[_Model], raw: object, loc: Loc, report: _Report) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        report.pydantic(e, loc, model)
        return None


def _items(raw: list[Any] | None, model: type[_Model], loc: Loc, report: _Report) -> list[tuple[Loc, Any]]:
    """Validate each item of a list section on its own; return the valid ones with their loc."""
    out = []
    for i, item in enumerate(raw or []):
        valid = _validate(model, item, (*loc, i), report)
        if valid is not None:
            out.append(((*loc, i), valid))
    return out


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


def _raw_names(raw: list[Any] | None, section: str) -> list[tuple[Loc, str]]:
    """``(loc of name, name)`` for every item of a list section that has a text name."""
    return [
        ((section, i, "name"), item["name"].strip())
        for i, item in enumerate(raw or [])
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _feed_name(url: str) -> str:
    if not _SCHEME.match(url):
        return url
    parts = urlsplit(url)
    if parts.scheme.lower() == "file":
        return unquote(parts.path)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.hostname}{port}{parts.path.rstrip('/')}"


def _feed_location(url: str, base: str) -> str:
    if not _SCHEME.match(url):
        return os.path.normpath(os.path.join(base, url))
    scheme = urlsplit(url).scheme
    if scheme.lower() == "file":
        return os.path.normpath(os.path.join(base, unquote(urlsplit(url).path)))
    return scheme.lower() + url[len(scheme) :]  # so FeedSettings.is_file can trust the prefix


def _build_feeds(
    items: list[tuple[Loc, _Feed]], defaults: Defaults, base: str, report: _Report
) -> tuple[FeedSettings, ...]:
    feeds = []
    for loc, f in items:
        feed = FeedSettings(
            url=_feed_location(f.url, base),
            name=f.name or _feed_name(f.url),
            interval=f.interval or defaults.interval,
            timeout=f.timeout or defaults.timeout,
            alert_on_first_poll=defaults.alert_on_first_poll
            if f.alert_on_first_poll is None
            else f.alert_on_first_poll,
        )
        host = urlsplit(feed.url).hostname or ""
        if not feed.is_file and not _is_loopback(host) and feed.interval < POLITE_INTERVAL:
            source = "" if f.interval else " (from defaults.interval)"
            report.warn(
                (*loc, "interval") if f.interval else loc,
                f"polls {host} every {_show_duration(feed.interval)}{source}; use 5m or more for remote servers (loopback and file feeds are exempt)",
            )
        feeds.append(feed)
    _unique(
        [((*loc, "name"), feed.name) for (loc, _), feed in zip(items, feeds, strict=True)],
        report,
        "feed names must be unique (a feed without name: is named after its URL); set a distinct name: on one of them",
    )
    _unique(
        [((*loc, "url"), _masked(feed.url)) for (loc, _), feed in zip(items, feeds, strict=True)],
        report,
        "remove the duplicate feed",
    )
    return tuple(feeds)


def _show_duration(value: timedelta) -> str:
    seconds = value.total_seconds()
    return f"{seconds / 60:g}m" if seconds >= 60 else f"{seconds:g}s"


def _build_smtp(s: _Smtp, report: _Report) -> SmtpSettings:
    if (s.username is None) != (s.password is None):
        missing = "password" if s.password is None else "username"
        report.add(
            ("smtp", missing),
            f"required when {'username' if missing == 'password' else 'password'} is set; give both or neither",
        )
    security = s.security or ("starttls" if s.username else "none")
    if s.username and security == "none" and not _is_loopback(s.host):
        report.warn(("smtp", "security"), f"sends the password to {s.host} unencrypted; use security: starttls or ssl")
    return SmtpSettings(
        host=s.host,
        port=s.port or SMTP_PORTS[security],
        security=security,
        username=s.username,
        password=s.password,
        sender=s.sender,
        timeout=s.timeout,
    )


def _build_channels(
    raw: list[Any] | None, watch_names: set[str], has_smtp: bool, report: _Report
) -> tuple[ChannelSettings, ...]:
    channels: list[ChannelSettings] = []
    for i, item in enumerate(raw or []):
        loc: Loc = ("channels", i)
        if not isinstance(item, dict):
            report.add(loc, f"is {_kind(item)}; use a mapping, e.g. {{name: desk, type: email, to: [you@example.org]}}")
            continue
        kind = item.get("type")
        if kind not in _CHANNEL_MODELS:
            where = (*loc, "type")
            if kind is None:
                report.add(where, "required key is missing; add type: email or type: webhook")
            else:
                report.add(where, f"{report.quote(where, kind)} is not a channel type; use email or webhook")
            continue
        c = _validate(_CHANNEL_MODELS[kind], item, loc, report)
        if c is None:
            continue
        if isinstance(c, _EmailChannel) and not has_smtp:
            report.add((*loc, "type"), "an email channel needs an smtp section; add smtp: {host: ..., from: ...}")
        for j, watch in enumerate(c.watches or []):
            if watch not in watch_names:
                report.add((*loc, "watches", j), _unknown_watch(watch, watch_names))
        email = isinstance(c, _EmailChannel)
        channels.append(
            ChannelSettings(
                name=c.name,
                type=c.type,
                to=tuple(c.to) if email else (),
                digest=c.digest if email else None,
                watches=tuple(c.watches) if c.watches is not None else None,
                statements_only=c.statements_only,
                url=None if email else c.url,
                secret=None if email else c.secret,
            )
        )
    _unique(_raw_names(raw, "channels"), report, "channel names must be unique")
    return tuple(channels)


def _unknown_watch(watch: str, names: set[str]) -> str:
    exact = [n for n in names if n.casefold() == watch.casefold()]
    close = exact or difflib.get_close_matches(watch, sorted(names), n=1, cutoff=0.5)
    if close:
        return f'"{watch}" is not a speaker or theme; did you mean "{close[0]}"?'
    known = ", ".join(f'"{n}"' for n in sorted(names)) or "none are configured"
    return f'"{watch}" is not a speaker or theme; use one of their names ({known})'


def _database(root: _Root, env: Mapping[str, str], base: str, report: _Report) -> str:
    override = env.get("WATCHER_DATABASE_URL")
    if override:
        # Taken verbatim: a path in the environment is relative to the caller's directory.
        if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", override):
            report.add(
                ("WATCHER_DATABASE_URL",), "(environment variable) is not a database URL; use e.g. sqlite:///watcher.db"
            )
        return override
    url = root.database or DEFAULT_DATABASE
    match = re.fullmatch(r"(sqlite(?:\+\w+)?:///)(.*)", url, flags=re.DOTALL)
    if match and match[2] and not match[2].startswith(("/", ":memory:", "file:")):
        # Relative to the config file, so the daemon finds the same database from any cwd.
        url = match[1] + os.path.join(base, match[2])
    return url


def _root(data: object, report: _Report) -> _Root:
    """The top level, with every section that has the right type (each checked on its own, so
    one bad section or unknown key does not hide the problems of the others)."""
    if data is None:  # an empty file, or only comments
        return _Root()
    if not isinstance(data, dict):
        report.add((), f"is {_kind(data)}; the file must be a mapping of sections ({', '.join(_known_keys(_Root))})")
        return _Root()
    return _Root.model_validate({k: v for k, v in data.items() if _validate(_Root, {k: v}, (), report) is not None})


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

    root = _root(data, report)
    defaults = _validate(_Defaults, root.defaults or {}, ("defaults",), report) or _Defaults()
    defaults_out = Defaults(defaults.interval, defaults.timeout, defaults.alert_on_first_poll)
    feed_items = _items(root.feeds, _Feed, ("feeds",), report)
    speaker_items = _items(root.speakers, _Speaker, ("speakers",), report)
    theme_items = _items(root.themes, _Theme, ("themes",), report)

    for loc, theme in theme_items:
        if not theme.all_of and not theme.any_of:
            report.add(loc, "matches nothing; give all_of groups and/or any_of phrases")
    # Names are taken from the raw items, so that a watch with some other problem still counts:
    # its duplicate is reported, and a channel naming it draws no misleading "unknown watch".
    watch_locs = _raw_names(root.speakers, "speakers") + _raw_names(root.themes, "themes")
    _unique(watch_locs, report, "speaker and theme names must be unique, because channels' watches refer to them")
    watch_names = {name for _, name in watch_locs}
    smtp = None
    if root.smtp is not None:
        smtp_model = _validate(_Smtp, root.smtp, ("smtp",), report)
        smtp = _build_smtp(smtp_model, report) if smtp_model else None

    config = Config(
        path=path,
        database_url=_database(root, env, base, report),
        defaults=defaults_out,
        feeds=_build_feeds(feed_items, defaults_out, base, report),
        speakers=tuple(Speaker(s.name, tuple(s.aliases), s.threshold) for _, s in speaker_items),
        themes=tuple(
            Theme(t.name, tuple(tuple(g) for g in t.all_of), tuple(t.any_of), tuple(t.none_of), t.threshold)
            for _, t in theme_items
        ),
        smtp=smtp,
        channels=_build_channels(root.channels, watch_names, root.smtp is not None, report),
        warnings=tuple(report.warnings),
    )
    if report.problems:
        raise ConfigError(path, [p for _, p in sorted(report.problems, key=lambda p: p[0])])
    return config


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
