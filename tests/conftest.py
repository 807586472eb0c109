"""Shared fixtures: stores on a local folder and on a real S3 endpoint on 127.0.0.1.

The S3 endpoint is moto's server, started once per test session as a separate process;
every test that asks for an S3 store gets a bucket of its own.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

import lakestore

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "lakestore-test",
    "AWS_SECRET_ACCESS_KEY": "lakestore-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="session", autouse=True)
def _commands_of_this_interpreter() -> Iterator[None]:
    """Run the ``lakestore`` command installed beside the Python running the tests, not
    another installation that comes first on PATH."""
    path = os.environ.get("PATH", "")
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + path
    yield
    os.environ["PATH"] = path


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of an S3 server on loopback, running for the whole test session."""
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    deadline = time.monotonic() + 30
    endpoint = None
    while endpoint is None and time.monotonic() < deadline:
        line = server.stdout.readline()
        if not line and server.poll() is not None:
            break
        match = re.search(r"Running on (http://127\.0\.0\.1:\d+)", line)
        if match:
            endpoint = match.group(1)
    if endpoint is None:
        server.kill()
        pytest.fail("the moto S3 server did not start: pip install 'moto[server]'")
    # Keep reading its log so that the pipe never fills up and blocks the server.
    threading.Thread(target=server.stdout.read, daemon=True).start()
    yield endpoint
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the standard AWS variables (inherited by child processes) at the endpoint."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


def make_bucket(endpoint: str) -> str:
    """A new empty bucket on the endpoint; returns its name."""
    import s3fs

    bucket = f"test-{uuid.uuid4().hex[:16]}"
    s3fs.S3FileSystem(
        key=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        endpoint_url=endpoint,
    ).mkdir(bucket)
    return bucket


def fresh_store_uri(backend: str, request: pytest.FixtureRequest) -> str:
    """A new, empty store location on ``backend`` ("local" or "s3")."""
    if backend == "local":
        return str(request.getfixturevalue("tmp_path") / uuid.uuid4().hex)
    endpoint = request.getfixturevalue("s3_env")
    return f"s3://{make_bucket(endpoint)}/team/store"


@pytest.fixture(params=["local", "s3"])
def store_uri(request: pytest.FixtureRequest) -> str:
    """A fresh, empty store location: a local folder, then an S3 prefix."""
    return fresh_store_uri(request.param, request)


@pytest.fixture(autouse=True)
def _no_leftover_runs() -> Iterator[None]:
    """End runs a failing test left open, so that tests stay independent."""
    yield
    lakestore.reset()
