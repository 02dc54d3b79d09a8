"""The local broker survives losing its chosen port before it binds it.

``free_port`` closes the socket it asked the kernel for, so another process (the second
test worker's broker, a client's outgoing connection) may take the port before the JVM
binds it. A fresh broker whose ports were chosen for it starts again on new ones, and says
why it had to, in the broker's own words (from its log file, which holds its errors)."""

import socket

import pytest

from streams.devbroker import LocalBroker
from streams.settings import Settings
from streams.topics import connect_admin

pytestmark = pytest.mark.e2e


def _occupied() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def test_a_taken_port_is_replaced_by_a_free_one(tmp_path, caplog):
    with _occupied() as taken:
        broker = LocalBroker(workdir=tmp_path / "kafka", sasl_ssl=True)
        broker.sasl_port = taken.getsockname()[1]  # taken between choosing and binding
        with broker:
            assert broker.sasl_port != taken.getsockname()[1]
            # the SASL_SSL listener, on its new port, with the certificates made once
            admin = connect_admin(Settings.from_env(broker.client_env()), wait_s=30)
            assert admin.list_topics() is not None
            admin.close()
    assert "exited before it was ready" in caplog.text
    assert "Address already in use" in caplog.text  # the broker's own reason, from broker.log
