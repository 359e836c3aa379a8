"""The exceptions of fusebox-client: one hierarchy under :class:`FuseboxError`.

Every error this package raises on purpose is a :class:`FuseboxError`; a caller that wants
to handle "anything Fusebox" catches that one class. The branches say what went wrong
and what may help:

- :class:`ConnectSettingsError` (also a ``ValueError``): a setting that cannot work, found
  before anything connects (an unreadable file, half a certificate pair, an unknown URL
  scheme, creds without the ``nkeys`` package); fix the configuration;
- :class:`ConnectError`: no connection could be made with settings that look right;
  :class:`AuthenticationError` (the server refused the credentials), :class:`TLSError`
  (the handshake or the certificate check failed), :class:`ServerUnreachable` (no server
  answered within the deadline);
- :class:`NotProvisioned`: the server has no Fusebox stream or bucket (no Fusebox node ran
  with this prefix);
- :class:`InvalidInput` (also a ``ValueError``): a breaker name, node id, outcome or count
  the wire format does not allow;
- :class:`PublishError`: an outcome message was given up: :class:`PublishRefused` (the
  server's permissions refuse the subject), :class:`PublishTimeout` (no acknowledgement
  after every attempt);
- :class:`ReporterClosed`: outcomes recorded after the reporter was closed;
- :class:`Rejected`: the fleet's decision holds this call back (``state`` says which
  decision); :class:`BreakerOpen` when the breaker is open;
- :class:`PermitSpent`: a permit's outcome recorded twice;
- :class:`BadDecision` (also a ``ValueError``): a value in the state bucket that cannot be
  used; the follower counts it and keeps the last good decision, it never raises it to the
  caller's call path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List, Optional, Tuple

if TYPE_CHECKING:
    from .reporter import Sent

__all__ = [
    "FuseboxError",
    "ConnectSettingsError",
    "ConnectError",
    "AuthenticationError",
    "TLSError",
    "ServerUnreachable",
    "NotProvisioned",
    "InvalidInput",
    "PublishError",
    "PublishRefused",
    "PublishTimeout",
    "ReporterClosed",
    "Rejected",
    "BreakerOpen",
    "PermitSpent",
    "BadDecision",
]


class FuseboxError(Exception):
    """The base of every error fusebox-client raises."""


class ConnectSettingsError(FuseboxError, ValueError):
    """A connection setting that cannot work, found before connecting.

    ``setting`` names it (``"tls_ca"``, ``"creds"``, ...; the environment variable when it
    came from one), ``path`` the file when one is involved.
    """

    def __init__(self, setting: str, message: str, path: Optional[str] = None) -> None:
        where = f"{setting}={path}" if path is not None else setting
        super().__init__(f"{where}: {message}")
        self.setting = setting
        self.path = path


class ConnectError(FuseboxError):
    """No connection could be made. ``servers`` are the URLs tried, ``cause`` the last error
    nats-py reported (also chained as ``__cause__``)."""

    def __init__(self, message: str, servers: Tuple[str, ...], cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.servers = servers
        self.cause = cause


class AuthenticationError(ConnectError):
    """The server refused the credentials (``Authorization Violation``)."""


class TLSError(ConnectError):
    """The TLS handshake failed: the server's certificate is not trusted, the server wants a
    client certificate, or one side does not speak TLS."""


class ServerUnreachable(ConnectError):
    """No server answered within the connect deadline."""


class NotProvisioned(FuseboxError):
    """The Fusebox stream or bucket does not exist on the server (no Fusebox node has run
    with this prefix, or the account cannot see it)."""


class InvalidInput(FuseboxError, ValueError):
    """A name, outcome or count the wire format does not allow (docs/wire-format.md)."""


class PublishError(FuseboxError):
    """An outcome message was given up. ``msg_id`` is its ``Nats-Msg-Id``, ``calls`` how
    many calls it reported, ``attempts`` how often it was sent. Raised by
    ``Reporter.flush``, ``sent`` holds what that flush did get acknowledged (the other
    messages are still sent before it raises)."""

    def __init__(self, message: str, subject: str, msg_id: str, calls: int, attempts: int) -> None:
        super().__init__(message)
        self.subject = subject
        self.msg_id = msg_id
        self.calls = calls
        self.attempts = attempts
        self.sent: List["Sent"] = []


class PublishRefused(PublishError):
    """The server's permissions refuse the subject: sending again cannot help."""


class PublishTimeout(PublishError):
    """No acknowledgement after every attempt (the server is down, slow, or no stream takes
    the subject)."""


class ReporterClosed(FuseboxError):
    """The reporter was closed: it records nothing more."""


class Rejected(FuseboxError):
    """The fleet's decision holds this call back; it was reported as ``rejected`` (the
    demand that makes the decider grant this node probes).

    ``breaker`` and ``node`` name the breaker and this node, ``state`` is the state in force
    (``"open"``, ``"half_open"``, ...), ``decision_id`` its ``(term, seq)``.
    """

    def __init__(self, breaker: str, node: str, state: str, decision_id: Optional[Tuple[int, int]]) -> None:
        detail = {
            "open": "the breaker is open",
            "forced_open": "an operator forced the breaker open",
            "half_open": "half-open: no probe granted to this node is left",
            "ramping": "ramping: this call is outside the admitted share",
        }.get(state, state)
        at = f" (decision {decision_id[0]}.{decision_id[1]})" if decision_id is not None else ""
        super().__init__(f"{breaker}: call rejected for node {node}: {detail}{at}")
        self.breaker = breaker
        self.node = node
        self.state = state
        self.decision_id = decision_id


class BreakerOpen(Rejected):
    """Rejected because the breaker is open (``open`` or ``forced_open``)."""


class PermitSpent(FuseboxError):
    """A permit's outcome was already recorded (or the permit released)."""


class BadDecision(FuseboxError, ValueError):
    """A value in the state bucket that cannot be used; ``kind`` is the Rust decoder's label
    for it (``malformed``, ``unsupported_version``, ``wrong_breaker``, ...)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
