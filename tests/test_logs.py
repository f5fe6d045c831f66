"""--log-format json (issue 13): one JSON object per line with time, level, event, feed,
message and the message's values; the human format stays the default."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, run_watcher, serving, wait_for, write_config
from tests.httpserver import LoopbackServer
from watcher.logs import JsonFormatter, event

SAMPLES = ROOT / "watcher" / "demo_feeds"


def records(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must be one JSON object


def test_poll_logs_json_lines_naming_the_feed_and_why_it_failed(tmp_path: Path) -> None:
    with LoopbackServer(root=SAMPLES) as server:
        server.respond("/missing.xml", b"nothing", status=404)
        config = write_config(
            tmp_path / "feeds.yaml",
            f"sqlite:///{tmp_path}/w.db",
            {"forum": server.url("/forum-wire.xml"), "missing": server.url("/missing.xml")},
        )
        human = run_watcher(config, "poll", ok=False)
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING watcher\.pipeline: feed missing: ", human.stderr)
        result = run_watcher(config, "--log-format", "json", "poll", "--force", ok=False)
    lines = records(result.stderr.replace("warning: 1 of 2 feeds not polled\n", ""))
    [failed] = [line for line in lines if line["event"] == "feed.failed"]
    assert list(failed)[:5] == ["time", "level", "event", "feed", "message"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", failed["time"])
    assert failed["level"] == "warning" and failed["feed"] == "missing"
    assert failed["reason"] == "HTTP 404 Not Found" and failed["kind"] == "http_4xx" and failed["failures"] == 2
    assert failed["message"].startswith("feed missing: http://127.0.0.1:")


def test_the_daemon_logs_json_when_asked_after_the_command(tmp_path: Path) -> None:
    with LoopbackServer(root=SAMPLES) as server:
        config = write_config(
            tmp_path / "feeds.yaml",
            f"sqlite:///{tmp_path}/w.db",
            {"forum": server.url("/forum-wire.xml")},
            interval="1s",
        )
        with serving(config, "--log-format", "json") as daemon:
            wait_for(lambda: '"event": "poll.cycle"' in daemon.log.read_text(), "a poll cycle line")
        lines = records(daemon.log.read_text())
    events = [line["event"] for line in lines]
    assert events[:2] == ["http.listening", "daemon.started"] and events[-1] == "daemon.stopped"
    started = lines[1]
    assert started["feeds"] == 1 and started["channels"] == 0 and started["feed"] is None
    cycle = next(line for line in lines if line["event"] == "poll.cycle")
    assert {"polled", "unchanged", "failed", "new", "hits", "next_poll_seconds"} <= set(cycle)
    assert cycle["message"].startswith("poll cycle: ")


def test_a_json_line_holds_a_multiline_message_and_its_traceback_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord("watcher.x", logging.ERROR, __file__, 1, "a\nb %s", ("c",), sys.exc_info())
    for key, value in event("x.y", "wire", count=3).items():
        setattr(record, key, value)
    text = JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert (line["event"], line["feed"], line["message"], line["count"]) == ("x.y", "wire", "a\nb c", 3)
    assert "ValueError: bad\nvalue" in line["traceback"]
