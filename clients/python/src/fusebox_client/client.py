"""The asyncio client: one NATS connection for a node, its reporter, and the breakers it
follows (:func:`connect`, :class:`Client`). The thread-backed API for synchronous code
(:mod:`fusebox_client.sync`) runs this same client on a loop of its own.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Dict, List, Optional, Sequence, Type, Union

from nats.aio.client import Client as NatsClient

from .breaker import Breaker
from .connect import ConnectSettings, connect_nats
from .follower import Follower
from .local import LocalBreaker
from .reporter import Reporter, ReporterSettings, Sent
from .wire import DEFAULT_PREFIX, check_name, check_prefix

__all__ = ["Client", "connect"]


class Client:
    """A node of the fleet: ``node`` is its id (the last token of its outcome subject,
    what half-open grants name), unique in the fleet."""

    def __init__(self, nc: NatsClient, node: str, prefix: str, reporting: ReporterSettings, js_api_prefix: Optional[str]) -> None:
        self.nc = nc
        self.node = check_name("node", node)
        self.prefix = check_prefix(prefix)
        self.js = nc.jetstream(prefix=js_api_prefix) if js_api_prefix else nc.jetstream()
        self.reporter = Reporter(nc, node, prefix, reporting, js=self.js)
        self._breakers: Dict[str, Breaker] = {}
        self._followers: List[Follower] = []

    async def breaker(
        self, name: str, slow_after: Optional[float] = None, ready_timeout: float = 5.0, provision_timeout: float = 0.0
    ) -> Breaker:
        """Breaker ``name``, following the fleet's decisions for it (the current one read
        before this returns, within ``ready_timeout``); the same object for the same name.
        Raises :class:`~fusebox_client.errors.NotProvisioned` without a state bucket, once
        ``provision_timeout`` seconds have passed without a Fusebox node creating it
        (default 0: at once; ``math.inf``: wait for ever), for a process that may start
        before the fleet's first node."""
        if name in self._breakers:
            return self._breakers[name]
        local = LocalBreaker(name, self.node)
        follower = Follower(self.js, local, self.prefix)
        await follower.start(ready_timeout, provision_timeout)
        self._followers.append(follower)
        breaker = Breaker(local, self.reporter, slow_after, lambda: follower.slow_threshold)
        self._breakers[name] = breaker
        return breaker

    async def flush(self) -> List[Sent]:
        """Sends every outcome waiting now; see :meth:`Reporter.flush`."""
        return await self.reporter.flush()

    async def close(self, timeout: float = 5.0) -> int:
        """Stops following, sends what waits (at most ``timeout`` s), closes the
        connection; returns the calls left unsent."""
        for follower in self._followers:
            await follower.stop()
        self._followers = []
        left = await self.reporter.close(timeout)
        if not self.nc.is_closed:
            try:
                await self.nc.close()
            except Exception:  # closing is best effort: what mattered is sent
                pass
        return left

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(
        self, exc_type: Optional[Type[BaseException]], exc: Optional[BaseException], tb: Optional[TracebackType]
    ) -> None:
        await self.close()


async def connect(
    servers: Union[str, Sequence[str], None] = None,
    *,
    node: str,
    prefix: str = DEFAULT_PREFIX,
    settings: Optional[ConnectSettings] = None,
    reporting: Optional[ReporterSettings] = None,
    **connect_settings: Any,
) -> Client:
    """Connects node ``node`` to the fleet's NATS and starts its reporter.

    ``servers`` (a URL, comma-separated URLs or a list) and ``connect_settings`` (the
    fields of :class:`ConnectSettings`: ``token=``, ``creds=``, ``tls_ca=``, ...) amend
    ``settings`` (default: none; ``ConnectSettings.from_env()`` reads ``NATS_*``).
    Raises :class:`~fusebox_client.errors.ConnectSettingsError` before connecting for a
    setting that cannot work, :class:`~fusebox_client.errors.ConnectError` subclasses
    when the connection fails.
    """
    check_name("node", node)
    check_prefix(prefix)
    settings = settings if settings is not None else ConnectSettings()
    if servers is not None:
        connect_settings["servers"] = servers
    if connect_settings:
        settings = settings.replace(**connect_settings)
    if settings.name is None:
        settings = settings.replace(name=f"fusebox-client:{node}")
    holder: List[Client] = []

    async def on_error(error: Exception) -> None:
        if holder:
            await holder[0].reporter.on_error(error)

    nc = await connect_nats(settings, on_error)
    client = Client(nc, node, prefix, reporting if reporting is not None else ReporterSettings(), settings.js_api_prefix)
    holder.append(client)
    client.reporter.start()
    return client
