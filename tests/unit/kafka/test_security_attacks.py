"""Attacks on the Kafka security settings: secrets that slip into logs and errors, prompts, URLs."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import select
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.abc import AbstractTokenProvider
from aiokafka.protocol.admin import (
    ApiVersionResponse_v0,
    SaslAuthenticateResponse_v0,
    SaslHandShakeResponse_v1,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from pipeline.config.settings import load_settings
from pipeline.errors import ConfigError
from pipeline.kafka.connection import KafkaConnection, check_login, kafka_connection
from pipeline.observability import log_scrub
from tests.support.helpers import REPO

PASSWORD = "pw-Zq8xK2vR7mN4"
TOKEN = "eyJ-token-Qm7vX2kP9wL4"
SASL = {
    "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "CDRPIPE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    "CDRPIPE_KAFKA_SASL_USERNAME": "worker",
}


class StaticToken(AbstractTokenProvider):  # type: ignore[misc]
    async def token(self) -> str:
        return TOKEN


def failing_factory() -> StaticToken:
    raise KeyError("AWS_REGION")


@pytest.fixture(autouse=True)
def _restore_logging_hooks() -> Iterator[None]:
    saved = (logging.getLogRecordFactory(), sys.excepthook, threading.excepthook)
    yield
    logging.setLogRecordFactory(saved[0])
    sys.excepthook, threading.excepthook = saved[1], saved[2]
    logging.captureWarnings(False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed client certificate, its key encrypted with a pass phrase."""
    root = tmp_path_factory.mktemp("keys")
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (root / "client.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    encrypted = serialization.BestAvailableEncryption(b"pass phrase")
    (root / "encrypted.key").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encrypted)
    )
    return {path.name: path for path in root.iterdir()}


async def _fake_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Just enough of a broker for a SASL login: API versions, the handshake, a refused authentication."""
    try:
        while True:
            (size,) = struct.unpack(">i", await reader.readexactly(4))
            request = await reader.readexactly(size)
            api_key, _version, correlation_id = struct.unpack(">hhi", request[:8])
            if api_key == 18:
                body = ApiVersionResponse_v0(0, [(18, 0, 0), (17, 0, 1), (36, 0, 0), (3, 0, 0)]).encode()
            elif api_key == 17:
                body = SaslHandShakeResponse_v1(0, ["PLAIN", "OAUTHBEARER"]).encode()
            elif api_key == 36:
                body = SaslAuthenticateResponse_v0(58, "Authentication failed", b"").encode()
            else:
                return
            message = struct.pack(">i", correlation_id) + body
            writer.write(struct.pack(">i", len(message)) + message)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "OAUTHBEARER"])
def test_a_debug_log_of_the_login_holds_no_password_or_token(
    mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``cdrpipe worker -l debug``: aiokafka logs each request, the SASL authentication's bytes too."""
    log_scrub.install()
    caplog.set_level(logging.DEBUG)

    async def login() -> None:
        server = await asyncio.start_server(_fake_broker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        if mechanism == "PLAIN":
            connection = KafkaConnection(
                f"127.0.0.1:{port}", "SASL_PLAINTEXT", None, "PLAIN", "worker", SecretStr(PASSWORD)
            )
        else:
            connection = KafkaConnection(
                f"127.0.0.1:{port}", "SASL_PLAINTEXT", None, "OAUTHBEARER", token_provider=StaticToken()
            )
        try:
            with pytest.raises(ConfigError, match="refused the"):
                await check_login(connection)
        finally:
            server.close()

    asyncio.run(login())
    assert "SaslAuthenticateRequest" in caplog.text, "aiokafka no longer logs its requests at DEBUG"
    assert PASSWORD not in caplog.text and TOKEN not in caplog.text


PEM_KEY = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/fakeKeyMaterial+Zq8x/K2vR7mN4\n"
    "-----END PRIVATE KEY-----\n"
)
SECRETS_FOR_PATHS = [
    ("CDRPIPE_KAFKA_SASL_PASSWORD_FILE", "Tr0ub4dor/3-xkcd", SASL),
    ("CDRPIPE_KAFKA_SASL_PASSWORD_FILE", "/x8Kq+ab9Zt", SASL),
    ("CDRPIPE_KAFKA_SASL_PASSWORD_FILE", "a/" + "x" * 300, SASL),
]


@pytest.mark.parametrize(("variable", "secret", "env"), SECRETS_FOR_PATHS)
def test_a_secret_put_where_its_file_belongs_is_never_quoted(
    variable: str, secret: str, env: dict[str, str]
) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}=<withheld") as raised:
        load_settings({**env, variable: secret})
    assert secret not in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("variable", ["CDRPIPE_KAFKA_SSL_KEYFILE", "CDRPIPE_KAFKA_SSL_CERTFILE"])
def test_a_private_key_put_where_its_file_belongs_is_never_quoted(
    variable: str, keys: dict[str, Path]
) -> None:
    pem = PEM_KEY
    env = {
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CDRPIPE_KAFKA_SSL_CERTFILE": str(keys["client.crt"]),
        variable: pem,
    }
    with pytest.raises(ConfigError, match=rf"^{variable}=<withheld") as raised:
        load_settings(env)
    assert "fakeKeyMaterial" not in str(raised.value)


