"""How the Fusebox Python examples connect to NATS: servers, credentials and TLS from the
environment, as nats-py options. Standard library plus nats-py; copy it along with the
examples.

| variable | nats-py option | meaning |
|---|---|---|
| ``NATS_URL`` | servers | comma-separated URLs, when ``--url`` is not given |
| ``NATS_USER``, ``NATS_PASSWORD`` | ``user``, ``password`` | when ``--user`` is not given |
| ``NATS_TOKEN`` | ``token`` | a token |
| ``NATS_CREDS`` | ``user_credentials`` | a ``.creds`` file (user JWT and nkey seed) |
| ``NATS_NKEY`` | ``nkeys_seed`` | a file holding an nkey user seed |
| ``NATS_CA`` | ``tls`` | PEM file of the CA certificates the server's must chain to |
| ``NATS_CERT``, ``NATS_KEY`` | ``tls`` | a client certificate and its key (mutual TLS) |
| ``NATS_TLS_FIRST`` | ``tls_handshake_first`` | ``1``: the TLS handshake first |

``NATS_CREDS`` and ``NATS_NKEY`` need nats-py's nkeys support (``pip install
'nats-py[nkeys]'``). A file that cannot be read is a :class:`ConnectSettingsError` naming
the variable and the file, raised before anything connects.
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Dict, List, Mapping, Optional

DEFAULT_URL = "nats://127.0.0.1:4222"


class ConnectSettingsError(Exception):
    """A connection setting from the environment that cannot be used."""


def servers(url: Optional[str], env: Mapping[str, str] = os.environ) -> List[str]:
    """The servers of ``url`` (comma-separated), else of ``NATS_URL``, else the default."""
    for candidate in (url, env.get("NATS_URL"), DEFAULT_URL):
        listed = [u.strip() for u in (candidate or "").split(",") if u.strip()]
        if listed:
            return listed
    return [DEFAULT_URL]


def _readable(variable: str, path: str) -> str:
    try:
        with open(path, "rb"):
            pass
    except OSError as error:
        raise ConnectSettingsError(f"{variable}={path}: cannot read it: {error}") from error
    return path


def options_from_env(
    user: Optional[str] = None, password: Optional[str] = None, env: Mapping[str, str] = os.environ
) -> Dict[str, Any]:
    """Keyword arguments for ``nats.connect``: ``user``/``password`` if given, else the
    environment's, and the credentials and TLS of the variables above."""
    options: Dict[str, Any] = {}
    user = user or env.get("NATS_USER") or None
    password = password or env.get("NATS_PASSWORD") or None
    if user is not None:
        options["user"], options["password"] = user, password
    if env.get("NATS_TOKEN"):
        options["token"] = env["NATS_TOKEN"]
    if env.get("NATS_CREDS"):
        options["user_credentials"] = _readable("NATS_CREDS", env["NATS_CREDS"])
    if env.get("NATS_NKEY"):
        options["nkeys_seed"] = _readable("NATS_NKEY", env["NATS_NKEY"])
    ca, cert, key = env.get("NATS_CA"), env.get("NATS_CERT"), env.get("NATS_KEY")
    if bool(cert) != bool(key):
        raise ConnectSettingsError("NATS_CERT and NATS_KEY go together: one is set, the other is not")
    if ca or cert:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        try:
            if ca:
                context.load_verify_locations(cafile=_readable("NATS_CA", ca))
            if cert and key:
                context.load_cert_chain(_readable("NATS_CERT", cert), _readable("NATS_KEY", key))
        except ssl.SSLError as error:
            raise ConnectSettingsError(f"NATS_CA/NATS_CERT/NATS_KEY: not PEM certificates or keys: {error}") from error
        options["tls"] = context
    if env.get("NATS_TLS_FIRST", "") not in ("", "0", "false"):
        options["tls_handshake_first"] = True
    return options
