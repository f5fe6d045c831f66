"""feeds.yaml → Config: the contract example, defaults, paths, secrets, and one clear line per mistake."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from watcher.config import (
    ChannelSettings,
    Config,
    Defaults,
    FeedSettings,
    HttpSettings,
    SmtpSettings,
    Speaker,
    Theme,
    listening_on,
    load_config,
    parse_config,
    parse_duration,
)
from watcher.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONTRACT = """\
database: sqlite:///watcher.db      # optional; env WATCHER_DATABASE_URL overrides
defaults: {interval: 15m, timeout: 20s, alert_on_first_poll: false}
feeds:
  - url: https://example.org/rss.xml   # http(s) or file path
    name: Example                       # optional
    interval: 5m                        # optional
speakers:
  - name: Jen Zhu Scott
    aliases: ["Zhu Scott", "Jen Zhu-Scott"]
themes:
  - name: US-China AI collaboration
    all_of: [["US", "U.S.", "United States", "Washington"], ["China", "Beijing"], ["AI", "artificial intelligence"]]
    any_of: ["collaboration", "cooperation", "partnership"]
    none_of: ["sponsored"]
smtp: {host: localhost, port: 25, security: none, username: u, password: "${SMTP_PASSWORD}", from: watcher@example.org}
channels:
  - {name: desk, type: email, to: [analyst@example.org], digest: 30m, watches: [Jen Zhu Scott], statements_only: false}
  - {name: hook, type: webhook, url: https://hooks.example.org/x, secret: "${WEBHOOK_SECRET}"}
"""
SECRETS = {"SMTP_PASSWORD": "pw-Sup3r-s3cret", "WEBHOOK_SECRET": "whsec_c2VjcmV0LXZhbHVl"}
CONFIG_DIR = "/srv/watcher"
CONFIG_PATH = f"{CONFIG_DIR}/feeds.yaml"


def parse(text: str, env: dict[str, str] | None = None) -> Config:
    return parse_config(textwrap.dedent(text), CONFIG_PATH, env or {})


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, env)
    assert caught.value.path == CONFIG_PATH
    return str(caught.value).splitlines()


# ---------------------------------------------------------------------------------------------
# Good configurations


def test_contract_example() -> None:
    config = parse(CONTRACT, SECRETS)

    assert config.path == CONFIG_PATH
    assert config.database_url == "sqlite:////srv/watcher/watcher.db"
    assert config.defaults == Defaults(timedelta(minutes=15), timedelta(seconds=20), False)
    assert config.feeds == (
        FeedSettings("https://example.org/rss.xml", "Example", timedelta(minutes=5), timedelta(seconds=20), False),
    )
    assert config.speakers == (Speaker("Jen Zhu Scott", ("Zhu Scott", "Jen Zhu-Scott")),)
    assert config.themes == (
        Theme(
            "US-China AI collaboration",
            all_of=(
                ("US", "U.S.", "United States", "Washington"),
                ("China", "Beijing"),
                ("AI", "artificial intelligence"),
            ),
            any_of=("collaboration", "cooperation", "partnership"),
            none_of=("sponsored",),
        ),
    )
    assert config.smtp == SmtpSettings(
        host="localhost",
        port=25,
        security="none",
        sender="watcher@example.org",
        username="u",
        password=SECRETS["SMTP_PASSWORD"],
        timeout=timedelta(seconds=30),
    )
    assert config.channels == (
        ChannelSettings(
            "desk", "email", ("analyst@example.org",), timedelta(minutes=30), ("Jen Zhu Scott",), False, None, None
        ),
        ChannelSettings(
            "hook", "webhook", (), None, None, False, "https://hooks.example.org/x", SECRETS["WEBHOOK_SECRET"]
        ),
    )
    assert config.watch_names == ("Jen Zhu Scott", "US-China AI collaboration")
    assert config.warnings == ()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# nothing configured yet\n",
        "database:\ndefaults:\nfeeds:\nspeakers:\nthemes:\nsmtp:\nchannels:\n",
        "defaults: {}\nfeeds: []\nspeakers: []\nthemes: []\nchannels: []\n",
    ],
    ids=["empty", "comments-only", "null-sections", "empty-sections"],
)
def test_empty_and_absent_sections_are_an_empty_config(text: str) -> None:
    config = parse(text)
    assert (config.feeds, config.speakers, config.themes, config.smtp, config.channels) == ((), (), (), None, ())
    assert config.defaults == Defaults()
    assert config.database_url == "sqlite:////srv/watcher/watcher.db"


def test_feeds_fall_back_to_defaults_and_are_named_after_their_url() -> None:
    config = parse("""
        defaults: {interval: 1h, timeout: 45s, alert_on_first_poll: true}
        feeds:
          - url: https://example.org/news/rss/
          - url: https://example.org:8443/atom.xml
            timeout: 1.5m
            alert_on_first_poll: false
    """)
    first, second = config.feeds
    assert (first.name, first.interval, first.timeout, first.alert_on_first_poll) == (
        "example.org/news/rss",
        timedelta(hours=1),
        timedelta(seconds=45),
        True,
    )
    assert (second.name, second.timeout, second.alert_on_first_poll) == (
        "example.org:8443/atom.xml",
        timedelta(seconds=90),
        False,
    )


def test_file_feeds_are_resolved_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "feeds.yaml").write_text(
        "feeds:\n  - url: data/sample.xml\n  - url: file:///abs/other.xml\n  - url: /abs/third.xml\n"
    )
    config = load_config(tmp_path / "feeds.yaml", env={})
    assert [f.url for f in config.feeds] == [str(tmp_path / "data" / "sample.xml"), "/abs/other.xml", "/abs/third.xml"]
    assert all(f.is_file for f in config.feeds)
    assert config.feeds[0].name == "data/sample.xml"
    assert config.database_url == f"sqlite:///{tmp_path}/watcher.db"


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("sqlite:///state/watcher.db", "sqlite:////srv/watcher/state/watcher.db"),
        ("sqlite+pysqlite:///w.db", "sqlite+pysqlite:////srv/watcher/w.db"),
        ("sqlite:////var/lib/watcher.db", "sqlite:////var/lib/watcher.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("postgresql+psycopg://watcher@db/watcher", "postgresql+psycopg://watcher@db/watcher"),
    ],
)
def test_relative_sqlite_paths_are_relative_to_the_config_file(database: str, expected: str) -> None:
    assert parse(f'database: "{database}"\n').database_url == expected


def test_watcher_database_url_overrides_the_file_verbatim() -> None:
    env = {"WATCHER_DATABASE_URL": "postgresql+psycopg://w:pw@db/w"}
    assert parse("database: sqlite:///watcher.db\n", env).database_url == "postgresql+psycopg://w:pw@db/w"
    assert parse("", {"WATCHER_DATABASE_URL": "sqlite:///here.db"}).database_url == "sqlite:///here.db"


def test_env_substitution_anywhere_and_escaping() -> None:
    config = parse(
        """
        database: postgresql+psycopg://watcher:${DB_PASSWORD}@db/watcher
        feeds:
          - url: https://example.org/rss?key=${FEED_KEY}
            name: costs $${NOT_A_VAR}
        """,
        {"DB_PASSWORD": "dbpw", "FEED_KEY": "k1"},
    )
    assert config.database_url == "postgresql+psycopg://watcher:dbpw@db/watcher"
    assert config.feeds[0].url == "https://example.org/rss?key=k1"
    assert config.feeds[0].name == "costs ${NOT_A_VAR}"


@pytest.mark.parametrize(
    ("digest", "expected"),
    [("immediate", None), ("hourly", timedelta(hours=1)), ("daily", timedelta(days=1)), ("30m", timedelta(minutes=30))],
)
def test_digest_values(digest: str, expected: timedelta | None) -> None:
    config = parse(
        f"smtp: {{host: mail, from: w@example.org}}\nchannels: [{{name: d, type: email, to: [a@b.org], digest: {digest}}}]\n"
    )
    assert config.channels[0].digest == expected


@pytest.mark.parametrize(
    ("smtp", "port", "security"),
    [
        ("{host: mail.example.org, from: w@example.org}", 25, "none"),
        ("{host: mail.example.org, from: w@example.org, username: u, password: p}", 587, "starttls"),
        ("{host: mail.example.org, from: 'Watcher <w@example.org>', security: ssl}", 465, "ssl"),
        ("{host: mail.example.org, from: w@example.org, security: starttls, port: 2525}", 2525, "starttls"),
    ],
)
def test_smtp_port_and_security_defaults(smtp: str, port: int, security: str) -> None:
    settings = parse(f"smtp: {smtp}\n").smtp
    assert settings is not None
    assert (settings.port, settings.security) == (port, security)


def test_politeness_warning_only_for_remote_hosts() -> None:
    config = parse("""
        defaults: {interval: 2m}
        feeds:
          - url: https://news.example.org/rss
            interval: 1m
          - url: https://other.example.org/rss
          - url: http://127.0.0.1:8000/feed.xml
            interval: 10s
          - url: http://localhost/feed.xml
          - url: http://[::1]:8080/feed.xml
          - url: samples/feed.xml
          - url: https://slow.example.org/rss
            interval: 5m
    """)
    fix = "use 5m or more for remote servers (loopback and file feeds are exempt)"
    assert config.warnings == (
        f"{CONFIG_PATH}:5: feeds[0].interval: polls news.example.org every 1m; {fix}",
        f"{CONFIG_PATH}:6: feeds[1]: polls other.example.org every 2m (from defaults.interval); {fix}",
    )


def test_secrets_never_in_repr_or_errors() -> None:
    env = {**SECRETS, "DB_PASSWORD": "db-Sup3r-s3cret"}
    text = CONTRACT.replace("sqlite:///watcher.db", "postgresql://w:${DB_PASSWORD}@db/w")
    config = parse(text, env)
    shown = repr(config) + str(config)
    for secret in env.values():
        assert secret not in shown
    assert "password=" not in shown and "secret=" not in shown
    assert "url='https://hooks.example.org/…'" in shown  # a webhook URL's path is often its token

    # A config that fails for other reasons still never prints them, even where the bad value
    # came from a secret-bearing key or variable.
    broken = text.replace("port: 25", "port: 0").replace("url: https://hooks.example.org/x", "url: '${WEBHOOK_SECRET}'")
    broken = broken.replace('password: "${SMTP_PASSWORD}"', "password: ['${SMTP_PASSWORD}']")
    lines = problems(broken, env)
    assert len(lines) == 3
    for secret in env.values():
        assert secret not in "\n".join(lines)
    assert any(
        'channels[1].url: "${WEBHOOK_SECRET}" (after ${VAR} substitution) is not a URL' in line for line in lines
    )


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    lines = problems("""
        feeds:
          - url: https://example.org/rss
            interval: soon
          - url: gopher://example.org/
        themes:
          - name: Chips
        channels:
          - {name: desk, type: email, to: [a@b.org], watches: [Chipz]}
    """)
    assert [line.split(": ")[0:2] for line in lines] == [
        [f"{CONFIG_PATH}:4", "feeds[0].interval"],
        [f"{CONFIG_PATH}:5", "feeds[1].url"],
        [f"{CONFIG_PATH}:7", "themes[0]"],
        [f"{CONFIG_PATH}:9", "channels[0].type"],
        [f"{CONFIG_PATH}:9", "channels[0].watches[0]"],
    ]


# ---------------------------------------------------------------------------------------------
# One mistake each: (yaml, env, "N: key.path" (after "file:") the message must name, the fix it must give)

BAD = [
    ("malformed", "feeds: [a, b\nthemes: []\n", {}, "2:7: invalid YAML", "expected ',' or ']'"),
    ("tab-indent", "feeds:\n\t- url: x\n", {}, "2:1: invalid YAML", "indent with spaces, not tabs"),
    (
        "python-tag",
        "database: !!python/object/apply:os.system [ls]\n",
        {},
        "1:11: invalid YAML",
        "remove the !!tag",
    ),
    ("top-level-list", "- url: x\n", {}, " top level", "the file must be a mapping of sections"),
    (
        "unknown-section",
        "feed:\n  - url: https://a.org/rss\n",
        {},
        "1: feed",
        "unknown key 'feed'; did you mean 'feeds'?",
    ),
    (
        "unknown-feed-key",
        "feeds:\n  - url: https://a.org/rss\n    intervall: 5m\n",
        {},
        "3: feeds[0].intervall",
        "did you mean 'interval'?",
    ),
    (
        "unknown-key-no-match",
        "defaults: {colour: red}\n",
        {},
        "1: defaults.colour",
        "valid keys here: interval, timeout, alert_on_first_poll",
    ),
    (
        "smtp-sender-key",
        "smtp: {host: h, from: a@b.org, sender: a@b.org}\n",
        {},
        "1: smtp.sender",
        "valid keys here: host, port, security",
    ),
    ("duplicate-key", "feeds: []\nthemes: []\nfeeds: []\n", {}, "3: feeds", "duplicate key (first on line 1)"),
    (
        "bad-duration",
        "feeds:\n  - url: https://a.org/rss\n    interval: 5 minutes\n",
        {},
        '3: feeds[0].interval: "5 minutes" is not a duration',
        "use a number followed by s, m, h or d (e.g. 5m)",
    ),
    (
        "bare-number",
        "defaults: {interval: 15}\n",
        {},
        "1: defaults.interval: 15 has no unit",
        "write 15s for seconds or 15m for minutes",
    ),
    ("zero-duration", "defaults: {timeout: 0s}\n", {}, "1: defaults.timeout", "is zero; use a number"),
    ("tiny-duration", "defaults: {interval: 0.0000001s}\n", {}, "1: defaults.interval", "is under a second"),
    (
        "duration-list",
        "defaults: {timeout: [1m]}\n",
        {},
        "1: defaults.timeout: is a list",
        "use a duration: a number followed by s, m, h or d",
    ),
    (
        "feeds-not-list",
        "feeds: {url: https://a.org/rss}\n",
        {},
        "1: feeds: is a mapping",
        "use a list, e.g. [a, b]",
    ),
    ("feed-is-text", "feeds:\n  - https://a.org/rss\n", {}, "2: feeds[0]: is text", "use a mapping of keys"),
    ("feed-missing-url", "feeds:\n  - name: A\n", {}, "2: feeds[0].url", "required key is missing; add url: ..."),
    (
        "feed-bad-scheme",
        "feeds:\n  - url: ftp://a.org/rss\n",
        {},
        "2: feeds[0].url",
        "uses the ftp: scheme; use an http(s) URL or a file path",
    ),
    (
        "feed-no-host",
        "feeds:\n  - url: https:///rss\n",
        {},
        "2: feeds[0].url",
        "has no host; write it like https://example.org/feed.xml",
    ),
    ("feed-bad-port", "feeds:\n  - url: https://a.org:99999/rss\n", {}, "2: feeds[0].url", "has an invalid port"),
    (
        "feed-space",
        "feeds:\n  - url: https://a.org/my feed\n",
        {},
        "2: feeds[0].url",
        "percent-encode spaces as %20",
    ),
    (
        "feed-empty-name",
        "feeds:\n  - {url: https://a.org/rss, name: ''}\n",
        {},
        "2: feeds[0].name",
        "give a non-empty value",
    ),
    (
        "duplicate-feed-name",
        "feeds:\n  - url: https://a.org/rss\n  - url: https://a.org/rss/\n",
        {},
        '3: feeds[1].name: "a.org/rss" is already used by feeds[0].name (line 2)',
        "set a distinct name: on one of them",
    ),
    (
        "duplicate-feed-url",
        "feeds:\n  - {url: https://a.org/rss, name: A}\n  - {url: https://a.org/rss, name: B}\n",
        {},
        "3: feeds[1].url",
        "remove the duplicate feed",
    ),
    (
        "alert-flag-text",
        "feeds:\n  - {url: https://a.org/rss, alert_on_first_poll: 'yes'}\n",
        {},
        '2: feeds[0].alert_on_first_poll: "yes" is text',
        "use true or false without quotes",
    ),
    (
        "alias-is-boolean",
        "speakers:\n  - {name: A, aliases: [B, no]}\n",
        {},
        "2: speakers[0].aliases[1]: no is the boolean false",
        "put it in quotes",
    ),
    ("speaker-missing-name", "speakers:\n  - aliases: [B]\n", {}, "2: speakers[0].name", "add name: ..."),
    (
        "threshold-range",
        "speakers:\n  - {name: A, threshold: 120}\n",
        {},
        "2: speakers[0].threshold: 120 is out of range",
        "use a whole number from 0 to 100",
    ),
    (
        "watch-name-clash",
        "speakers:\n  - name: Chips\nthemes:\n  - {name: chips, any_of: [GPU]}\n",
        {},
        '4: themes[0].name: "chips" is already used by speakers[0].name (line 2)',
        "speaker and theme names must be unique",
    ),
    (
        "theme-near",
        "themes:\n  - {name: T, any_of: [GPU], near: sentences}\n",
        {},
        '2: themes[0].near: "sentences" is not a proximity',
        "use sentence, paragraph, article or a number of words like 20",
    ),
    (
        "theme-where",
        "themes:\n  - {name: T, any_of: [GPU], where: headline}\n",
        {},
        '2: themes[0].where: "headline" is not allowed',
        "use one of: 'title', 'lead' or 'anywhere'",
    ),
    (
        "theme-min-score",
        "themes:\n  - {name: T, any_of: [GPU], min_score: 120}\n",
        {},
        "2: themes[0].min_score: 120 is out of range",
        "use a whole number from 0 to 100 (higher alerts less)",
    ),
    (
        "theme-veto-scope",
        "themes:\n  - {name: T, any_of: [GPU], none_of_scope: entry}\n",
        {},
        '2: themes[0].none_of_scope: "entry" is not allowed',
        "use one of: 'sentence', 'paragraph' or 'article'",
    ),
    (
        "all-of-flat",
        "themes:\n  - {name: T, all_of: [US]}\n",
        {},
        "2: themes[0].all_of[0]: is text",
        'all_of is a list of groups, e.g. [["US", "U.S."], ["China"]]',
    ),
    (
        "all-of-empty-group",
        "themes:\n  - name: T\n    all_of: [[US], []]\n",
        {},
        "3: themes[0].all_of[1]: is an empty list",
        "list at least one item",
    ),
    (
        "theme-matches-nothing",
        "themes:\n  - {name: T, none_of: [sponsored]}\n",
        {},
        "2: themes[0]: matches nothing",
        "give all_of groups and/or any_of phrases",
    ),
    (
        "smtp-bad-security",
        "smtp: {host: h, from: a@b.org, security: tls}\n",
        {},
        '1: smtp.security: "tls" is not allowed',
        "use one of: 'none', 'starttls' or 'ssl'",
    ),
    (
        "smtp-port-text",
        "smtp: {host: h, from: a@b.org, port: '25'}\n",
        {},
        '1: smtp.port: "25" is text',
        "use a whole number without quotes",
    ),
    (
        "smtp-port-list",
        "smtp: {host: h, from: a@b.org, port: ['${P}']}\n",
        {"P": "2525"},
        "1: smtp.port: is a list",
        "use a whole number",
    ),
    (
        "smtp-security-list",
        "smtp: {host: h, from: a@b.org, security: [ssl]}\n",
        {},
        "1: smtp.security: is a list",
        "use one of the listed words",
    ),
    (
        "smtp-port-range",
        "smtp: {host: h, from: a@b.org, port: 70000}\n",
        {},
        "1: smtp.port: 70000 is out of range",
        "from 1 to 65535",
    ),
    ("smtp-missing-from", "smtp: {host: h}\n", {}, "1: smtp.from", "required key is missing; add from: ..."),
    (
        "smtp-bad-from",
        "smtp: {host: h, from: watcher}\n",
        {},
        '1: smtp.from: "watcher" is not an email address',
        "write it like analyst@example.org",
    ),
    (
        "smtp-user-no-password",
        "smtp: {host: h, from: a@b.org, username: u}\n",
        {},
        "1: smtp.password",
        "required when username is set; give both or neither",
    ),
    (
        "email-without-smtp",
        "channels:\n  - {name: desk, type: email, to: [a@b.org]}\n",
        {},
        "2: channels[0].type",
        "an email channel needs an smtp section",
    ),
    (
        "channel-unknown-type",
        "channels:\n  - {name: x, type: sms}\n",
        {},
        '2: channels[0].type: "sms" is not a channel type',
        "use email or webhook",
    ),
    (
        "channel-missing-type",
        "channels:\n  - {name: x, url: https://h.org/x}\n",
        {},
        "2: channels[0].type",
        "add type: email or type: webhook",
    ),
    (
        "channel-bad-digest",
        "smtp: {host: h, from: a@b.org}\nchannels:\n  - {name: d, type: email, to: [a@b.org], digest: weekly}\n",
        {},
        '3: channels[0].digest: "weekly" is not a digest',
        "use immediate, hourly, daily or a duration like 30m",
    ),
    (
        "channel-bad-recipient",
        "smtp: {host: h, from: a@b.org}\nchannels:\n  - {name: d, type: email, to: [analyst]}\n",
        {},
        "3: channels[0].to[0]",
        "is not an email address",
    ),
    (
        "channel-empty-to",
        "smtp: {host: h, from: a@b.org}\nchannels:\n  - {name: d, type: email, to: []}\n",
        {},
        "3: channels[0].to: is an empty list",
        "list at least one item",
    ),
    (
        "channel-unknown-watch",
        "speakers: [{name: Jen Zhu Scott}]\nsmtp: {host: h, from: a@b.org}\nchannels:\n  - name: d\n    type: email\n    to: [a@b.org]\n    watches: [Jen Zhu Scot]\n",
        {},
        '7: channels[0].watches[0]: "Jen Zhu Scot" is not a speaker or theme',
        'did you mean "Jen Zhu Scott"?',
    ),
    (
        "channel-empty-watches",
        "smtp: {host: h, from: a@b.org}\nchannels:\n  - {name: d, type: email, to: [a@b.org], watches: []}\n",
        {},
        "3: channels[0].watches: is an empty list",
        "remove the key",
    ),
    (
        "duplicate-channel",
        "channels:\n  - {name: hook, type: webhook, url: https://h.org/a, secret: s}\n  - {name: Hook, type: webhook, url: https://h.org/b, secret: s}\n",
        {},
        '3: channels[1].name: "Hook" is already used by channels[0].name (line 2)',
        "channel names must be unique",
    ),
    (
        "webhook-file-url",
        "channels:\n  - {name: h, type: webhook, url: /tmp/hook, secret: s}\n",
        {},
        '2: channels[0].url: "/tmp/hook" is not a URL',
        "use an http(s) URL",
    ),
    (
        "webhook-no-secret",
        "channels:\n  - {name: h, type: webhook, url: https://h.org/x}\n",
        {},
        "2: channels[0].secret",
        "required key is missing; add secret: ...",
    ),
    (
        "webhook-digest",
        "channels:\n  - {name: h, type: webhook, url: https://h.org/x, secret: s, digest: daily}\n",
        {},
        "2: channels[0].digest: unknown key 'digest'",
        "valid keys here",
    ),
    (
        "missing-env-var",
        'smtp: {host: h, from: a@b.org, username: u, password: "${SMTP_PASSWORD}"}\n',
        {},
        "1: smtp.password",
        "environment variable SMTP_PASSWORD is not set; set it",
    ),
    (
        "database-not-url",
        "database: watcher.db\n",
        {},
        '1: database: "watcher.db" is not a database URL',
        "use e.g. sqlite:///watcher.db",
    ),
    (
        "env-database-not-url",
        "",
        {"WATCHER_DATABASE_URL": "db-on-my-desk"},
        " WATCHER_DATABASE_URL: (environment variable) is not a database URL",
        "use e.g. sqlite:///watcher.db",
    ),
    (
        "http-listen-not-address",
        "http: {listen: 8080}\n",
        {},
        "1: http.listen: 8080 is a number, not text",
        "put it in quotes",
    ),
    (
        "http-listen-no-port",
        "http: {listen: localhost}\n",
        {},
        '1: http.listen: "localhost" is not an address to listen on',
        "write host:port, e.g. 127.0.0.1:8080",
    ),
    (
        "http-public-without-token",
        "http:\n  listen: 0.0.0.0:8080\n",
        {},
        "1: http.token: required to listen on 0.0.0.0:8080 (not loopback)",
        "set token: ${WATCHER_HTTP_TOKEN}",
    ),
]


@pytest.mark.parametrize(("text", "env", "where", "fix"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_config_is_one_clear_line(text: str, env: dict[str, str], where: str, fix: str) -> None:
    lines = problems(text, env)
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith(f"{CONFIG_PATH}:{where}"), line
    assert fix in line, line
    assert not any(value in line for value in env.values()), "a value from the environment was printed"


@pytest.mark.parametrize(
    ("listen", "token", "expected"),
    [
        ("127.0.0.1:8080", None, ("127.0.0.1", 8080)),
        ("localhost:0", None, ("localhost", 0)),
        ("'[::1]:9100'", None, ("::1", 9100)),
        ("0.0.0.0:8080", "'${TOKEN}'", ("0.0.0.0", 8080)),
        ("'[::]:8080'", "'${TOKEN}'", ("::", 8080)),
    ],
)
def test_the_http_endpoint_listens_on_loopback_or_with_a_token(
    listen: str, token: str | None, expected: object
) -> None:
    text = f"http: {{listen: {listen}" + (f", token: {token}" if token else "") + "}\n"
    config = parse_config(text, CONFIG_PATH, {"TOKEN": "s3cret"})
    assert config.http.listen == expected
    assert config.http.token == ("s3cret" if token else None)
    assert "s3cret" not in repr(config)


def test_the_http_endpoint_is_off_by_default_and_the_flag_keeps_the_configs_token() -> None:
    assert parse_config("", CONFIG_PATH, {}).http.listen is None
    with_token = parse_config("http: {token: t0ken}\n", CONFIG_PATH, {}).http
    assert listening_on(with_token, "0.0.0.0:9000") == HttpSettings(listen=("0.0.0.0", 9000), token="t0ken")
    with pytest.raises(ConfigError, match=r"^--http 0\.0\.0\.0:9000: http\.token: required to listen"):
        listening_on(HttpSettings(), "0.0.0.0:9000")
    with pytest.raises(ConfigError, match=r'^--http 9000: http\.listen: "9000" is not an address'):
        listening_on(HttpSettings(), "9000")


def test_enough_bad_cases() -> None:
    assert len(BAD) >= 25


# ---------------------------------------------------------------------------------------------
# Durations, files, and the shipped configuration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("15m", timedelta(minutes=15)),
        ("1.5h", timedelta(minutes=90)),
        ("2d", timedelta(days=2)),
        (" 5 m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["15", "5 minutes", "m", "-5m", "0m", "1w", "1h30m", "9999999999d"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="use a number followed by s, m, h or d"):
        parse_duration(text)


def test_load_config_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: no such file; create it .* or pass -c PATH"):
        load_config(tmp_path / "missing.yaml")
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("speakers: [{name: Zo\xeb}]\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text .*; save the file as UTF-8"):
        load_config(latin1)


def test_load_config_reads_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "feeds.yaml").write_text("feeds:\n  - url: https://example.org/rss?token=${FEED_TOKEN}\n")
    monkeypatch.setenv("FEED_TOKEN", "t0k")
    assert load_config(tmp_path / "feeds.yaml").feeds[0].url == "https://example.org/rss?token=t0k"


def test_shipped_feeds_yaml_loads_without_any_environment() -> None:
    config = load_config(ROOT / "feeds.yaml", env={})
    assert len(config.feeds) >= 8
    assert all(f.url.startswith("https://") for f in config.feeds)
    assert all(f.interval >= timedelta(minutes=15) for f in config.feeds)
    assert "Jen Zhu Scott" in [s.name for s in config.speakers]
    jen = next(s for s in config.speakers if s.name == "Jen Zhu Scott")
    assert {"Zhu Scott", "Jen Zhu-Scott", "Jennifer Zhu Scott"} <= set(jen.aliases)
    assert len(config.themes) >= 5
    assert config.warnings == ()
    assert any("Jen+Zhu+Scott" in f.url or "Jen%20Zhu%20Scott" in f.url for f in config.feeds)


def test_shipped_alert_example_is_valid_once_uncommented() -> None:
    text = (ROOT / "feeds.yaml").read_text(encoding="utf-8")
    head, marker, example = text.partition("# ---- example alerts")
    assert marker
    uncommented = "\n".join(line.removeprefix("# ") for line in example.splitlines()[1:])
    config = parse_config(head + uncommented, str(ROOT / "feeds.yaml"), SECRETS)
    assert [(c.name, c.type) for c in config.channels] == [
        ("desk", "email"),
        ("themes-daily", "email"),
        ("hook", "webhook"),
    ]
    assert config.smtp is not None and config.smtp.password == SECRETS["SMTP_PASSWORD"]
    assert config.channels[2].secret == SECRETS["WEBHOOK_SECRET"]


def test_a_whole_env_reference_can_give_a_number_or_a_yes_or_no() -> None:
    # Deployments keep ports and switches in the environment (Docker, systemd EnvironmentFile).
    config = parse(
        """
        smtp: {host: mail.example, port: "${SMTP_PORT}", from: w@example.org}
        defaults: {alert_on_first_poll: "${FIRST}"}
        speakers: [{name: Jen Zhu Scott, threshold: "${THRESHOLD}"}]
        channels:
          - {name: desk, type: email, to: [d@example.org], statements_only: "${ONLY}"}
        feeds: [{url: https://example.org/rss}]
        """,
        {"SMTP_PORT": "587", "FIRST": "yes", "THRESHOLD": " 95 ", "ONLY": "False"},
    )
    assert config.smtp is not None and config.smtp.port == 587
    assert config.feeds[0].alert_on_first_poll is True
    assert config.speakers[0].threshold == 95
    assert config.channels[0].statements_only is False


@pytest.mark.parametrize(
    ("yaml_text", "env", "expected"),
    [
        (
            'port: "${SMTP_PORT}"',
            {"SMTP_PORT": "submission"},
            'smtp.port: "${SMTP_PORT}" (after ${VAR} substitution) is not a whole number; set the variable to one',
        ),
        (
            'port: "${SMTP_PORT}"',
            {"SMTP_PORT": "70000"},
            'smtp.port: "${SMTP_PORT}" (after ${VAR} substitution) is out of range',
        ),
        ('port: "25"', {}, 'smtp.port: "25" is text; use a whole number without quotes'),  # written: text stays text
        ('port: "${A}x"', {"A": "5"}, 'smtp.port: "${A}x" (after ${VAR} substitution) is not a whole number'),
    ],
)
def test_env_numbers_that_are_not_numbers_are_reported(yaml_text: str, env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(
            f"smtp: {{host: mail.example, {yaml_text}, from: w@example.org}}\nfeeds: [{{url: https://example.org/rss}}]\n",
            env,
        )
    assert expected in str(e.value)
    assert all(value not in str(e.value) for value in env.values()), "an env value may be a secret"


def test_theme_options_are_read_with_their_defaults() -> None:
    text = (
        "themes:\n"
        "  - {name: A, any_of: [GPU]}\n"
        "  - {name: B, any_of: [GPU], near: 20, where: lead, at_least: 2, none_of_scope: article, min_score: 70}\n"
    )
    a, b = parse(text, {}).themes
    assert (a.near, a.where, a.at_least, a.none_of_scope, a.min_score) == ("sentence", "anywhere", 1, "sentence", 50)
    assert (b.near, b.where, b.at_least, b.none_of_scope, b.min_score) == (20, "lead", 2, "article", 70)
