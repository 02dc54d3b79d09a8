"""A real single-node Apache Kafka broker (KRaft) for development and tests.

The broker jars are pinned by ``deploy/kafka/pom.xml`` and fetched once with
Maven into a cache (``CHURNWATCH_CACHE_DIR``, default ``~/.cache/churnwatch``).
:class:`LocalBroker` formats a fresh KRaft storage directory, starts the broker
on free loopback ports and waits until it answers metadata requests.

``LocalBroker(sasl_ssl=True)`` adds a SASL_SSL listener, as managed Kafka services
offer: a certificate for 127.0.0.1 and localhost signed by a CA of its own (made with
the JDK's ``keytool``; clients trust ``ca_file``), and one user (``username``,
``password``, random) who may log in with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (the
SCRAM credentials are written at format time, ``kafka-storage format --add-scram``).
The PLAINTEXT listener stays for the broker's own use and its readiness check.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

KAFKA_DIR = Path(__file__).resolve().parent.parent / "deploy" / "kafka"
POM = KAFKA_DIR / "pom.xml"
LOG4J = KAFKA_DIR / "log4j2.properties"


class BrokerError(RuntimeError):
    """The local broker could not be installed or started."""


class BrokerExited(BrokerError):
    """The broker process ended before it answered."""


def cache_dir() -> Path:
    base = os.environ.get("CHURNWATCH_CACHE_DIR") or Path.home() / ".cache" / "churnwatch"
    return Path(base)


def _require(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BrokerError(f"'{tool}' was not found on PATH: {hint}")
    return path


def ensure_jars(pom: Path = POM) -> Path:
    """Fetch the broker's jars with Maven once; return the folder that holds them.

    The cache folder is named after the pom's hash, so a changed pin fetches anew. Processes
    that need the jars at once (the test processes of ``pytest -n 2``) fetch them once: the
    others wait on a lock.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    libs = cache_dir() / f"kafka-{digest}" / "libs"
    if (libs / ".complete").exists():
        return libs
    libs.parent.mkdir(parents=True, exist_ok=True)
    with open(libs.with_name("fetch.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (libs / ".complete").exists():  # fetched while this process waited
            return libs
        return _fetch_jars(pom, libs, digest)


def _fetch_jars(pom: Path, libs: Path, digest: str) -> Path:
    _require("java", "install a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
    mvn = _require("mvn", "install Apache Maven (Debian: apt-get install maven)")
    tmp = libs.with_name("libs.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    log.warning("fetching the Kafka broker jars with Maven into %s (once)", libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrokerError(f"Maven could not fetch the Kafka jars:\n{proc.stdout}{proc.stderr}")
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    (libs / ".complete").write_text(digest)
    return libs


_GIVEN: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux: ``ip_local_port_range``)."""
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A loopback port free now, outside the range the kernel takes outgoing connections'
    ports from, and never one this process was given before.

    The port is free only when it is chosen: a broker binds it seconds later (after the
    JVM starts and formats its storage). A port from the ephemeral range (what binding
    port 0 gives) can meanwhile become the local end of any client's connection, a test
    worker's to its own broker among them, and the broker then fails to bind it.
    """
    lo, hi = _ephemeral_range()
    # above the well-known services' ports (a dev broker at 19092, Prometheus, Grafana)
    outside = [*range(20000, lo), *range(hi + 1, 65536)]
    rng = random.SystemRandom()
    for _ in range(100):
        with socket.socket() as sock:
            try:  # no such range: any port the kernel gives
                sock.bind(("127.0.0.1", rng.choice(outside) if outside else 0))
            except OSError:  # in use: another
                continue
            port = int(sock.getsockname()[1])
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
    raise BrokerError("no free loopback port found")


def _java_cmd(libs: Path, main: str, *args: str, log_dir: Path, heap: str = "512m") -> list[str]:
    return [
        _require("java", "install a Java 17+ runtime"),
        f"-Xmx{heap}", f"-Xms{heap}", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={LOG4J}", f"-Dkafka.logs.dir={log_dir}",
        "-cp", f"{libs}/*", main, *args,
    ]  # fmt: skip


class LocalBroker:
    """A single-node KRaft broker in a temporary folder, on free loopback ports.

    Use as a context manager; ``bootstrap`` is the address clients connect to.
    """

    def __init__(
        self, workdir: Path | None = None, port: int | None = None, *, sasl_ssl: bool = False
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="churnwatch-kafka-"))
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.controller_port = free_port()
        self.sasl_port = free_port() if sasl_ssl else None
        self.username = "churnwatch"
        self.password = secrets.token_urlsafe(16)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def sasl_bootstrap(self) -> str:
        """The SASL_SSL listener's address (``sasl_ssl=True`` only)."""
        if self.sasl_port is None:
            raise BrokerError("this broker has no SASL_SSL listener")
        return f"127.0.0.1:{self.sasl_port}"

    @property
    def ca_file(self) -> Path:
        """PEM certificate of the CA that signed the SASL_SSL listener's certificate."""
        return self.workdir / "tls" / "ca.pem"

    def client_env(self) -> dict[str, str]:
        """The churnwatch settings of a client of the SASL_SSL listener (SCRAM-SHA-512)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_bootstrap,
            "CHURNWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "CHURNWATCH_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "CHURNWATCH_KAFKA_USERNAME": self.username,
            "CHURNWATCH_KAFKA_PASSWORD": self.password,
            "CHURNWATCH_KAFKA_CA_FILE": str(self.ca_file),
        }

    def _make_certificates(self) -> Path:
        """A CA and the listener's keystore (PKCS12), with keytool; returns the keystore."""
        keytool = _require("keytool", "install a Java 17+ JDK (Debian: openjdk-17-jdk-headless)")
        tls = self.ca_file.parent
        if (tls / ".complete").exists():  # made for this folder's broker before: the same
            return tls / "broker.p12"  # names, whatever its ports (a restart, a new attempt)
        shutil.rmtree(tls, ignore_errors=True)  # half made: keytool refuses existing aliases
        tls.mkdir(parents=True)
        ca, broker = str(tls / "ca.p12"), str(tls / "broker.p12")
        pw = ["-storepass", self._store_password, "-storetype", "PKCS12"]
        key = ["-genkeypair", "-keyalg", "RSA", "-keysize", "2048", "-validity", "30"]
        steps = [
            [*key, "-alias", "ca", "-dname", "CN=churnwatch dev CA", "-ext", "bc:c",
             "-keystore", ca],
            ["-exportcert", "-rfc", "-alias", "ca", "-keystore", ca, "-file", str(self.ca_file)],
            [*key, "-alias", "broker", "-dname", "CN=localhost", "-keystore", broker],
            ["-certreq", "-alias", "broker", "-keystore", broker, "-file", str(tls / "broker.csr")],
            ["-gencert", "-rfc", "-alias", "ca", "-keystore", ca, "-validity", "30",
             "-ext", "SAN=dns:localhost,ip:127.0.0.1", "-infile", str(tls / "broker.csr"),
             "-outfile", str(tls / "broker.pem")],
            ["-importcert", "-noprompt", "-alias", "ca", "-file", str(self.ca_file),
             "-keystore", broker],
            ["-importcert", "-noprompt", "-alias", "broker", "-file", str(tls / "broker.pem"),
             "-keystore", broker],
        ]  # fmt: skip
        for step in steps:
            done = subprocess.run([keytool, *step, *pw], capture_output=True, text=True)
            if done.returncode != 0:
                raise BrokerError(f"keytool {step[0]} failed:\n{done.stdout}{done.stderr}")
        (tls / ".complete").touch()
        return Path(broker)

    def _sasl_ssl_config(self, keystore: Path) -> list[str]:
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        plain = (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'user_{self.username}="{self.password}";'
        )
        return [
            "sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            f"listener.name.sasl_ssl.plain.sasl.jaas.config={plain}",
            f"listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram}",
            f"listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram}",
            f"ssl.keystore.location={keystore}",
            "ssl.keystore.type=PKCS12",
            f"ssl.keystore.password={self._store_password}",
            f"ssl.key.password={self._store_password}",
        ]

    @property
    def _store_password(self) -> str:  # protects nothing: the keystore lives next to it
        return "churnwatch-dev"

    @property
    def log_file(self) -> Path:
        return self.workdir / "broker.log"

    def _write_config(self) -> Path:
        cfg = self.workdir / "server.properties"
        plain = f"PLAINTEXT://127.0.0.1:{self.port}"
        sasl = f",SASL_SSL://127.0.0.1:{self.sasl_port}" if self.sasl_port else ""
        secured = self._sasl_ssl_config(self._make_certificates()) if self.sasl_port else []
        cfg.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners={plain}{sasl},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners={plain}{sasl}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,"
                    "CONTROLLER:PLAINTEXT",
                    "inter.broker.listener.name=PLAINTEXT",
                    *secured,
                    f"log.dirs={self.workdir / 'data'}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=4",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.flush.interval.ms=60000",
                    "",
                ]
            )
        )
        return cfg

    def start(self, timeout: float = 90.0, attempts: int = 3) -> LocalBroker:
        """Format (unless the folder holds a broker already), start, and wait until ready.

        A free port is only free when it is chosen: another process (a second test worker's
        broker, any client's outgoing connection) may take it before the broker binds it. A
        fresh broker whose ports were chosen here and that exits before it is ready is
        started again on new ports, up to ``attempts`` times in all.
        """
        libs = ensure_jars()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a folder that held a broker before is started as it is (its topics, offsets and
        # cluster id): a broker restart, as the fault benchmarks do (same port, same data)
        fresh = not (self.workdir / "data" / "meta.properties").exists()
        for attempt in range(1, attempts + 1):
            self._launch(libs, format_storage=fresh)
            try:
                self._wait_ready(timeout)
                return self
            except BrokerExited as exc:
                if not fresh or self._fixed_port or attempt == attempts:
                    raise
                log.warning("the broker exited before it was ready (%s); new ports", exc)
                shutil.rmtree(self.workdir / "data", ignore_errors=True)
                self.port, self.controller_port = free_port(), free_port()
                self.sasl_port = free_port() if self.sasl_port else None
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, libs: Path, *, format_storage: bool) -> None:
        cfg = self._write_config()
        cluster_id = uuid.uuid4().hex[:22]
        user = f"[name={self.username},password={self.password}]"
        users = [
            arg for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for arg in ("--add-scram", f"{mechanism}={user}")
        ] if self.sasl_port else []  # fmt: skip
        fmt = subprocess.run(
            _java_cmd(libs, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(cfg),
                      "--ignore-formatted", *users, log_dir=self.workdir, heap="256m"),
            capture_output=True, text=True,
        ) if format_storage else None  # fmt: skip
        if fmt is not None and fmt.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{fmt.stdout}{fmt.stderr}")
        out = open(self.workdir / "broker.out", "wb")  # noqa: SIM115 - lives as long as the broker
        self.proc = subprocess.Popen(
            _java_cmd(libs, "kafka.Kafka", str(cfg), log_dir=self.workdir),
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def _tail(self, chars: int = 3000) -> str:
        """The end of what the broker printed and logged (its log4j file holds the errors)."""
        parts = []
        for name in ("broker.out", "broker.log"):
            path = self.workdir / name
            text = path.read_text(errors="replace")[-chars:] if path.exists() else ""
            if text.strip():
                parts.append(f"--- {name} ---\n{text}")
        return "\n".join(parts) or "(it printed and logged nothing)"

    def _wait_ready(self, timeout: float) -> None:
        from kafka import KafkaAdminClient  # kafka-python: admin/tools side

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                code = self.proc.returncode
                raise BrokerExited(f"the broker exited with {code}:\n{self._tail()}")
            try:
                admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
                admin.list_topics()
                admin.close()
                return
            except Exception as exc:  # not up yet
                last = exc
                time.sleep(0.3)
        self.stop()
        raise BrokerError(f"the broker did not answer within {timeout:.0f}s: {last}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def on_a_broker(out: Path, run: Callable[[str], int], say: Callable[[str], None]) -> int:
    """``run(bootstrap)`` on the broker of ``KAFKA_BOOTSTRAP_SERVERS``, or on a local
    broker of its own in ``out / "broker"`` (what the benchmarks do)."""
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        return run(bootstrap)
    with LocalBroker(workdir=out / "broker") as broker:
        say(f"broker at {broker.bootstrap}")
        return run(broker.bootstrap)
