"""Shared fixtures of the fusebox-client tests: the server the Rust harness started
(tests/tests/python_client.rs sets ``FUSEBOX_TEST_NATS_URL`` and ``FUSEBOX_TEST_BREAKER``),
and the outcome JSON Schema every message the reporter builds is validated against.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any, Callable, Dict

import jsonschema
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]


def outcome_schema() -> Dict[str, Any]:
    """``schemas/outcome-v1.schema.json``: the schema the decoder is checked against
    (transport-nats/tests/schemas.rs)."""
    return json.loads((ROOT / "schemas" / "outcome-v1.schema.json").read_text())


@pytest.fixture(scope="session")
def validate() -> Callable[[bytes], Dict[str, Any]]:
    schema = outcome_schema()
    validator = jsonschema.Draft202012Validator(schema)

    def check(payload: bytes) -> Dict[str, Any]:
        message = json.loads(payload)
        validator.validate(message)
        return message

    return check


def _env(name: str) -> str:
    value = os.environ.get(name)
    assert value, f"{name} is not set: run these tests through `cargo test -p fusebox-tests --test end_to_end python_client::`"
    return value


@pytest.fixture
def url() -> str:
    return _env("FUSEBOX_TEST_NATS_URL")


@pytest.fixture
def breaker_name() -> str:
    return _env("FUSEBOX_TEST_BREAKER")
