"""TLS between Cube's components, for real on loopback.

`cube tls` makes a CA and certificates; a manager and a worker run as real processes
serving HTTPS with them, the manager (its clients and its liveness probe) verifying the
worker against the CA; a task submitted over HTTPS runs; plain HTTP and a client without
the CA are refused; and the worker refuses an order carrying only the client token.
In-process servers use certificates from trustme.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import bottle
import pytest
import requests
import trustme
from cryptography import x509
from helpers import cube_process, eventually, free_port, kill

from cube.client import ManagerClient, Unreachable, WorkerClient
from cube.cluster import LocalCluster
from cube.http import Server, json_app
from cube.manager.probe import Prober
from cube.task import State
from cube.tls import CA_ENV, CERT_ENV, KEY_ENV, ServerTLS

MANAGER, CLIENT = "manager-t0ken", "client-t0ken"


def cube(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cube", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


# ------------------------------------------------------------------ cube tls


def test_cube_tls_makes_a_ca_and_certificates_it_signs(tmp_path):
    made = cube("tls", "ca", "create", "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    assert f"{CA_ENV}=" in made.stdout
    made = cube(
        "tls",
        "cert",
        "create",
        "--ca",
        str(tmp_path),
        "--name",
        "worker-1",
        "--hosts",
        "127.0.0.1,localhost,worker-1.cube.test",
    )
    assert made.returncode == 0, made.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "cube-ca.pem").read_bytes())
    leaf = x509.load_pem_x509_certificate((tmp_path / "worker-1.pem").read_bytes())
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "worker-1.cube.test"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for key in ("cube-ca-key.pem", "worker-1-key.pem"):
        assert stat.S_IMODE((tmp_path / key).stat().st_mode) == 0o600, key


def test_cube_tls_refuses_to_overwrite_and_names_bad_input(tmp_path):
    assert cube("tls", "ca", "create", "--dir", str(tmp_path)).returncode == 0
    before = (tmp_path / "cube-ca.pem").read_bytes()
    again = cube("tls", "ca", "create", "--dir", str(tmp_path))
    assert again.returncode == 1 and "exists already" in again.stderr
    assert (tmp_path / "cube-ca.pem").read_bytes() == before
    bad = cube("tls", "cert", "create", "--ca", str(tmp_path), "--name", "w", "--hosts", "a b")
    assert bad.returncode == 2 and "'a b'" in bad.stderr and "hosts" in bad.stderr
    bad = cube("tls", "cert", "create", "--ca", str(tmp_path), "--name", "../w")
    assert bad.returncode == 2 and "name" in bad.stderr
    nowhere = cube("tls", "cert", "create", "--ca", str(tmp_path / "none"), "--name", "w")
    assert nowhere.returncode == 1 and "no CA in" in nowhere.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cube-ca-key.pem", "cube-ca.pem"]


# ------------------------------------------------------------------ a manager and a worker


@pytest.fixture
def secured(tmp_path) -> Iterator[dict[str, str]]:
    """A worker and a manager, real processes serving HTTPS with certificates made by
    `cube tls`, with separate manager and client tokens; stopped (tasks too) after."""
    tls = tmp_path / "tls"
    assert cube("tls", "ca", "create", "--dir", str(tls)).returncode == 0
    for name in ("worker-1", "manager"):
        made = cube("tls", "cert", "create", "--ca", str(tls), "--name", name)
        assert made.returncode == 0, made.stderr

    def env(name: str) -> dict[str, str]:
        return {
            CERT_ENV: str(tls / f"{name}.pem"),
            KEY_ENV: str(tls / f"{name}-key.pem"),
            CA_ENV: str(tls / "cube-ca.pem"),
            "CUBE_MANAGER_TOKEN": MANAGER,
            "CUBE_CLIENT_TOKEN": CLIENT,
        }

    wport, mport = free_port(), free_port()
    procs = []
    try:
        procs.append(
            cube_process(
                "worker",
                "--port",
                str(wport),
                "--name",
                "worker-1",
                "--runtime",
                "process",
                "--data-dir",
                str(tmp_path),
                "--stop-tasks-on-exit",
                log=tmp_path / "worker.log",
                env=env("worker-1"),
            )
        )
        procs.append(
            cube_process(
                "manager",
                "--port",
                str(mport),
                "--workers",
                f"127.0.0.1:{wport}",
                "--data-dir",
                str(tmp_path),
                "--update-interval",
                "0.3",
                "--health-interval",
                "0.5",
                log=tmp_path / "manager.log",
                env=env("manager"),
            )
        )
        ca = str(tls / "cube-ca.pem")
        for port, proc in ((wport, procs[0]), (mport, procs[1])):
            eventually(
                lambda p=port, c=proc: (
                    c.poll() is None
                    and requests.get(f"https://127.0.0.1:{p}/health", verify=ca, timeout=1).ok
                ),
                30,
                f"https on {port}",
            )
        yield {"ca": ca, "worker": f"127.0.0.1:{wport}", "manager": f"127.0.0.1:{mport}"}
    finally:
        for proc in reversed(procs):
            kill(proc, signal.SIGTERM)


def test_a_task_submitted_over_https_runs(secured, monkeypatch):
    monkeypatch.setenv(CA_ENV, secured["ca"])
    manager = ManagerClient(secured["manager"], token=CLIENT)
    assert manager.url.startswith("https://")  # a bare address means https with a CA
    task = manager.submit({"Name": "web", "Image": "cube/echo", "HealthCheck": "/health"})
    running = eventually(
        lambda: manager.task(str(task.id)).state is State.Running, 30, "the task running"
    )
    assert running
    expected = [(secured["worker"], f"https://{secured['worker']}", "up")]
    eventually(  # the manager reaches its worker over https, its liveness probe included
        lambda: [(n["Name"], n["Api"], n["State"]) for n in manager.nodes()] == expected,
        30,
        "the worker up, over https",
    )
    worker = WorkerClient(secured["worker"], token=CLIENT)
    assert [t.id for t in worker.tasks()] == [task.id]  # the client token reads a worker
    trusted = {CA_ENV: secured["ca"], "CUBE_CLIENT_TOKEN": CLIENT}
    status = cube("status", "--manager", secured["manager"], env=trusted)
    assert status.returncode == 0, status.stderr
    assert str(task.id)[:8] in status.stdout and "Running" in status.stdout
    manager.stop(str(task.id))
    eventually(lambda: worker.tasks()[0].state is State.Completed, 30, "the task stopped")


def test_the_worker_refuses_an_order_with_only_the_client_token(secured, monkeypatch):
    monkeypatch.setenv(CA_ENV, secured["ca"])
    url = f"https://{secured['worker']}/tasks"
    task = {"Name": "web", "Image": "cube/echo"}
    refused = requests.post(
        url, json=task, headers={"Authorization": f"Bearer {CLIENT}"}, verify=secured["ca"]
    )
    assert refused.status_code == 403
    assert "CUBE_MANAGER_TOKEN" in refused.json()["Message"]
    assert WorkerClient(secured["worker"], token=CLIENT).tasks() == []  # nothing changed


def test_plain_http_and_a_client_without_the_ca_are_refused(secured, monkeypatch):
    for name in ("worker", "manager"):
        address = secured[name]
        plain = requests.get(f"http://{address}/health", timeout=5)
        assert plain.status_code == 400
        assert "HTTPS only" in plain.json()["Message"]
        task = {"Name": "web", "Image": "cube/echo"}
        bearer = {"Authorization": f"Bearer {CLIENT}"}
        plain = requests.post(f"http://{address}/tasks", json=task, headers=bearer, timeout=5)
        assert plain.status_code == 400  # and nothing was submitted:
    monkeypatch.setenv(CA_ENV, secured["ca"])
    assert ManagerClient(secured["manager"], token=CLIENT).tasks() == []
    for name in ("worker", "manager"):
        address = secured[name]
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(f"https://{address}/health", timeout=5, verify=True)
        answer = requests.get(f"https://{address}/health", timeout=5, verify=secured["ca"])
        assert answer.status_code == 200  # still serving


# ------------------------------------------------------------------ in process (trustme)


@pytest.fixture
def ca(tmp_path, monkeypatch) -> trustme.CA:
    authority = trustme.CA()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv(CA_ENV, str(tmp_path / "ca.pem"))
    return authority


@pytest.fixture
def server_tls(ca, tmp_path) -> ServerTLS:
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "leaf.pem"))
    return ServerTLS(tmp_path / "leaf.pem", tmp_path / "leaf.pem")


def hello_app() -> bottle.Bottle:
    app = json_app("hello")

    @app.get("/health")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/echo")
    def echo() -> bytes:
        return bottle.request.body.read()

    return app


def test_a_silent_connection_does_not_hold_up_the_handshakes_of_others(server_tls, ca):
    """cheroot's own TLS shakes hands in its accepting thread; here a client that
    connects and sends nothing cannot keep others waiting."""
    with Server(hello_app(), tls=server_tls, request_timeout=30) as server:
        silent = [socket.create_connection((server.host, server.port)) for _ in range(5)]
        try:
            with requests.Session() as session:
                for _ in range(3):
                    answer = session.get(
                        f"{server.url}/health", timeout=2, verify=os.environ[CA_ENV]
                    )
                    assert answer.json() == {"ok": True}
                big = b"x" * 300_000  # many TLS records, read whole before it is served
                echoed = session.post(
                    f"{server.url}/echo", data=big, timeout=5, verify=os.environ[CA_ENV]
                )
                assert echoed.content == big
        finally:
            for sock in silent:
                sock.close()


def test_a_half_made_handshake_times_out_like_a_slow_request(server_tls):
    with Server(hello_app(), tls=server_tls, request_timeout=0.5) as server:
        sock = socket.create_connection((server.host, server.port))
        sock.settimeout(10)
        try:
            assert sock.recv(1) == b""  # closed by the server, not left hanging
        except ConnectionResetError:
            pass
        finally:
            sock.close()


def test_the_liveness_probe_verifies_the_worker(server_tls, ca, monkeypatch):
    with Server(hello_app(), tls=server_tls) as server:
        assert server.url.startswith("https://")
        address = f"127.0.0.1:{server.port}"
        prober = Prober(address, None, timeout=5)
        assert prober.get("/health") == {"ok": True}
        assert prober.get("/health") == {"ok": True}  # on the kept-alive connection
        prober.close()
        other = trustme.CA()
        path = Path(os.environ[CA_ENV]).with_name("other.pem")
        other.cert_pem.write_to_path(str(path))
        monkeypatch.setenv(CA_ENV, str(path))
        stranger = Prober(address, None, timeout=5)
        with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
            stranger.get("/health")
        stranger.close()


def test_tls_settings_must_come_in_pairs(monkeypatch):
    monkeypatch.setenv(CERT_ENV, "/nowhere.pem")
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(ValueError, match=KEY_ENV):
        ServerTLS.from_env()
    monkeypatch.delenv(CERT_ENV)
    assert ServerTLS.from_env() is None
    assert ssl.TLSVersion.TLSv1_2  # the floor the contexts set


# ------------------------------------------------------------------ cube up --tls


def test_a_local_cluster_with_tls_runs_a_task(tmp_path):
    with LocalCluster(workers=1, runtime="process", data_dir=tmp_path / "c", tls=True) as cluster:
        assert cluster.manager.url.startswith("https://")
        task = cluster.client.submit({"Name": "web", "Image": "cube/echo"})
        eventually(lambda: cluster.client.task(str(task.id)).state is State.Running, 30, "running")
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"{cluster.manager.url}/health", timeout=5, verify=True)
        assert cluster.client.with_timeout(2).task(str(task.id)).id == task.id  # trusts too
        worker = cluster.worker_client("worker-1")
        assert [t.id for t in worker.tasks()] == [task.id]
