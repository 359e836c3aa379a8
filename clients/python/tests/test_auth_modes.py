"""The authentication modes beyond tokens, against servers tests/tests/python_client.rs
configured for them: an nkey user, operator-mode creds (and creds the operator never
signed), and mutual TLS with the test CA (and without the client certificate, and without
the CA).
"""

from __future__ import annotations

import asyncio
import os

import pytest

import fusebox_client as fb


def connects(url: str, **settings: object) -> None:
    async def go() -> None:
        settings.setdefault("connect_deadline", 5.0)
        client = await fb.connect(url, node="py1", **settings)
        try:
            assert client.nc.is_connected
            await client.nc.flush(timeout=2)
        finally:
            await client.close()

    asyncio.run(go())


def test_nkey_seed_file_and_text():
    url, seed_file = os.environ["FUSEBOX_TEST_NKEY_URL"], os.environ["FUSEBOX_TEST_NKEY_FILE"]
    connects(url, nkey=seed_file)
    connects(url, nkey_seed=open(seed_file).read())
    with pytest.raises(fb.AuthenticationError):
        connects(url)


def test_creds_file_and_text_and_a_stranger():
    url, creds = os.environ["FUSEBOX_TEST_CREDS_URL"], os.environ["FUSEBOX_TEST_CREDS_FILE"]
    connects(url, creds=creds)
    connects(url, creds_text=open(creds).read())
    with pytest.raises(fb.AuthenticationError):
        connects(url, creds=os.environ["FUSEBOX_TEST_STRANGER_CREDS"])


def test_mutual_tls():
    url = os.environ["FUSEBOX_TEST_TLS_URL"]
    ca, cert, key = (os.environ[f"FUSEBOX_TEST_TLS_{v}"] for v in ("CA", "CERT", "KEY"))
    connects(url, tls_ca=ca, tls_cert=cert, tls_key=key)
    with pytest.raises(fb.TLSError) as untrusted:
        connects(url, tls_cert=cert, tls_key=key)
    assert "CERTIFICATE_VERIFY_FAILED" in str(untrusted.value)
    # Without the client certificate the server ends the handshake.
    with pytest.raises(fb.ConnectError) as refused:
        connects(url, tls_ca=ca, connect_deadline=2.0)
    assert url in str(refused.value)
