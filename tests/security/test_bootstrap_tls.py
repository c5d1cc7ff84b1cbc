"""Secure by default on a network address (generated admin token), --insecure, TLS and mTLS
with certificates made by the test, and Redis with a password."""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import stat
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from appliance.api.server import QueueServer
from appliance.auth import STATE_FILE, TOKEN_FILE, hash_token
from appliance.config import Settings
from appliance.proto import queue_pb2 as pb
from appliance.proto import queue_pb2_grpc as pb_grpc
from appliance.store import Store, connect
from tests.redis_server import RedisServer


async def start(settings: Settings) -> tuple[QueueServer, Store]:
    store = Store(connect(settings), settings)
    server = QueueServer(settings, store)
    await server.start()
    return server, store


async def stats(
    target: str,
    token: str | None = None,
    creds: grpc.ChannelCredentials | None = None,
    options: tuple[tuple[str, str], ...] = (),
) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    channel = (
        grpc.aio.secure_channel(target, creds, options)
        if creds
        else grpc.aio.insecure_channel(target)
    )
    async with channel:
        try:
            await pb_grpc.DelayQueueServiceStub(channel).GetStats(
                pb.GetStatsRequest(), metadata=metadata, timeout=5
            )
        except grpc.aio.AioRpcError as err:
            return err.code()
    return grpc.StatusCode.OK


async def test_network_address_without_tokens_generates_an_admin_token(
    settings: Settings, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    exposed = settings.replace(grpc_addr="0.0.0.0:0", data_dir=str(tmp_path))
    server, store = await start(exposed)
    try:
        token = (tmp_path / TOKEN_FILE).read_text().strip()
        assert stat.S_IMODE(os.stat(tmp_path / TOKEN_FILE).st_mode) == 0o600
        state = (tmp_path / STATE_FILE).read_text()
        assert token not in state and hash_token(token) in state
        assert token in capsys.readouterr().err  # announced once, with how to use it
        target = f"127.0.0.1:{server.port}"
        assert await stats(target) == grpc.StatusCode.UNAUTHENTICATED
        assert await stats(target, token) == grpc.StatusCode.OK
    finally:
        await server.stop(0.5)
        await store.close()
    again, store = await start(exposed)  # a restart keeps the same token and says nothing
    try:
        assert (tmp_path / TOKEN_FILE).read_text().strip() == token
        assert token not in capsys.readouterr().err
        assert await stats(f"127.0.0.1:{again.port}", token) == grpc.StatusCode.OK
    finally:
        await again.stop(0.5)
        await store.close()


async def test_loopback_and_insecure_stay_open(settings: Settings, tmp_path: Path) -> None:
    for variant in (
        settings.replace(data_dir=str(tmp_path)),
        settings.replace(grpc_addr="0.0.0.0:0", data_dir=str(tmp_path), insecure=True),
    ):
        server, store = await start(variant)
        try:
            assert await stats(f"127.0.0.1:{server.port}") == grpc.StatusCode.OK
        finally:
            await server.stop(0.5)
            await store.close()
    assert not (tmp_path / TOKEN_FILE).exists()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    ca: bool = False,
    days: float = 1,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=max(-days, 0) + 1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca_key = _key()
    ca = _cert("atp test CA", ca_key, ca=True)
    server_key, client_key = _key(), _key()
    files = {
        "ca": _pem(ca),
        "server.crt": _pem(_cert("localhost", server_key, (ca, ca_key))),
        "server.key": _pem(server_key),
        "client.crt": _pem(_cert("worker-1", client_key, (ca, ca_key))),
        "client.key": _pem(client_key),
    }
    out = {}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        out[name] = tmp_path / name
    return out


async def test_tls_and_mutual_tls(settings: Settings, pki: dict[str, Path]) -> None:
    options = (("grpc.ssl_target_name_override", "localhost"),)
    tls = settings.replace(
        tls_cert_file=str(pki["server.crt"]), tls_key_file=str(pki["server.key"])
    )
    server, store = await start(tls)
    try:
        target = f"127.0.0.1:{server.port}"
        creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        assert await stats(target, creds=creds, options=options) == grpc.StatusCode.OK
        assert await stats(target) == grpc.StatusCode.UNAVAILABLE  # plaintext to a TLS port
    finally:
        await server.stop(0.5)
        await store.close()
    mtls = tls.replace(tls_client_ca_file=str(pki["ca"]))
    server, store = await start(mtls)
    try:
        target = f"127.0.0.1:{server.port}"
        without = grpc.ssl_channel_credentials(root_certificates=pki["ca"].read_bytes())
        assert await stats(target, creds=without, options=options) == grpc.StatusCode.UNAVAILABLE
        with_cert = grpc.ssl_channel_credentials(
            root_certificates=pki["ca"].read_bytes(),
            private_key=pki["client.key"].read_bytes(),
            certificate_chain=pki["client.crt"].read_bytes(),
        )
        assert await stats(target, creds=with_cert, options=options) == grpc.StatusCode.OK
    finally:
        await server.stop(0.5)
        await store.close()


def test_redis_with_a_password_through_the_url() -> None:
    """A password-protected Redis: the URL carries it; a wrong one never becomes ready."""
    from tests.conftest import ServerProcess

    redis = RedisServer(password="s3cret").start()
    try:
        good = ServerProcess(redis.url)
        try:
            with grpc.insecure_channel(good.address) as channel:
                stub = pb_grpc.DelayQueueServiceStub(channel)
                assert stub.Enqueue(pb.EnqueueRequest(topic="t", payload="x")).success
        finally:
            good.stop()
        with pytest.raises(RuntimeError, match="did not become ready"):
            ServerProcess(redis.url.replace("s3cret", "wrong"), ready_timeout=3)
    finally:
        redis.cleanup()


def test_redis_over_tls(pki: dict[str, Path]) -> None:
    """rediss:// to a TLS-only redis-server (Debian's build has TLS), CA given in the URL."""
    from tests.conftest import ServerProcess
    from tests.redis_server import free_port

    port = free_port()
    redis = RedisServer(
        extra=(
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(pki["server.crt"]),
            "--tls-key-file",
            str(pki["server.key"]),
            "--tls-ca-cert-file",
            str(pki["ca"]),
            "--tls-auth-clients",
            "no",
        )
    ).start()
    try:
        server = ServerProcess(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki['ca']}")
        try:
            with grpc.insecure_channel(server.address) as channel:
                stub = pb_grpc.DelayQueueServiceStub(channel)
                assert stub.Enqueue(
                    pb.EnqueueRequest(topic="t", payload="over tls", id="tls1")
                ).success
                assert stub.GetTask(pb.GetTaskRequest(id="tls1")).task.payload == "over tls"
        finally:
            server.stop()
    finally:
        redis.cleanup()


async def test_reflection_needs_the_token_too(settings: Settings, tmp_path: Path) -> None:
    """grpcurl, as the generated message tells the operator to use it."""
    import asyncio
    import subprocess

    from tests.api.test_grpcurl import grpcurl

    exposed = settings.replace(grpc_addr="0.0.0.0:0", data_dir=str(tmp_path))
    server, store = await start(exposed)
    try:
        token = (tmp_path / TOKEN_FILE).read_text().strip()
        target = f"127.0.0.1:{server.port}"

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [grpcurl(), "-plaintext", *args, target, "list"],
                capture_output=True,
                text=True,
                timeout=30,
            )

        refused = await asyncio.to_thread(run)
        assert refused.returncode != 0 and "Unauthenticated" in refused.stderr
        allowed = await asyncio.to_thread(run, "-H", f"authorization: Bearer {token}")
        assert allowed.returncode == 0 and "api.queue.DelayQueueService" in allowed.stdout
    finally:
        await server.stop(0.5)
        await store.close()