def test_a_real_path_is_still_quoted(tmp_path: Path) -> None:
    missing = tmp_path / "kafka" / "password"
    expected = rf"^CDRPIPE_KAFKA_SASL_PASSWORD_FILE={str(missing)!r} does not exist"
    with pytest.raises(ConfigError, match=expected):
        load_settings({**SASL, "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(missing)})


def _run_on_a_terminal(code: str, timeout_s: float = 60.0) -> str:
    """What ``code`` writes to its terminal (a pty, as at an operator's shell), killed at ``timeout_s``."""
    import pty  # POSIX only

    pid, fd = pty.fork()
    if pid == 0:  # the child
        os.environ["PYTHONPATH"] = str(REPO)
        os.execv(sys.executable, [sys.executable, "-c", code])
    output, deadline = b"", time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(fd)
    return output.decode(errors="replace")


def test_an_encrypted_key_is_one_line_and_never_prompts_for_a_pass_phrase(keys: dict[str, Path]) -> None:
    """OpenSSL prompts on the terminal for an encrypted key's pass phrase: the worker or CLI would hang."""
    env = {
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CDRPIPE_KAFKA_SSL_CERTFILE": str(keys["client.crt"]),
        "CDRPIPE_KAFKA_SSL_KEYFILE": str(keys["encrypted.key"]),
    }
    code = (
        "from pipeline.config.settings import load_settings\n"
        "from pipeline.errors import ConfigError\n"
        "from pipeline.kafka.connection import kafka_connection\n"
        "try:\n"
        f"    kafka_connection(load_settings({env!r}))\n"
        "except ConfigError as exc:\n"
        "    print('ERROR', exc)\n"
        "else:\n"
        "    print('LOADED')\n"
    )
    output = _run_on_a_terminal(code)
    assert "Enter PEM pass phrase" not in output
    assert "ERROR CDRPIPE_KAFKA_SSL_" in output and "encrypted" in output


def test_the_password_is_never_part_of_the_broker_address() -> None:
    """kafka://user:password@host is a habit from other tools: refused, and the value is not echoed."""
    with pytest.raises(ConfigError, match=r"^CDRPIPE_BROKER=<withheld") as raised:
        load_settings({"CDRPIPE_BROKER": f"kafka://worker:{PASSWORD}@b1:9092"})
    assert PASSWORD not in str(raised.value) and "CDRPIPE_KAFKA_SASL" in str(raised.value)


def test_a_password_file_written_by_a_windows_editor_gives_the_password(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes(b"\xef\xbb\xbf" + PASSWORD.encode() + b"\r\n")
    settings = load_settings({**SASL, "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(path)})
    assert settings.security.sasl_password is not None
    assert settings.security.sasl_password.get_secret_value() == PASSWORD


def test_a_password_file_that_is_not_utf8_says_so(tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_bytes(b"p\xe9" + PASSWORD.encode() + b"\n")
    expected = r"^CDRPIPE_KAFKA_SASL_PASSWORD_FILE='.*' is not UTF-8 text"
    with pytest.raises(ConfigError, match=expected) as raised:
        load_settings({**SASL, "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(path)})
    assert PASSWORD not in str(raised.value)


def test_a_token_provider_factory_that_fails_is_one_line() -> None:
    """The documented MSK factory reads AWS_REGION: without it the CLI printed a traceback."""
    env = {
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CDRPIPE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER": f"{__name__}:failing_factory",
    }
    with pytest.raises(ConfigError, match=r"^CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER='.*' failed \(KeyError"):
        kafka_connection(load_settings(env))


def test_the_cli_stops_at_an_encrypted_key_with_one_line(keys: dict[str, Path]) -> None:
    """The same through ``cdrpipe``, without a terminal: exit status 2 and one line."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDRPIPE_")},
        "PYTHONPATH": str(REPO),
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL",
        "CDRPIPE_KAFKA_SSL_CERTFILE": str(keys["client.crt"]),
        "CDRPIPE_KAFKA_SSL_KEYFILE": str(keys["encrypted.key"]),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo", "--count", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Enter PEM pass phrase" not in done.stderr
    assert done.stderr.count("\n") == 1 and "encrypted" in done.stderr


class NoCredentials(AbstractTokenProvider):  # type: ignore[misc]
    async def token(self) -> str:
        raise RuntimeError("Unable to locate credentials")


def test_a_token_provider_that_cannot_make_a_token_is_one_line_at_login() -> None:
    """No AWS credentials for MSK IAM: one line naming the failure's type, not the provider's text."""

    async def login() -> None:
        server = await asyncio.start_server(_fake_broker, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connection = KafkaConnection(
            f"127.0.0.1:{port}", "SASL_PLAINTEXT", None, "OAUTHBEARER", token_provider=NoCredentials()
        )
        try:
            with pytest.raises(
                ConfigError, match=r"token provider could not make a token \(RuntimeError\)"
            ) as refused:
                await check_login(connection)
            assert "\n" not in str(refused.value) and "Unable to locate" not in str(refused.value)
        finally:
            server.close()

    asyncio.run(login())
