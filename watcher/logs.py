"""How watcher's log lines look: for people (the default) or for log shippers (JSON).

``--log-format json`` writes one JSON object per line: ``time`` (ISO 8601 UTC, ``Z``),
``level``, ``event``, ``feed`` and ``message``, then the values the message was made of.
A log call names its event and values with ``extra=event(...)``::

    log.warning("feed %s: %s", name, reason, extra=event("feed.failed", name, reason=reason))

A line logged without one (a library's, or a rare one of ours) has its logger's name as
its event and no feed.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["human", "json"]

HUMAN = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Libraries whose INFO lines say nothing an operator of watcher needs (they show at -v).
_NOISY = ("apscheduler", "alembic", "urllib3", "mail.log")


def event(name: str, feed: str | None = None, **fields: Any) -> dict[str, Any]:
    """The ``extra`` of a log call: what happened, the feed it concerns, and the message's values."""
    return {"event": name, "feed": feed, "fields": fields}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
            "feed": getattr(record, "feed", None),
            "message": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(*, verbose: bool, form: LogFormat = "human") -> None:
    """Send every log line to stderr in ``form``; with ``verbose`` debug lines too. May be
    called again (``-v`` or ``--log-format`` after the command's name) to change either."""
    root = logging.getLogger()
    ours: list[logging.Handler] = [h for h in root.handlers if getattr(h, "watcher", False)]
    if not root.handlers:  # as logging.basicConfig: a host that set up logging keeps its own
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.watcher = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        ours = [handler]
    for handler in ours:
        handler.setFormatter(JsonFormatter() if form == "json" else logging.Formatter(HUMAN))
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in _NOISY:
        logging.getLogger(noisy).setLevel(logging.DEBUG if verbose else logging.WARNING)