@pytest.mark.parametrize(
    ("days", "warning"),
    [(-2, "expired at"), (3, "expires at"), (100, None)],
    ids=["expired", "in-3-days", "in-100-days"],
)
async def test_a_certificate_near_its_end_is_named_at_start(
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    days: int,
    warning: str | None,
) -> None:
    key = _key()
    (tmp_path / "s.crt").write_bytes(_pem(_cert("localhost", key, days=days)))
    (tmp_path / "s.key").write_bytes(_pem(key))
    tls = settings.replace(
        tls_cert_file=str(tmp_path / "s.crt"), tls_key_file=str(tmp_path / "s.key")
    )
    with caplog.at_level(logging.WARNING):
        server, store = await start(tls)
        await server.stop(0.1)
        await store.close()
    named = [r.getMessage() for r in caplog.records if "s.crt" in r.getMessage()]
    if warning is None:
        assert named == []
    else:
        assert len(named) == 1 and warning in named[0] and "tls_cert_file" in named[0], named


def test_client_certificates_are_checked_too(tmp_path: Path) -> None:
    from appliance.certs import CLIENT_CERTS, expiry_warnings

    key = _key()
    (tmp_path / "c.crt").write_bytes(_pem(_cert("worker-1", key, days=5)))
    settings = Settings(tls_ca_file=str(tmp_path / "c.crt"))
    (line,) = expiry_warnings(settings, CLIENT_CERTS)
    assert line.startswith("tls_ca_file:") and "expires at" in line
    assert expiry_warnings(settings) == []  # the server role checks its own certificates only
