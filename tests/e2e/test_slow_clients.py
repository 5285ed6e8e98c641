"""Slow clients against a real ``modelreg serve`` (gunicorn gthread): what the server
itself guarantees, and what the buffering reverse proxy of ``docker/nginx.conf`` adds.

The proxy tests run Debian's ``nginx`` (``.ci/run`` installs it) with that file, its
``${LISTEN}`` and ``${UPSTREAM}`` placeholders replaced, in front of a real server:
nginx reads whole requests before gunicorn sees them, so the connections that hold
every gunicorn thread when they reach it directly hold nothing through the proxy.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from modelreg.client import PreconditionRequired, Registry
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    Server,
    ServerProcess,
    StartServer,
    TimeoutSession,
    free_port,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
NGINX_CONF = ROOT / "docker" / "nginx.conf"
WORKERS, THREADS = 2, 2
# Twice as many connections as threads would do if gunicorn's workers shared them
# evenly, but each new connection goes to whichever worker accepts it first: four
# times as many, opened one by one, leave every worker with all its threads held.
SLOW = WORKERS * THREADS * 4
HEALTHZ_TIMEOUT_S = 10.0
NGINX_READY_S = 10.0


def slow_connections(url: str, count: int, first: bytes) -> list[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    conns = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=5)
        if first:
            s.sendall(first)
        conns.append(s)
        time.sleep(0.02)  # each connection is accepted on its own, by either worker
    return conns


def healthz_seconds(url: str) -> float:
    """How long ``GET /healthz`` takes; infinite when it has no answer within 10 s."""
    started = time.monotonic()
    try:
        response = requests.get(f"{url}/healthz", timeout=HEALTHZ_TIMEOUT_S)
    except requests.Timeout:
        return float("inf")
    assert response.status_code == 200
    return time.monotonic() - started


def idle(url: str) -> list[socket.socket]:
    """``SLOW`` connections that send nothing."""
    return slow_connections(url, SLOW, b"")


def trickling(url: str) -> list[socket.socket]:
    """``SLOW`` connections whose request headers have begun and keep coming, a byte
    at a time."""
    conns = slow_connections(url, SLOW, b"GET /healthz HTTP/1.1\r\nX-A: ")
    time.sleep(0.5)
    for s in conns:
        s.sendall(b"a")
    return conns


def close_all(conns: list[socket.socket]) -> None:
    for s in conns:
        s.close()


# -- the server alone ----------------------------------------------------------------------


@pytest.mark.xfail(
    reason="gunicorn 27's gthread worker lets a new connection hold a thread for up to 5 s"
    " waiting for its first byte: the deployment answer is a reverse proxy (docs/how-to/deploy.md)",
    strict=True,
)
def test_idle_connections_as_many_as_threads_do_not_hold_up_the_health_check(
    start_server: StartServer,
) -> None:
    server = start_server(workers=WORKERS, threads=THREADS)
    conns = idle(server.url)
    try:
        time.sleep(0.5)
        assert healthz_seconds(server.url) < 2.0
    finally:
        close_all(conns)


@pytest.mark.xfail(
    reason="a request whose headers trickle in holds a gthread thread until they end: "
    "the deployment answer is a reverse proxy that buffers requests (docs/how-to/deploy.md)",
    strict=True,
)
def test_connections_trickling_their_headers_do_not_hold_up_the_health_check(
    start_server: StartServer,
) -> None:
    server = start_server(workers=WORKERS, threads=THREADS)
    conns = trickling(server.url)
    try:
        assert healthz_seconds(server.url) < 2.0
    finally:
        close_all(conns)


# -- behind docker/nginx.conf --------------------------------------------------------------


def nginx_binary() -> str:
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed and CI is set (.ci/run installs it)")
        pytest.skip("nginx is not installed (apt-get install nginx)")
    return found


def render_nginx_conf(listen: str, upstream: str) -> str:
    """``docker/nginx.conf`` with its placeholders replaced, as envsubst would."""
    text = NGINX_CONF.read_text()
    for name, value in (("LISTEN", listen), ("UPSTREAM", upstream)):
        assert f"${{{name}}}" in text, f"docker/nginx.conf lost its ${{{name}}} placeholder"
        text = text.replace(f"${{{name}}}", value)
    assert "${" not in text, "docker/nginx.conf has a placeholder this test does not fill"
    return text


def start_nginx(upstream: str, base: Path) -> ServerProcess:
    """nginx with ``docker/nginx.conf`` in front of ``upstream`` (host:port), everything
    of it (prefix, temporary files, pid, logs) under ``base``; ready when its pid file
    exists (written only once it listens) and ``/healthz`` answers through it."""
    binary = nginx_binary()
    # pytest's temporary directories are root's alone (0700): as root, nginx's workers
    # (nobody, by default) could not write the request bodies they buffer under ``base``.
    user = "user root;" if os.geteuid() == 0 else ""
    for attempt in range(3):  # another process may take the free port first
        prefix = base / f"nginx-{attempt}"
        prefix.mkdir(parents=True)
        port = free_port()
        conf = prefix / "nginx.conf"
        conf.write_text(render_nginx_conf(f"127.0.0.1:{port}", upstream))
        pid_file = prefix / "nginx.pid"
        log_path = prefix / "nginx.log"
        command = [binary, "-e", "stderr", "-p", str(prefix), "-c", str(conf)]
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [*command, "-g", f"daemon off; pid {pid_file}; {user}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # master and workers stop together (killpg)
            )
        proxy = ServerProcess(process, f"http://127.0.0.1:{port}", log_path)
        deadline = time.monotonic() + NGINX_READY_S
        while time.monotonic() < deadline and process.poll() is None:
            if pid_file.is_file():
                try:
                    if requests.get(f"{proxy.url}/healthz", timeout=2).status_code == 200:
                        return proxy
                except requests.RequestException:
                    pass
            time.sleep(0.05)
        proxy.stop()
        if "Address already in use" not in proxy.log() or attempt == 2:
            pytest.fail(f"nginx did not start in front of {upstream}\n{proxy.log()}")
    raise AssertionError("unreachable")


@pytest.fixture
def proxied(start_server: StartServer, tmp_path: Path) -> Iterator[Server]:
    """A server (the slow-client tests' workers and threads) reached only through
    nginx: the same :class:`Server`, its ``url`` nginx's."""
    server = start_server(workers=WORKERS, threads=THREADS)
    proxy = start_nginx(server.url.removeprefix("http://"), tmp_path)
    try:
        yield dataclasses.replace(server, url=proxy.url)
    finally:
        proxy.stop()


def test_idle_connections_to_the_proxy_do_not_hold_up_the_health_check(
    proxied: Server,
) -> None:
    conns = idle(proxied.url)
    try:
        time.sleep(0.5)
        # Past the 5 s a new connection may hold a gthread thread, too: none reached it.
        times = [healthz_seconds(proxied.url) for _ in range(3)]
        assert max(times) < 2.0, times
        time.sleep(5.0)
        assert healthz_seconds(proxied.url) < 2.0
    finally:
        close_all(conns)


def test_connections_trickling_their_headers_to_the_proxy_do_not_hold_up_the_health_check(
    proxied: Server,
) -> None:
    conns = trickling(proxied.url)
    try:
        times = [healthz_seconds(proxied.url) for _ in range(3)]
        assert max(times) < 2.0, times
        for s in conns:
            s.sendall(b"a")
        assert healthz_seconds(proxied.url) < 2.0
    finally:
        close_all(conns)


def test_the_api_works_through_the_proxy_with_uploads_conditional_requests_and_tokens(
    proxied: Server, tmp_path: Path
) -> None:
    content = os.urandom(3 * 1024 * 1024 + 5)  # past nginx's in-memory body buffer
    digest = hashlib.sha256(content).hexdigest()
    proxied.expect(proxied.session.post(proxied.api("/models"), json={"name": "Proxied"}), 201)
    proxied.expect(
        proxied.session.post(proxied.api("/models/Proxied/versions"), json={"version": "1.0"}),
        201,
    )
    run = proxied.expect(proxied.register_run("Proxied", "1.0", content, {"params": {}}), 201)
    assert run["artifact"]["sha256"] == digest

    with Registry(proxied.url, ADMIN_TOKEN, timeout=60) as registry:
        assert registry.run(run["id"]).sha256 == digest
        out = registry.download_artifact(run["id"], tmp_path / "back.bin")
        assert out.read_bytes() == content

        # If-None-Match reaches the server: a 304, no body.
        artifact = proxied.api(f"/runs/{run['id']}/artifact")
        unchanged = proxied.session.get(artifact, headers={"If-None-Match": f'"{digest}"'})
        assert (unchanged.status_code, unchanged.content) == (304, b"")

        # If-Match reaches the server: a policy's second revision needs it.
        registry.register_dataset("proxy-set", hashlib.sha256(b"proxy").hexdigest())
        registry.put_environment("PROD")
        policy = {"metric": "f1", "dataset": "proxy-set"}
        first = registry.put_policy("PROD", "Proxied", reason="first", **policy)
        wider = {**policy, "versions": ">=1.0"}
        with pytest.raises(PreconditionRequired):
            registry.put_policy("PROD", "Proxied", reason="wider", **wider)
        second = registry.put_policy(
            "PROD", "Proxied", reason="wider", if_match=first.revision, **wider
        )
        assert second.revision == first.revision + 1

    # The token is passed: no token is a 401 from modelreg, in its error shape.
    anonymous = TimeoutSession(token=None)
    refused = anonymous.get(proxied.api("/models"))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"


def test_the_proxy_serves_nothing_but_modelregs_routes(proxied: Server) -> None:
    for path in ("/", "/index.html", "/nginx_status", "/api/v2/models", "/healthz/x"):
        response = proxied.session.get(f"{proxied.url}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found", path
