"""Security settings and the connection builder: each protocol and mechanism, one-line errors, no secret."""

from __future__ import annotations

import datetime
import logging
import ssl
from pathlib import Path

import pytest
from aiokafka.abc import AbstractTokenProvider
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from pipeline.config.settings import load_settings
from pipeline.errors import ConfigError
from pipeline.kafka.connection import KafkaConnection, kafka_connection

PASSWORD = "pw-Zq8xK2vR7mN4"
PrivateKey = ec.EllipticCurvePrivateKey


class StaticToken(AbstractTokenProvider):  # type: ignore[misc]
    """A token provider for the OAUTHBEARER settings."""

    async def token(self) -> str:
        return "token-of-the-test"


def static_token() -> StaticToken:
    return StaticToken()


def not_a_provider() -> object:
    return object()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a client certificate it signed, as PEM files (ca.pem, client.crt, client.key, client.pem)."""
    root = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)

    def certificate(
        name: str, key: PrivateKey, issuer: x509.Name, signer: PrivateKey, ca: bool
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA256())
        )

    ca_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = certificate("test CA", ca_key, ca_name, ca_key, ca=True)
    client = certificate("cdrpipe-client", client_key, ca_name, ca_key, ca=False)
    key_pem = client_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    files = {
        "ca.pem": ca.public_bytes(serialization.Encoding.PEM),
        "client.crt": client.public_bytes(serialization.Encoding.PEM),
        "client.key": key_pem,
        "client.pem": key_pem + client.public_bytes(serialization.Encoding.PEM),
        "garbage.pem": b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    }
    for name, content in files.items():
        (root / name).write_bytes(content)
    return {name: root / name for name in files}


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "worker.password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def sasl_env(
    password_file: Path, mechanism: str = "SCRAM-SHA-512", protocol: str = "SASL_SSL"
) -> dict[str, str]:
    return {
        "CDRPIPE_BROKER": "kafka://b1:9096,kafka://b2:9096",
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": protocol,
        "CDRPIPE_KAFKA_SASL_MECHANISM": mechanism,
        "CDRPIPE_KAFKA_SASL_USERNAME": "worker",
        "CDRPIPE_KAFKA_SASL_PASSWORD_FILE": str(password_file),
    }


def test_plaintext_is_the_default_and_faust_gets_no_credentials() -> None:
    connection = kafka_connection(load_settings({}))
    assert connection.options() == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
        "ssl_context": None,
    }
    assert connection.faust_credentials() is None


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [("SASL_SSL", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512"),
     ("SASL_PLAINTEXT", "SCRAM-SHA-256"), ("SASL_PLAINTEXT", "SCRAM-SHA-512")],
)  # fmt: skip
def test_sasl_with_a_password_file(password_file: Path, protocol: str, mechanism: str) -> None:
    connection = kafka_connection(load_settings(sasl_env(password_file, mechanism.lower(), protocol)))
    options = connection.options()
    assert options["bootstrap_servers"] == "b1:9096,b2:9096"
    assert options["security_protocol"] == protocol
    assert options["sasl_mechanism"] == mechanism
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("worker", PASSWORD)
    assert isinstance(options["ssl_context"], ssl.SSLContext) == (protocol == "SASL_SSL")
    credentials = connection.faust_credentials()
    assert isinstance(credentials, SASLCredentials)
    faust_options = credentials_to_aiokafka_auth(credentials)
    assert faust_options == {key: value for key, value in options.items() if key in faust_options}
    assert set(faust_options) == set(options) - {"bootstrap_servers", "sasl_oauth_token_provider"}


def test_tls_with_the_cafile_and_a_client_certificate(pki: dict[str, Path]) -> None:
    for client in ({"CDRPIPE_KAFKA_SSL_CERTFILE": str(pki["client.pem"])},
                   {"CDRPIPE_KAFKA_SSL_CERTFILE": str(pki["client.crt"]),
                    "CDRPIPE_KAFKA_SSL_KEYFILE": str(pki["client.key"])}):  # fmt: skip
        env = {
            "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL",
            "CDRPIPE_KAFKA_SSL_CAFILE": str(pki["ca.pem"]),
            **client,
        }
        connection = kafka_connection(load_settings(env))
        context = connection.options()["ssl_context"]
        assert (
            connection.options()["security_protocol"] == "SSL"
            and "sasl_mechanism" not in connection.options()
        )
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert [cert["subject"] for cert in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
        credentials = connection.faust_credentials()
        assert isinstance(credentials, SSLCredentials)
        assert credentials_to_aiokafka_auth(credentials) == {
            "security_protocol": "SSL",
            "ssl_context": context,
        }
    unchecked = {"CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "CDRPIPE_KAFKA_SSL_CHECK_HOSTNAME": "false"}
    context = kafka_connection(load_settings(unchecked)).options()["ssl_context"]
    assert not context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED


def test_oauthbearer_takes_the_token_provider_the_factory_returns() -> None:
    env = {
        "CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "CDRPIPE_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
        "CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER": f"{__name__}:static_token",
    }
    connection = kafka_connection(load_settings(env))
    options = connection.options()
    assert options["sasl_mechanism"] == "OAUTHBEARER" and isinstance(
        options["sasl_oauth_token_provider"], StaticToken
    )
    credentials = connection.faust_credentials()
    assert isinstance(credentials, OAuthCredentials)
    assert (
        credentials_to_aiokafka_auth(credentials)["sasl_oauth_token_provider"]
        is options["sasl_oauth_token_provider"]
    )
    with pytest.raises(ConfigError, match="returned no aiokafka AbstractTokenProvider"):
        kafka_connection(
            load_settings({**env, "CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER": f"{__name__}:not_a_provider"})
        )
    with pytest.raises(
        ConfigError, match=r"^CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER='nowhere:thing' cannot be loaded"
    ):
        kafka_connection(load_settings({**env, "CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER": "nowhere:thing"}))


K = "CDRPIPE_KAFKA_"
BAD_SETTINGS = [
    ({K + "SECURITY_PROTOCOL": "TLS"}, rf"^{K}SECURITY_PROTOCOL='TLS' is not usable: use one of PLAINTEXT"),
    ({K + "SASL_MECHANISM": "GSSAPI"}, rf"^{K}SASL_MECHANISM='GSSAPI' is not usable"),
    ({K + "SSL_CHECK_HOSTNAME": "yes"}, rf"^{K}SSL_CHECK_HOSTNAME='yes' is not usable: use true or false"),
    ({K + "SASL_PASSWORD_FILE": None}, rf"^{K}SASL_MECHANISM=SCRAM-SHA-512 needs {K}SASL_PASSWORD_FILE"),
    ({K + "SASL_USERNAME": None}, rf"^{K}SASL_MECHANISM=SCRAM-SHA-512 needs {K}SASL_USERNAME$"),
    ({K + "SASL_MECHANISM": None}, rf"^{K}SECURITY_PROTOCOL=SASL_SSL needs {K}SASL_MECHANISM"),
    (
        {K + "SECURITY_PROTOCOL": "PLAINTEXT"},
        rf"^{K}SASL_MECHANISM is set but {K}[A-Z_]+=PLAINTEXT uses no SASL",
    ),
    (
        {K + "SECURITY_PROTOCOL": "SSL"},
        rf"^{K}SASL_MECHANISM is set but {K}SECURITY_PROTOCOL=SSL uses no SASL",
    ),
    (
        {K + "SECURITY_PROTOCOL": "SASL_PLAINTEXT", K + "SSL_CAFILE": "/etc/ca.pem"},
        rf"^{K}SSL_CAFILE is set but {K}SECURITY_PROTOCOL=SASL_PLAINTEXT uses no TLS",
    ),
    (
        {K + "SECURITY_PROTOCOL": "SASL_PLAINTEXT", K + "SSL_CHECK_HOSTNAME": "false"},
        rf"^{K}SSL_CHECK_HOSTNAME is set but {K}SECURITY_PROTOCOL=SASL_PLAINTEXT uses no TLS",
    ),
    (
        {K + "SASL_PASSWORD_FILE": "/run/secrets/nowhere"},
        rf"^{K}SASL_PASSWORD_FILE='/run/secrets/nowhere' does not",
    ),
    (
        {K + "SASL_PASSWORD_FILE": PASSWORD},
        rf"^{K}SASL_PASSWORD_FILE=<withheld: not a path; is it the secret",
    ),
    ({K + "SSL_CAFILE": "/run/secrets/ca.pem"}, rf"^{K}SSL_CAFILE='/run/secrets/ca.pem' does not exist"),
    ({K + "SSL_KEYFILE": "/run/secrets/client.key"}, rf"^{K}SSL_KEYFILE is set without {K}SSL_CERTFILE"),
    (
        {K + "SASL_OAUTH_PROVIDER": f"{__name__}:static_token"},
        rf"^{K}SASL_OAUTH_PROVIDER is set but {K}SASL_MECHANISM=SCRAM-SHA-512",
    ),
    ({K + "SASL_MECHANISM": "OAUTHBEARER"}, rf"^{K}SASL_MECHANISM=OAUTHBEARER takes no user or password"),
    ({K + "SASL_OAUTH_PROVIDER": "no module"}, r"is not usable: expected module:attribute"),
]


@pytest.mark.parametrize(("change", "message"), BAD_SETTINGS)
def test_each_bad_setting_is_one_line_that_names_it(
    password_file: Path, change: dict[str, str | None], message: str
) -> None:
    env = {**sasl_env(password_file), **change}
    with pytest.raises(ConfigError, match=message) as raised:
        load_settings({name: value for name, value in env.items() if value is not None})
    assert "\n" not in str(raised.value) and PASSWORD not in str(raised.value)


def test_oauthbearer_needs_a_provider() -> None:
    env = {"CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "CDRPIPE_KAFKA_SASL_MECHANISM": "OAUTHBEARER"}
    with pytest.raises(
        ConfigError, match=r"^CDRPIPE_KAFKA_SASL_MECHANISM=OAUTHBEARER needs .*OAUTH_PROVIDER"
    ):
        load_settings(env)


def test_an_unreadable_empty_or_broken_file_is_one_line(password_file: Path, pki: dict[str, Path]) -> None:
    password_file.write_text("\n")
    with pytest.raises(ConfigError, match=r"^the file CDRPIPE_KAFKA_SASL_PASSWORD_FILE names is empty"):
        load_settings(sasl_env(password_file))
    with pytest.raises(
        ConfigError, match=r"^CDRPIPE_KAFKA_SASL_PASSWORD_FILE='.*' cannot be read \(IsADirectory"
    ):
        load_settings(sasl_env(password_file.parent))
    broken = {"CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "CDRPIPE_KAFKA_SSL_CAFILE": str(pki["garbage.pem"])}
    with pytest.raises(ConfigError, match=r"^CDRPIPE_KAFKA_SSL_CAFILE='.*garbage.pem' holds no usable PEM"):
        kafka_connection(load_settings(broken))
    no_key = {"CDRPIPE_KAFKA_SECURITY_PROTOCOL": "SSL", "CDRPIPE_KAFKA_SSL_CERTFILE": str(pki["client.crt"])}
    with pytest.raises(
        ConfigError, match=r"^CDRPIPE_KAFKA_SSL_CERTFILE='.*client.crt' .* no usable PEM certificate"
    ):
        kafka_connection(load_settings(no_key))


def test_the_password_is_in_no_repr_log_or_error(
    password_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = load_settings(sasl_env(password_file))
    connection = kafka_connection(settings)
    assert settings.security.sasl_password is not None
    assert settings.security.sasl_password.get_secret_value() == PASSWORD
    shown = [repr(settings), str(settings), repr(connection), str(settings.model_dump()),
             repr(connection.faust_credentials()), settings.model_dump_json()]  # fmt: skip
    logging.getLogger("cdrpipe.test").info("settings %s connection %r", settings, connection)
    assert all(PASSWORD not in text for text in [*shown, caplog.text])


@pytest.mark.parametrize("mechanism", ["PLAIN", "OAUTHBEARER"])
def test_a_password_or_token_in_clear_text_is_refused(password_file: Path, mechanism: str) -> None:
    env = sasl_env(password_file, mechanism, "SASL_PLAINTEXT")
    if mechanism == "OAUTHBEARER":
        env = {
            key: value for key, value in env.items() if "SASL_USERNAME" not in key and "PASSWORD" not in key
        }
        env["CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER"] = f"{__name__}:static_token"
    with pytest.raises(
        ConfigError, match=rf"^CDRPIPE_KAFKA_SASL_MECHANISM={mechanism} over SASL_PLAINTEXT sends"
    ):
        load_settings(env)


def test_a_connection_is_a_value(password_file: Path) -> None:
    first = kafka_connection(load_settings(sasl_env(password_file, protocol="SASL_PLAINTEXT")))
    assert isinstance(first, KafkaConnection)
    assert first == kafka_connection(load_settings(sasl_env(password_file, protocol="SASL_PLAINTEXT")))
    assert first.login() == "SCRAM-SHA-512 login of user 'worker'"
