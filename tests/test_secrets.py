"""Secrets never reach the operator's screen or logs.

One configuration holds every kind of secret watcher knows: the SMTP password and the
webhook signing secret (both from ``${VAR}``), a token in the webhook URL, and credentials
in feed URLs (``user:password@`` and ``?token=``). Every command an operator runs is run
as a real subprocess, on the failure paths where errors quote servers and URLs: SMTP AUTH
refused, webhook 500, feed 401, TLS failure, DNS failure; ``watcher run`` included, and
``-v`` (debug logging of every library). Proven: no output (stdout or stderr) of any of
them contains any secret, in clear or base64.
"""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.conftest import wait_for
from tests.httpserver import LoopbackServer
from watcher.mailsink import MailSink

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "watcher" / "demo_feeds"

SECRETS = {
    "SMTP_PASSWORD": "smtp-pw-Q7x91z",
    "WEBHOOK_SECRET": "hook-secret-Vb82kq",
    "HOOK_TOKEN": "hooktok-Lp33ra",
    "FEED_PASSWORD": "feedpw-Zt55mw",
    "FEED_TOKEN": "feedtok-Hn70cd",
}


def forms(secret: str) -> list[str]:
    """The ways a secret could leak: as is, and base64 (an Authorization header)."""
    return [secret, base64.b64encode(f"reader:{secret}".encode()).decode(), base64.b64encode(secret.encode()).decode()]


@dataclass
class Setup:
    config: Path
    http: LoopbackServer
    sink: MailSink
    env: dict[str, str]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    with (
        LoopbackServer(root=DEMO) as http,
        LoopbackServer(root=DEMO, tls=tls) as https,
        MailSink(tmp_path / "mail", auth=("watcher", "the-right-password")) as sink,
    ):
        http.respond("/private.xml", b"who are you?", status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})
        http.respond("/hook", b"receiver crashed", status=500)
        host = http.url("/").removeprefix("http://").rstrip("/")
        tls_host = https.url("/").removeprefix("https://").rstrip("/")
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f"""
database: sqlite:///{tmp_path}/watcher.db
defaults: {{interval: 1s, timeout: 5s, alert_on_first_poll: true}}
feeds:
  - {{name: private, url: "http://reader:${{FEED_PASSWORD}}@{host}/private.xml"}}
  - {{name: private-tls, url: "https://reader:${{FEED_PASSWORD}}@{tls_host}/forum-wire.xml"}}
  - {{name: tokened, url: "http://{host}/forum-wire.xml?token=${{FEED_TOKEN}}"}}
  - {{name: tokened-dns, url: "http://feed.invalid/rss.xml?token=${{FEED_TOKEN}}"}}
speakers:
  - name: Jen Zhu Scott
smtp:
  host: 127.0.0.1
  port: {sink.port}
  security: none
  username: watcher
  password: "${{SMTP_PASSWORD}}"
  from: watcher@example.org
channels:
  - {{name: desk, type: email, to: [analyst@example.org]}}
  - {{name: hook, type: webhook, url: "http://{host}/hook?token=${{HOOK_TOKEN}}", secret: "${{WEBHOOK_SECRET}}"}}
""",
            encoding="utf-8",
        )
        env = {**os.environ, **SECRETS, "COLUMNS": "400"}
        yield Setup(config, http, sink, env)


def run(setup: Setup, *args: str) -> str:
    """Run a watcher command; return everything it printed (stdout and stderr)."""
    result = subprocess.run(
        [sys.executable, "-m", "watcher", "-c", str(setup.config), *args],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env=setup.env,
    )
    return f"$ watcher {' '.join(args)} (exit {result.returncode})\n{result.stdout}{result.stderr}"


def run_daemon(setup: Setup) -> str:
    """``watcher -v run`` until it has polled the failing feeds again, then SIGTERM; everything
    it printed."""
    polled = len(setup.http.requests_for("/private.xml"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "watcher", "-v", "-c", str(setup.config), "run"],
        cwd=ROOT,
        env=setup.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(setup.http.requests_for("/private.xml")) > polled, "the daemon's polls")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return f"$ watcher -v run\n{out}{err}"


def assert_no_secret(output: str) -> None:
    for name, secret in SECRETS.items():
        for form in forms(secret):
            assert form not in output, f"{name} leaked:\n" + "\n".join(
                line for line in output.splitlines() if form in line
            )


def test_failure_paths_print_no_secret(setup: Setup) -> None:
    """validate, poll (plain and -v), feeds, outbox, send-test and run, on a feed 401, a TLS
    failure, a DNS failure, SMTP AUTH refused and a webhook 500: no secret in any output."""
    outputs = [
        run(setup, "validate"),
        run(setup, "poll"),
        run(setup, "-v", "poll"),
        run(setup, "feeds"),
        run(setup, "outbox"),
        run(setup, "outbox", "--json"),
        run(setup, "send-test", "desk"),
        run(setup, "send-test", "hook"),
        run_daemon(setup),
        run(setup, "outbox", "--status", "failed"),
    ]
    everything = "\n".join(outputs)
    (Path(setup.config).parent / "outputs.txt").write_text(everything, encoding="utf-8")
    assert_no_secret(everything)

    # The failure paths were really taken, and their errors still say what is wrong.
    assert "HTTP 401 Unauthorized" in everything
    assert "TLS error: certificate verify failed" in everything
    assert "could not resolve host feed.invalid" in everything
    assert "535" in everything, "SMTP AUTH was refused"
    assert "HTTP 500" in everything, "the webhook answered 500"
    # The secrets were really used: the feed got credentials, the webhook got its token.
    private = setup.http.requests_for("/private.xml")
    assert (
        private
        and private[0].headers["authorization"]
        == "Basic " + base64.b64encode(f"reader:{SECRETS['FEED_PASSWORD']}".encode()).decode()
    )
    assert any(SECRETS["FEED_TOKEN"] in r.path for r in setup.http.requests_for("/forum-wire.xml"))
    assert any(SECRETS["HOOK_TOKEN"] in r.path for r in setup.http.requests_for("/hook"))
    assert setup.sink.messages == []


def test_config_errors_print_no_secret(setup: Setup) -> None:
    """A broken config around the secrets: the error names the key, never the value."""
    text = setup.config.read_text()
    setup.config.write_text(
        text.replace("security: none", "security: none\n  port_typo: 1")
        .replace('secret: "${WEBHOOK_SECRET}"', 'secret: ["${WEBHOOK_SECRET}"]')
        .replace('password: "${SMTP_PASSWORD}"', 'password: "${SMTP_PASSWORD}"\n  timeout: "${SMTP_PASSWORD}"'),
        encoding="utf-8",
    )
    output = run(setup, "validate")
    assert "(exit 1)" in output and "port_typo" in output and "secret" in output and "timeout" in output
    assert_no_secret(output)
