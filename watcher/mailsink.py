"""A small local SMTP server that keeps what it receives: the demo's mail sink and the tests' server.

Built on aiosmtpd (a real SMTP implementation, STARTTLS and AUTH included) rather than a
fake, so the demo and the tests exercise the same smtplib conversation a real server
has. It runs in a background thread; use it as a context manager::

    with MailSink(Path("mail")) as sink:
        ...  # send to 127.0.0.1:sink.port
        sink.messages[0].message["Subject"]

It can refuse the next N messages with a chosen reply (``fail_next``) and be stopped and
started again on the same port (``stop``/``start``), to play an unreliable server.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import ssl
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class ReceivedMail:
    """One message the sink accepted."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    #: The exact bytes received after DATA.
    raw: bytes
    #: Whether the session had switched to TLS (STARTTLS) or was TLS from the start.
    tls: bool
    #: The AUTH login used, if any.
    login: str | None
    #: Where it was written, when the sink has a directory.
    path: Path | None


class _Controller(Controller):
    """Learns the real port when asked for port 0, so a restart binds the same one."""

    def _trigger_server(self) -> None:
        self.port = cast(asyncio.Server, self.server).sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


class MailSink:
    """An SMTP server on ``host:port`` (0 = any free port) that stores every message.

    * ``directory``: also write each message there as ``<time>-<n>.eml`` (written to a
      temporary name first, so a reader never sees half a file).
    * ``tls_context``: offer STARTTLS with this server context; with ``implicit_tls`` the
      whole connection is TLS instead (``security: ssl``). ``require_starttls`` refuses
      mail before STARTTLS.
    * ``auth``: require AUTH LOGIN/PLAIN with this (user, password). AUTH is offered only
      after STARTTLS when STARTTLS is offered; on a plain or implicit-TLS server it is
      offered at once (aiosmtpd cannot tell an implicit-TLS session is encrypted).
    """

    def __init__(
        self,
        directory: Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        auth: tuple[str, str] | None = None,
        *,
        implicit_tls: bool = False,
    ) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._received: list[ReceivedMail] = []
        self._failures: list[str] = []
        self._auth = auth
        self._implicit_tls = implicit_tls and tls_context is not None
        starttls = None if self._implicit_tls else tls_context
        self.host = host
        self.port = port
        self._options: dict[str, Any] = {
            "ssl_context": tls_context if self._implicit_tls else None,
            "tls_context": starttls,
            "require_starttls": require_starttls and starttls is not None,
            "authenticator": self._authenticate if auth else None,
            "auth_required": auth is not None,
            "auth_require_tls": starttls is not None,
        }
        self._controller: _Controller | None = None

    @property
    def messages(self) -> list[ReceivedMail]:
        """Everything received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._received)

    def fail_next(self, count: int, reply: str = "421 4.3.0 try again later") -> None:
        """Answer the next ``count`` messages' DATA with ``reply`` (e.g. "554 5.7.1 no")."""
        with self._lock:
            self._failures.extend([reply] * count)

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen on ``port``; with port 0, ``port`` is the one picked, kept for restarts."""
        # aiosmtpd closes a controller's event loop on stop, so each start needs a new one.
        controller = _Controller(_Handler(self), hostname=self.host, port=self.port, **self._options)
        controller.start()
        self.port = int(controller.port)
        self._controller = controller

    def stop(self) -> None:
        """Close the port: clients now get "connection refused" until ``start``."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- called by the handler, on the server thread ------------------------------------

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            self._auth is not None
            and isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self._auth
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

    def _next_failure(self) -> str | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    def _store(self, session: Session, envelope: Envelope) -> None:
        raw = envelope.original_content or b""
        path = self._write(raw) if self.directory is not None else None
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        mail = ReceivedMail(
            message=message,
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            raw=raw,
            tls=self._implicit_tls or session.ssl is not None,
            login=session.auth_data if isinstance(session.auth_data, str) else None,
            path=path,
        )
        with self._lock:
            self._received.append(mail)

    def _write(self, raw: bytes) -> Path:
        assert self.directory is not None
        self.directory.mkdir(parents=True, exist_ok=True)
        # Time first so a directory listing is in arrival order; the suffix keeps names
        # unique across sinks and restarts writing to the same directory.
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        path = self.directory / name
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(raw)
        os.replace(tmp, path)
        return path


class _Handler:
    """aiosmtpd handler hooks: refuse when told to, otherwise keep the message."""

    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self.sink._next_failure()
        if failure is not None:
            return failure
        self.sink._store(session, envelope)
        return "250 2.0.0 OK stored"
