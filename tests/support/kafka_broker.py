"""A Kafka broker of a test's own, for faults that must not touch the shared one.

It runs the jars ``scripts/services/kafka.sh`` cached (same version, same log4j2 config) as a
single-node KRaft broker+controller on free ports with its own data directory, so a test can stop
and restart it mid-traffic while other tests keep using the shared broker. ``stop`` keeps the
data: stop + start is a broker restart. Everything binds 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import uuid
from pathlib import Path
from typing import IO

from confluent_kafka.admin import AdminClient

from support.probes import wait_for
from support.processes import free_port

_HEAP = ["-Xms96m", "-Xmx256m"]


def cached_kafka_lib(repo: Path) -> Path | None:
    """The broker jars ``scripts/services/kafka.sh`` fetched, if it did."""
    pom = (repo / "scripts/services/kafka/pom.xml").read_text()
    found = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    if found is None:
        return None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmtap"
    lib = cache / f"kafka-{found.group(1)}" / "lib"
    return lib if any(lib.glob("kafka_2.13-*.jar")) else None


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes in unpadded URL-safe base64, never starting with
    ``-`` (Kafka's own ``Uuid.randomUuid`` rule: the storage tool would read it as an option)."""
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster.startswith("-"):
            return cluster


class KafkaBroker:
    def __init__(self, lib: Path, log4j_config: Path, workdir: Path) -> None:
        self.lib = lib
        self.log4j_config = log4j_config
        self.dir = workdir
        self.port = free_port()
        self.controller_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> KafkaBroker:
        self.dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        if not (self.dir / "data" / "meta.properties").exists():
            cluster = cluster_id()
            storage = ["kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(config)]
            subprocess.run(
                [*self._java(), *storage, "--standalone"],
                check=True,
                capture_output=True,
                timeout=120,
            )
        self._out = (self.dir / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [*self._java(), "kafka.Kafka", str(config)],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout_s=timeout_s, interval_s=0.2, what="the test broker")
        return self

    def stop(self, timeout_s: float = 60.0) -> None:
        """A clean shutdown (SIGTERM), as an operator or an orchestrator would do it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self.process = None
        if self._out is not None:
            self._out.close()
            self._out = None

    def log_tail(self, chars: int = 3000) -> str:
        path = self.dir / "server.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the test broker exited:\n{self.log_tail()}")
        admin = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0})
        try:
            return bool(admin.list_topics(timeout=1).brokers)
        except Exception:  # noqa: BLE001 -- any failure here only means "not ready yet"
            return False

    def _java(self) -> list[str]:
        return [
            "java",
            *_HEAP,
            "-XX:+UseSerialGC",
            "-Djava.awt.headless=true",
            f"-Dkafka.logs.dir={self.dir}",
            f"-Dlog4j2.configurationFile={self.log4j_config}",
            "-cp",
            f"{self.lib}/*",
        ]

    def _write_config(self) -> Path:
        host = "127.0.0.1"
        lines = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{host}:{self.port},CONTROLLER://{host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{host}:{self.port},"
            f"CONTROLLER://{host}:{self.controller_port}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.dir / "data"),
            "num.network.threads": "2",
            "num.io.threads": "2",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "2",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "2",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "min.insync.replicas": "1",
            "default.replication.factor": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
            "log.cleaner.threads": "1",
        }
        path = self.dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
