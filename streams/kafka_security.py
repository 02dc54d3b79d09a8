"""How every Kafka client of churnwatch connects: TLS and SASL from the settings.

One place turns ``CHURNWATCH_KAFKA_*`` into client configuration: Faust's
``broker_credentials`` (which faust-streaming hands to every aiokafka consumer,
producer and admin client it makes) and the keyword arguments of the kafka-python
clients of the command line (topics, simulate, replay, models, demo). Both get the
same ``ssl.SSLContext``. The password is passed to the client libraries and
nowhere else: it is not in ``repr(Settings)``, ``churnwatch config`` or a log line.

:func:`explain` turns the failures a wrong setting causes (a refused password, a
certificate that is not trusted) into one line that says what to check.
"""

from __future__ import annotations

import ssl
from typing import Any

from streams.settings import Settings


class KafkaSecurityError(ConnectionError):
    """The broker refused our credentials or we refused its certificate."""


def ssl_context(s: Settings) -> ssl.SSLContext | None:
    """The TLS context of the SSL and SASL_SSL protocols (None for the others).

    >>> ssl_context(Settings()) is None
    True
    >>> ctx = ssl_context(Settings(kafka_security_protocol="SSL", kafka_check_hostname=False))
    >>> ctx.verify_mode == ssl.CERT_REQUIRED, ctx.check_hostname
    (True, False)
    """
    if not s.kafka_security_protocol.endswith("SSL"):
        return None
    ctx = ssl.create_default_context(cafile=s.kafka_ca_file or None)
    ctx.check_hostname = s.kafka_check_hostname  # the certificate is verified either way
    if s.kafka_cert_file:
        ctx.load_cert_chain(s.kafka_cert_file, s.kafka_key_file or None)
    return ctx


def faust_credentials(s: Settings) -> Any:
    """``broker_credentials`` for ``faust.App`` (None: PLAINTEXT).

    >>> faust_credentials(Settings()) is None
    True
    >>> creds = faust_credentials(Settings(kafka_security_protocol="SASL_PLAINTEXT",
    ...     kafka_username="cw", kafka_password="secret", kafka_sasl_mechanism="SCRAM-SHA-256"))
    >>> creds.protocol.value, creds.mechanism.value, repr(creds)
    ('SASL_PLAINTEXT', 'SCRAM-SHA-256', '<SASLCredentials: username=cw>')
    """
    import faust

    protocol, ctx = s.kafka_security_protocol, ssl_context(s)
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ctx)
    return faust.SASLCredentials(
        username=s.kafka_username,
        password=s.kafka_password,
        ssl_context=ctx,  # None: SASL_PLAINTEXT, else SASL_SSL
        mechanism=s.kafka_sasl_mechanism,
    )


def client_config(s: Settings) -> dict[str, Any]:
    """Keyword arguments for kafka-python's ``KafkaAdminClient``, ``KafkaProducer`` and
    ``KafkaConsumer`` (aiokafka's connections take the same names) that say how to reach
    the brokers (``bootstrap_servers`` apart).

    >>> client_config(Settings())
    {'security_protocol': 'PLAINTEXT'}
    >>> sorted(client_config(Settings(kafka_security_protocol="SASL_SSL", kafka_username="cw",
    ...     kafka_password="secret")))  # doctest: +NORMALIZE_WHITESPACE
    ['sasl_mechanism', 'sasl_plain_password', 'sasl_plain_username', 'security_protocol',
     'ssl_check_hostname', 'ssl_context']
    """
    config: dict[str, Any] = {"security_protocol": s.kafka_security_protocol}
    ctx = ssl_context(s)
    if ctx is not None:
        config["ssl_context"] = ctx
        config["ssl_check_hostname"] = s.kafka_check_hostname  # kafka-python only
    if s.kafka_security_protocol.startswith("SASL_"):
        config["sasl_mechanism"] = s.kafka_sasl_mechanism
        config["sasl_plain_username"] = s.kafka_username
        config["sasl_plain_password"] = s.kafka_password
    return config


def servers(s: Settings) -> list[str]:
    """``KAFKA_BOOTSTRAP_SERVERS`` as a list.

    >>> servers(Settings(kafka_bootstrap_servers="a:9092, b:9092"))
    ['a:9092', 'b:9092']
    """
    return [host.strip() for host in s.kafka_bootstrap_servers.split(",")]


def check_login(s: Settings, timeout: float = 10.0) -> None:
    """Connect to the first reachable broker and log in as the worker would (aiokafka):
    KafkaSecurityError if its certificate is not trusted or it refuses the login.

    kafka-python, which the commands use, reports both only as "unable to bootstrap",
    and aiokafka only in a log line: this asks for the reason. Nothing happens when no
    broker answers yet (the caller's retry loop reports that), nor on PLAINTEXT (no
    certificate, no login).
    """
    if s.kafka_security_protocol == "PLAINTEXT":
        return
    import asyncio

    from aiokafka.conn import create_conn

    async def login(host: str, port: int) -> None:
        auth = client_config(s)
        auth.pop("ssl_check_hostname", None)  # aiokafka: the context's check_hostname
        conn = await create_conn(host, port, request_timeout_ms=int(timeout * 1000), **auth)
        conn.close()

    for server in servers(s):
        host, _, port = server.rpartition(":")
        try:
            asyncio.run(asyncio.wait_for(login(host, int(port)), timeout))
            return
        except Exception as exc:  # noqa: BLE001 - only a security failure is an answer
            why = explain(exc, s)
            if why is not None:
                raise KafkaSecurityError(why) from None


def explain(exc: BaseException, s: Settings) -> str | None:
    """One line about a security failure of a Kafka client, None if it is not one.

    >>> from aiokafka.errors import SaslAuthenticationFailed
    >>> explain(SaslAuthenticationFailed("bad"), Settings(kafka_username="cw"))[:60]
    'Kafka refused the login of user cw (SCRAM-SHA-512): check CH'
    >>> explain(OSError("refused"), Settings()) is None
    True
    """
    from aiokafka import errors as aio
    from kafka import errors as kp

    servers = s.kafka_bootstrap_servers
    if isinstance(exc, aio.SaslAuthenticationFailed | kp.SaslAuthenticationFailedError):
        return (
            f"Kafka refused the login of user {s.kafka_username} ({s.kafka_sasl_mechanism}): "
            "check CHURNWATCH_KAFKA_USERNAME, CHURNWATCH_KAFKA_PASSWORD and "
            "CHURNWATCH_KAFKA_SASL_MECHANISM"
        )
    if isinstance(exc, aio.UnsupportedSaslMechanismError | kp.UnsupportedSaslMechanismError):
        return f"Kafka at {servers} does not offer SASL mechanism {s.kafka_sasl_mechanism}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        trusted = s.kafka_ca_file or "the system's trusted CAs"
        return (
            f"the TLS certificate of Kafka at {servers} is not trusted by {trusted}: "
            f"{exc.verify_message} (check CHURNWATCH_KAFKA_CA_FILE"
            f"{' and CHURNWATCH_KAFKA_CHECK_HOSTNAME' if s.kafka_check_hostname else ''})"
        )
    if isinstance(exc, ssl.SSLError):  # e.g. a TLS client talking to a plaintext listener
        return f"TLS with Kafka at {servers} failed: {exc.reason or exc} (is it a TLS listener?)"
    return None
