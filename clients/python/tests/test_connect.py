"""Connection settings: what cannot work fails before connecting with the setting named
(ConnectSettingsError), and a server that refuses or is not there gives a typed,
explained ConnectError. Run against the token server of tests/tests/python_client.rs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time

import pytest

import fusebox_client as fb


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_right_token_connects(url):
    async def go():
        client = await fb.connect(url, node="py1", token=os.environ["FUSEBOX_TEST_TOKEN"])
        assert client.nc.is_connected
        await client.close()

    run(go())


def test_a_wrong_token_is_an_authentication_error_at_once(url):
    started = time.monotonic()
    with pytest.raises(fb.AuthenticationError) as error:
        run(fb.connect(url, node="py1", token="guess", settings=fb.ConnectSettings(connect_deadline=5)))
    assert "Authorization Violation" in str(error.value) and url in str(error.value)
    assert time.monotonic() - started < 4, "not the whole deadline"


def test_no_server_is_server_unreachable_after_the_deadline():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(fb.ServerUnreachable) as error:
        run(fb.connect(f"nats://127.0.0.1:{port}", node="py1", connect_deadline=1.0))
    assert f"127.0.0.1:{port}" in str(error.value) and "1.0s" in str(error.value)


@pytest.mark.parametrize(
    "settings, names",
    [
        (fb.ConnectSettings(tls_ca="/nonexistent/ca.pem"), "tls_ca=/nonexistent/ca.pem"),
        (fb.ConnectSettings(tls_cert="/tmp/x.pem"), "tls_cert"),
        (fb.ConnectSettings(servers="http://127.0.0.1:4222"), "unknown scheme"),
        (fb.ConnectSettings(nkey_seed="not-a-seed"), "nkey_seed"),
        (fb.ConnectSettings(creds_text="garbage"), "not a .creds file"),
        (fb.ConnectSettings(password="p"), "given without user"),
        (fb.ConnectSettings.from_env({"NATS_NKEY": "/nonexistent/u.nk"}), "NATS_NKEY=/nonexistent/u.nk"),
    ],
)
def test_bad_settings_are_named_before_connecting(settings, names):
    with pytest.raises(fb.ConnectSettingsError) as error:
        run(fb.connect(node="py1", settings=settings))
    assert names in str(error.value)
    assert isinstance(error.value, ValueError) and isinstance(error.value, fb.FuseboxError)


def test_from_env_reads_every_variable(tmp_path):
    settings = fb.ConnectSettings.from_env(
        {"NATS_URL": "nats://a:1, tls://b:2", "NATS_TOKEN": "t", "NATS_TLS_FIRST": "1", "NATS_USER": "u"}
    )
    assert settings.servers == ("nats://a:1", "tls://b:2")
    assert (settings.token, settings.tls_first, settings.user) == ("t", True, "u")
