"""The one way cdrpipe connects to Kafka: every aiokafka client and the Faust app's credentials.

Contract: :func:`kafka_connection` turns the settings into a :class:`KafkaConnection`
(the brokers, the security protocol, the TLS context, the SASL user and password or the
OAUTHBEARER token provider) or raises :class:`~pipeline.errors.ConfigError` in one
line. Its :meth:`~KafkaConnection.producer`, :meth:`~KafkaConnection.consumer` and
:meth:`~KafkaConnection.admin` are the only places in the package where an aiokafka
client is built, and :meth:`~KafkaConnection.faust_credentials` is the Faust app's
``broker_credentials`` (a project test fails on any other construction).
:func:`check_login` logs in to one bootstrap broker and turns a refused login, a
certificate that does not verify or a listener of another protocol into one line
naming the mechanism and the user. No repr, log line or error holds the password.
"""

from __future__ import annotations

import asyncio
import importlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import SecretStr

from pipeline.config.fields import shown
from pipeline.config.settings import KafkaSecuritySettings, Settings
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from faust.auth import Credentials

LOGIN_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """How to reach and log in to the brokers; builds every client (see the module contract)."""

    bootstrap_servers: str
    security_protocol: str
    ssl_context: ssl.SSLContext | None = None
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    token_provider: AbstractTokenProvider | None = field(default=None, repr=False)

    def options(self) -> dict[str, Any]:
        """The keyword arguments every aiokafka client (and ``create_conn``) takes to connect."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
            "ssl_context": self.ssl_context,
        }
        if self.sasl_mechanism is not None:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
            options["sasl_oauth_token_provider"] = self.token_provider
        return options

    def producer(self, **options: Any) -> AIOKafkaProducer:
        """An aiokafka producer on this connection (``options``: the producer's own settings)."""
        return AIOKafkaProducer(**self.options(), **options)

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        """An aiokafka consumer on this connection, subscribed to ``topics`` if any are given."""
        return AIOKafkaConsumer(*topics, **self.options(), **options)

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        """An aiokafka admin client on this connection."""
        return AIOKafkaAdminClient(**self.options(), **options)

    def faust_credentials(self) -> Credentials | None:
        """The Faust app's ``broker_credentials`` for this connection (None for PLAINTEXT)."""
        # importing Faust is slow; only the worker needs it
        from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials  # noqa: PLC0415

        if self.sasl_mechanism == "OAUTHBEARER":
            return OAuthCredentials(oauth_cb=self.token_provider, ssl_context=self.ssl_context)
        if self.sasl_mechanism is not None:
            password = self.sasl_password.get_secret_value() if self.sasl_password else None
            return SASLCredentials(
                username=self.sasl_username,
                password=password,
                ssl_context=self.ssl_context,
                mechanism=self.sasl_mechanism,
            )
        if self.ssl_context is not None:
            return SSLCredentials(self.ssl_context)
        return None

    def login(self) -> str:
        """Who logs in, for messages: ``SCRAM-SHA-512 login of user 'worker'``, ``TLS connection``..."""
        if self.sasl_mechanism == "OAUTHBEARER":
            return "OAUTHBEARER login (token provider)"
        if self.sasl_mechanism is not None:
            return f"{self.sasl_mechanism} login of user {self.sasl_username!r}"
        return "TLS connection" if self.ssl_context is not None else "plaintext connection"


def kafka_connection(settings: Settings) -> KafkaConnection:
    """The connection of ``settings``, its TLS context and token provider made (or a ConfigError)."""
    security = settings.security
    protocol = security.kafka_security_protocol
    tls = _ssl_context(security) if protocol in ("SSL", "SASL_SSL") else None
    if protocol in ("PLAINTEXT", "SSL"):
        return KafkaConnection(settings.kafka.bootstrap_servers, protocol, tls)
    return KafkaConnection(
        settings.kafka.bootstrap_servers,
        protocol,
        tls,
        sasl_mechanism=security.kafka_sasl_mechanism,
        sasl_username=security.kafka_sasl_username,
        sasl_password=security.sasl_password,
        token_provider=_token_provider(security.kafka_sasl_oauth_provider)
        if security.kafka_sasl_mechanism == "OAUTHBEARER"
        else None,
    )


def _ssl_context(security: KafkaSecuritySettings) -> ssl.SSLContext:
    """A client TLS context: the CA file (else the system's CAs), the client certificate, hostname checks."""
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=security.kafka_ssl_cafile)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"CDRPIPE_KAFKA_SSL_CAFILE={str(security.kafka_ssl_cafile)!r} holds no usable PEM certificate "
            f"({_reason(exc)}): give the PEM file of the CA that signed the brokers' certificates"
        ) from None
    context.check_hostname = security.kafka_ssl_check_hostname
    if security.kafka_ssl_certfile is not None:
        try:
            context.load_cert_chain(
                security.kafka_ssl_certfile, security.kafka_ssl_keyfile, password=_encrypted_key
            )
        except _EncryptedKeyError:
            variable = "KEYFILE" if security.kafka_ssl_keyfile is not None else "CERTFILE"
            path = security.kafka_ssl_keyfile or security.kafka_ssl_certfile
            raise ConfigError(
                f"CDRPIPE_KAFKA_SSL_{variable}={str(path)!r} holds an encrypted key: cdrpipe takes "
                "no pass phrase; give it the key unencrypted (openssl pkey -in KEY -out KEY.pem), "
                "mounted from a secret"
            ) from None
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"CDRPIPE_KAFKA_SSL_CERTFILE={str(security.kafka_ssl_certfile)!r} (with "
                f"CDRPIPE_KAFKA_SSL_KEYFILE if set) is no usable PEM certificate and key ({_reason(exc)}): "
                "give the client certificate "
                "and its unencrypted key (in one file, or the key in CDRPIPE_KAFKA_SSL_KEYFILE)"
            ) from None
    return context


