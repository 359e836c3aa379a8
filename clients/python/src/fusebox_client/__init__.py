"""fusebox-client: take part in a Fusebox fleet from Python. Report call outcomes through
JetStream (batched, with message ids, bounded retries and a bounded buffer), follow the
fleet's decision for a breaker and enforce it locally (probes only as granted), with an
asyncio API (:func:`connect`) and a thread-backed synchronous one (:func:`connect_sync`).
This module re-exports the public API; see the package README.
"""

from .breaker import Breaker, Call, Permit
from .client import Client, connect
from .connect import ConnectSettings
from .errors import (
    AuthenticationError,
    BadDecision,
    BreakerOpen,
    ConnectError,
    ConnectSettingsError,
    FuseboxError,
    InvalidInput,
    NotProvisioned,
    PermitSpent,
    PublishError,
    PublishRefused,
    PublishTimeout,
    Rejected,
    ReporterClosed,
    ServerUnreachable,
    TLSError,
)
from .local import LocalBreaker
from .reporter import Reporter, ReporterSettings, ReporterStats, Sent
from .sync import SyncClient, connect_sync
from .wire import Decision, DecisionId

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError", "BadDecision", "Breaker", "BreakerOpen", "Call", "Client", "ConnectError",
    "ConnectSettings", "ConnectSettingsError", "Decision", "DecisionId", "FuseboxError", "InvalidInput",
    "LocalBreaker", "NotProvisioned", "Permit", "PermitSpent", "PublishError", "PublishRefused",
    "PublishTimeout", "Rejected", "Reporter", "ReporterClosed", "ReporterSettings", "ReporterStats",
    "Sent", "ServerUnreachable", "SyncClient", "TLSError", "connect", "connect_sync",
]
