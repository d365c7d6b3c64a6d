"""A real S3 API server on 127.0.0.1 for the tests and the benchmark: moto's standalone server
(moto[server] from PyPI), started as a subprocess on a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "containerarchive-test",
    "AWS_SECRET_ACCESS_KEY": "containerarchive-test-secret",
    "AWS_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def moto_server() -> Iterator[dict[str, str]]:
    """Run the server; yields the environment (credentials, region, endpoint) a client needs."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    # The server logs every request: to a file, never to a pipe nobody reads (it would fill up
    # and block the server).
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    err = log.read().decode(errors="replace")[-2000:]
                    raise RuntimeError(f"the moto server did not start: {err}") from None
                time.sleep(0.1)
        yield {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def client(env: dict[str, str]):  # -> boto3 S3 client
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def make_bucket(env: dict[str, str], name: str) -> None:
    client(env).create_bucket(Bucket=name)


def apply(env: dict[str, str]) -> None:
    """Point this process's S3 clients at the server."""
    os.environ.update(env)