class _EncryptedKeyError(Exception):
    """The client key asks for a pass phrase."""


def _encrypted_key() -> bytes:
    """The pass phrase callback: refuse, so that OpenSSL never prompts on the terminal (and hangs)."""
    raise _EncryptedKeyError


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "reason", None) or type(exc).__name__)


def _token_provider(reference: str | None) -> AbstractTokenProvider:
    """The token provider the ``module:attribute`` factory returns."""
    variable = "CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER"
    module_name, _, attribute = str(reference).partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for name in attribute.split("."):
            target = getattr(target, name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(
            f"{variable}={reference!r} cannot be loaded ({type(exc).__name__}): {exc}"
        ) from None
    factory: Callable[[], object] = target
    try:
        provider = factory()
    except Exception as exc:  # the operator's code: any failure is one line, not a traceback
        raise ConfigError(
            f"{variable}={reference!r} failed ({type(exc).__name__}: {shown(str(exc))}): "
            "check what the token provider's factory needs (its environment, its credentials)"
        ) from None
    if not isinstance(provider, AbstractTokenProvider):
        raise ConfigError(
            f"{variable}={reference!r} returned no aiokafka AbstractTokenProvider: "
            "name a callable that returns one"
        )
    return provider


async def _first_token(provider: AbstractTokenProvider) -> None:
    """Ask ``provider`` for a token once, so a provider that cannot make one stops the start with one line.

    Only this start-time check is wrapped: at run time aiokafka sees the provider's own failures
    and retries the refresh as it does for any login. The message names the failure's type only,
    since a provider's error text may quote credentials.
    """
    try:
        await provider.token()
    except Exception as exc:  # any failure of third-party credential code
        raise ConfigError(
            f"the OAUTHBEARER token provider could not make a token ({type(exc).__name__}): check what "
            "the factory in CDRPIPE_KAFKA_SASL_OAUTH_PROVIDER needs (its environment, its credentials)"
        ) from None


async def check_login(connection: KafkaConnection) -> None:
    """Connect, log in and ask for metadata on the first bootstrap broker; a refusal is one ConfigError line.

    A broker that cannot be reached at all is left to the clients (they retry until it is up).
    """
    host, _, port = connection.bootstrap_servers.split(",")[0].rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), LOGIN_TIMEOUT_S)
    except (OSError, TimeoutError):
        return
    writer.close()
    if connection.token_provider is not None:
        await _first_token(connection.token_provider)
    options = {key: value for key, value in connection.options().items() if key != "bootstrap_servers"}
    where, login = f"the broker at {host}:{port}", connection.login()
    other_protocol = (
        "its listener expects another security protocol: set CDRPIPE_KAFKA_SECURITY_PROTOCOL to it"
    )
    try:
        conn = await asyncio.wait_for(create_conn(host, int(port), **options), LOGIN_TIMEOUT_S)
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), LOGIN_TIMEOUT_S)
        finally:
            conn.close()
    except SaslAuthenticationFailed:
        raise ConfigError(
            f"{where} refused the {login}: check CDRPIPE_KAFKA_SASL_USERNAME and the password "
            "in CDRPIPE_KAFKA_SASL_PASSWORD_FILE (or the token provider)"
        ) from None
    except UnsupportedSaslMechanismError:
        raise ConfigError(
            f"{where} does not offer SASL mechanism {connection.sasl_mechanism}: "
            "set CDRPIPE_KAFKA_SASL_MECHANISM to one its listener enables"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"{where} presented a certificate that does not verify ({exc.verify_message}): set "
            "CDRPIPE_KAFKA_SSL_CAFILE to the CA that signed it (and check the host name you connect to)"
        ) from None
    except ssl.SSLError as exc:
        raise ConfigError(
            f"the TLS handshake with {where} failed ({_reason(exc)}): {other_protocol}"
        ) from None
    except (KafkaConnectionError, ConnectionError):
        raise ConfigError(f"{where} closed the connection during the {login}: {other_protocol}") from None
    except TimeoutError:
        raise ConfigError(
            f"{where} accepted the connection but did not answer the {login} in {LOGIN_TIMEOUT_S:g}s: "
            f"{other_protocol}"
        ) from None
