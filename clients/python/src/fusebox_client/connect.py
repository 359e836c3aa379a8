"""How fusebox-client connects to NATS: the servers, credentials and TLS of a
:class:`ConnectSettings` (the modes of the Rust side's ``ConnectionSettings``: user and
password, token, nkey, creds, a custom CA, mutual TLS, TLS first), read from code, the
environment or a nats CLI context, checked before anything connects, and a first
connection whose failure is a typed, explained :class:`~fusebox_client.errors.ConnectError`.

| setting | environment | nats context field | meaning |
|---|---|---|---|
| ``servers`` | ``NATS_URL`` (comma-separated) | ``url`` | ``nats://``, ``tls://``, ``ws://`` or ``wss://`` URLs |
| ``user``, ``password`` | ``NATS_USER``, ``NATS_PASSWORD`` | ``user``, ``password`` | user and password |
| ``token`` | ``NATS_TOKEN`` | ``token`` | a token |
| ``nkey`` / ``nkey_seed`` | ``NATS_NKEY`` (a seed file) | ``nkey`` | an nkey user seed (``SU...``), file or text |
| ``creds`` / ``creds_text`` | ``NATS_CREDS`` (a file) | ``creds`` | a ``.creds`` file (user JWT and seed), file or text |
| ``tls_ca`` | ``NATS_CA`` | ``ca`` | PEM CA certificates the server's must chain to |
| ``tls_cert``, ``tls_key`` | ``NATS_CERT``, ``NATS_KEY`` | ``cert``, ``key`` | a client certificate and key (mutual TLS) |
| ``tls_first`` | ``NATS_TLS_FIRST=1`` | ``tls_first`` | the TLS handshake before the server's INFO |
| ``inbox_prefix``, ``js_api_prefix`` | | | for accounts that import Fusebox's JetStream (``docs/auth.md``) |

nkeys and creds need the ``nkeys`` package (``pip install 'fusebox-client[nkeys]'``), as
nats-py signs the server's nonce with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlparse

import nats.errors
from nats.aio.client import Client as NatsClient

from .errors import AuthenticationError, ConnectError, ConnectSettingsError, ServerUnreachable, TLSError

__all__ = ["ConnectSettings", "DEFAULT_URL", "connect_nats"]

DEFAULT_URL = "nats://127.0.0.1:4222"
_SCHEMES = ("nats", "tls", "ws", "wss")
#: The environment variables :meth:`ConnectSettings.from_env` reads, per setting.
ENV = {
    "servers": "NATS_URL",
    "user": "NATS_USER",
    "password": "NATS_PASSWORD",
    "token": "NATS_TOKEN",
    "creds": "NATS_CREDS",
    "nkey": "NATS_NKEY",
    "tls_ca": "NATS_CA",
    "tls_cert": "NATS_CERT",
    "tls_key": "NATS_KEY",
    "tls_first": "NATS_TLS_FIRST",
}

ErrorCallback = Callable[[Exception], Awaitable[None]]


def _split(servers: Union[str, Sequence[str], None]) -> Tuple[str, ...]:
    if servers is None:
        return ()
    listed = servers.split(",") if isinstance(servers, str) else list(servers)
    return tuple(s.strip() for s in listed if s and s.strip())


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class ConnectSettings:
    """Where and how to connect. Every field is optional; nothing is read until
    :meth:`nats_options` (or a connect) checks it."""

    servers: Tuple[str, ...] = ()
    user: Optional[str] = None
    password: Optional[str] = None
    token: Optional[str] = None
    #: A file holding an nkey user seed.
    nkey: Optional[str] = None
    #: An nkey user seed itself.
    nkey_seed: Optional[str] = None
    #: A ``.creds`` file.
    creds: Optional[str] = None
    #: The text of a ``.creds`` file.
    creds_text: Optional[str] = None
    tls_ca: Optional[str] = None
    tls_cert: Optional[str] = None
    tls_key: Optional[str] = None
    tls_first: bool = False
    #: The connection's name in the server's monitoring (default ``fusebox-client:<node>``).
    name: Optional[str] = None
    #: How long the first connection may take, in seconds, before :class:`ServerUnreachable`.
    connect_deadline: float = 5.0
    inbox_prefix: Optional[str] = None
    js_api_prefix: Optional[str] = None
    #: Which environment variable or context set each field, for error messages.
    origin: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", _split(self.servers))  # a str or list is accepted too

    def replace(self, **changes: Any) -> "ConnectSettings":
        """A copy with ``changes`` (fields as keywords)."""
        unknown = set(changes).difference(f.name for f in dataclasses.fields(self))
        if unknown:
            raise ConnectSettingsError(", ".join(sorted(unknown)), "no such connection setting")
        origin = {k: v for k, v in self.origin.items() if k not in changes}
        return dataclasses.replace(self, origin=origin, **changes)

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "ConnectSettings":
        """The settings of the ``NATS_*`` environment variables (see the module's table)."""
        env = os.environ if env is None else env
        values: Dict[str, Any] = {}
        origin: Dict[str, str] = {}
        for setting, variable in ENV.items():
            text = env.get(variable, "")
            if not text:
                continue
            origin[setting] = variable
            values[setting] = _truthy(text) if setting == "tls_first" else text
        return cls(origin=origin, **values)

    @classmethod
    def from_context(cls, name: Optional[str] = None, env: Optional[Mapping[str, str]] = None) -> "ConnectSettings":
        """The settings of a nats CLI context (``nats context save``):
        ``$XDG_CONFIG_HOME/nats/context/<name>.json`` (else ``~/.config/nats/...``);
        without ``name``, ``NATS_CONTEXT`` or the one selected in ``context.txt``."""
        env = os.environ if env is None else env
        base = env.get("XDG_CONFIG_HOME") or (os.path.join(env["HOME"], ".config") if env.get("HOME") else None)
        if base is None:
            raise ConnectSettingsError("context", "neither XDG_CONFIG_HOME nor HOME is set")
        directory = Path(base) / "nats"
        if name is None:
            name = env.get("NATS_CONTEXT", "").strip() or None
        if name is None:
            try:
                name = (directory / "context.txt").read_text().strip() or None
            except OSError:
                name = None
        if name is None:
            raise ConnectSettingsError("context", f"no context selected (NATS_CONTEXT, {directory / 'context.txt'})")
        if "/" in name or "\\" in name or name.startswith("."):
            raise ConnectSettingsError("context", f"{name!r} is not a context name")
        path = directory / "context" / f"{name}.json"
        try:
            context = json.loads(path.read_text())
        except OSError as error:
            raise ConnectSettingsError("context", f"cannot read it: {error}", str(path)) from error
        except ValueError as error:
            raise ConnectSettingsError("context", f"not JSON: {error}", str(path)) from error
        if not isinstance(context, dict):
            raise ConnectSettingsError("context", "not a JSON object", str(path))
        fields = {
            "url": "servers",
            "user": "user",
            "password": "password",
            "token": "token",
            "creds": "creds",
            "nkey": "nkey",
            "ca": "tls_ca",
            "cert": "tls_cert",
            "key": "tls_key",
        }
        values: Dict[str, Any] = {}
        origin: Dict[str, str] = {}
        for key, setting in fields.items():
            text = context.get(key)
            if isinstance(text, str) and text:
                values[setting] = text
                origin[setting] = f"context {name} {key}"
        if context.get("tls_first") is True:
            values["tls_first"] = True
        return cls(origin=origin, **values)

    def _name(self, setting: str) -> str:
        return self.origin.get(setting, setting)

    def _readable(self, setting: str, path: str) -> bytes:
        try:
            with open(path, "rb") as file:
                return file.read()
        except OSError as error:
            raise ConnectSettingsError(self._name(setting), f"cannot read it: {error.strerror or error}", path) from error

    def server_list(self) -> List[str]:
        """The servers (the default ``nats://127.0.0.1:4222`` when none is set), each
        checked; :class:`ConnectSettingsError` for an unknown scheme or no host."""
        servers = list(self.servers) or [DEFAULT_URL]
        for url in servers:
            parsed = urlparse(url if "://" in url else f"nats://{url}")
            if parsed.scheme not in _SCHEMES:
                raise ConnectSettingsError(
                    self._name("servers"), f"{url!r}: unknown scheme {parsed.scheme!r} (one of {', '.join(_SCHEMES)})"
                )
            try:
                port = parsed.port
            except ValueError:
                port = -1
            if not parsed.hostname or port == -1:
                raise ConnectSettingsError(self._name("servers"), f"{url!r} is not a URL with a host (and port)")
        return servers

    def _tls(self, servers: Sequence[str]) -> Optional[ssl.SSLContext]:
        if bool(self.tls_cert) != bool(self.tls_key):
            given, missing = ("tls_cert", "tls_key") if self.tls_cert else ("tls_key", "tls_cert")
            raise ConnectSettingsError(self._name(given), f"needs {self._name(missing)} too: a certificate goes with its key")
        secure = any(u.startswith(("tls://", "wss://")) for u in servers)
        if not (self.tls_ca or self.tls_cert or self.tls_first or secure):
            return None
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.tls_ca:
            self._readable("tls_ca", self.tls_ca)
            try:
                context.load_verify_locations(cafile=self.tls_ca)
            except (ssl.SSLError, ValueError) as error:
                raise ConnectSettingsError(self._name("tls_ca"), f"no PEM certificate in it: {error}", self.tls_ca) from error
        if self.tls_cert and self.tls_key:
            self._readable("tls_cert", self.tls_cert)
            self._readable("tls_key", self.tls_key)
            try:
                context.load_cert_chain(self.tls_cert, self.tls_key)
            except (ssl.SSLError, ValueError) as error:
                raise ConnectSettingsError(
                    self._name("tls_cert"), f"not a PEM certificate and key (with {self.tls_key}): {error}", self.tls_cert
                ) from error
        return context

    def _nkey_text(self, setting: str, text: str, path: Optional[str]) -> None:
        seed = text.strip()
        if not (seed.startswith("SU") and len(seed) == 58):
            raise ConnectSettingsError(self._name(setting), "not an nkey user seed (SU..., 58 characters)", path)

    def _creds_check(self, setting: str, text: str, path: Optional[str]) -> None:
        for marker in ("BEGIN NATS USER JWT", "BEGIN USER NKEY SEED"):
            if marker not in text:
                raise ConnectSettingsError(self._name(setting), f"not a .creds file: no '{marker}' section", path)

    def _auth(self) -> Dict[str, Any]:
        modes = [m for m in ("nkey", "nkey_seed", "creds", "creds_text") if getattr(self, m)]
        if len(modes) > 1:
            raise ConnectSettingsError(self._name(modes[1]), f"set with {self._name(modes[0])}: choose one of them")
        if self.password and not self.user:
            raise ConnectSettingsError(self._name("password"), f"given without {self._name('user')}")
        options: Dict[str, Any] = {}
        if self.user:
            options["user"], options["password"] = self.user, self.password or ""
        if self.token:
            options["token"] = self.token
        if modes:
            try:
                import nkeys  # noqa: F401  (nats-py signs with it)
            except ImportError as error:
                raise ConnectSettingsError(
                    self._name(modes[0]),
                    "nkeys and creds need the nkeys package: pip install 'fusebox-client[nkeys]'",
                ) from error
        if self.nkey:
            self._nkey_text("nkey", self._readable("nkey", self.nkey).decode(errors="replace"), self.nkey)
            options["nkeys_seed"] = self.nkey
        if self.nkey_seed:
            self._nkey_text("nkey_seed", self.nkey_seed, None)
            options["nkeys_seed_str"] = self.nkey_seed.strip()
        if self.creds:
            self._creds_check("creds", self._readable("creds", self.creds).decode(errors="replace"), self.creds)
            options["user_credentials"] = self.creds
        if self.creds_text:
            from collections import UserString

            self._creds_check("creds_text", self.creds_text, None)
            # nats-py reads a UserString as the text of a .creds file, not as a path.
            options["user_credentials"] = UserString(self.creds_text)
        return options

    def nats_options(self) -> Dict[str, Any]:
        """Keyword arguments for nats-py's ``Client.connect`` (``servers`` included), after
        checking every setting and reading every file; :class:`ConnectSettingsError` names
        the first one that cannot work."""
        servers = self.server_list()
        options = self._auth()
        options["servers"] = servers
        context = self._tls(servers)
        if context is not None:
            options["tls"] = context
        if self.tls_first:
            options["tls_handshake_first"] = True
        if self.name:
            options["name"] = self.name
        if self.inbox_prefix:
            options["inbox_prefix"] = self.inbox_prefix
        if not self.connect_deadline > 0:
            raise ConnectSettingsError("connect_deadline", f"{self.connect_deadline!r} is not a positive number of seconds")
        return options


def _fatal(error: BaseException) -> Optional[type]:
    """The ConnectError class of an error that retrying cannot cure, if it is one."""
    text = str(error).lower()
    if "authorization violation" in text or "authentication" in text or "user authentication expired" in text:
        return AuthenticationError
    if isinstance(error, ssl.SSLError) or "certificate" in text or "ssl" in text or "tls" in text:
        return TLSError
    return None


async def connect_nats(
    settings: ConnectSettings,
    error_cb: Optional[ErrorCallback] = None,
    **extra: Any,
) -> NatsClient:
    """Connects a nats-py client with ``settings``; it reconnects forever afterwards.

    The first connection is given ``settings.connect_deadline`` seconds. A refused
    credential or a failed TLS handshake ends it at once (:class:`AuthenticationError`,
    :class:`TLSError`), a server that does not answer after the deadline
    (:class:`ServerUnreachable`); each names the servers and the server's or the TLS
    library's words. Later errors go to ``error_cb``.
    """
    options = settings.nats_options()
    servers = tuple(options["servers"])
    loop = asyncio.get_running_loop()
    failed: "asyncio.Future[BaseException]" = loop.create_future()
    errors: List[BaseException] = []
    connected = False

    async def on_error(error: Exception) -> None:
        if not connected:
            errors.append(error)
            if _fatal(error) is not None and not failed.done():
                failed.set_result(error)
            return
        if error_cb is not None:
            await error_cb(error)

    nc = NatsClient()
    options.update(
        error_cb=on_error,
        connect_timeout=min(2.0, settings.connect_deadline),
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        allow_reconnect=True,
    )
    options.update(extra)
    attempt = asyncio.ensure_future(nc.connect(**options))
    done, _ = await asyncio.wait({attempt, failed}, timeout=settings.connect_deadline, return_when=asyncio.FIRST_COMPLETED)
    if attempt in done and attempt.exception() is None:
        connected = True
        return nc
    attempt.cancel()
    try:
        await nc.close()
    except Exception:  # closing a client that never connected: nothing to flush
        pass
    where = ", ".join(servers)
    if attempt in done:
        cause: Optional[BaseException] = attempt.exception()
    elif failed.done():
        cause = failed.result()
    else:
        cause = errors[-1] if errors else None
    assert cause is None or isinstance(cause, BaseException)
    kind = _fatal(cause) if cause is not None else None
    if kind is AuthenticationError:
        raise AuthenticationError(f"{where}: the server refused the credentials: {cause}", servers, cause) from cause
    if kind is TLSError:
        raise TLSError(f"{where}: TLS failed: {cause}", servers, cause) from cause
    if isinstance(cause, nats.errors.Error) and attempt in done:
        raise ConnectError(f"{where}: cannot connect: {cause}", servers, cause) from cause
    last = f": last error: {cause!r}" if cause is not None else ""
    raise ServerUnreachable(
        f"{where}: no NATS server answered within {settings.connect_deadline}s{last}", servers, cause
    ) from cause
