"""How every service starts, runs and stops: one `Runtime` per service, `serve` per process.

A service does not write its own start-up and shutdown. It registers with its `Runtime`:

- *steps* — what start-up does, in order, each with what undoes it; shutdown undoes them in
  reverse, and a start-up that fails undoes what it had done, so nothing is left half open;
- *tasks* — its background work (the consume loop, heartbeats, sweeps), started once every step
  is done and watched: a task that fails stops the service and `wait`/`run` raise its error,
  rather than the task dying unnoticed while the service looks alive. A *drained* task (the
  consume loop) is let finish the work in hand at shutdown; the others are cancelled.

`serve` runs one runtime as a process: the ops server (/healthz, /readyz, /metrics) answers from
before start-up until after shutdown, SIGTERM or SIGINT asks the service to finish the work in
hand and stop, and a grace period bounds that: past it, the shutdown is cancelled and whatever
was in hand stays uncommitted, for the next owner of its partitions to redo.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from beepgpt.runtime.ops import OpsServer
from beepgpt.settings import ServiceSettings

log = logging.getLogger(__name__)

Action = Callable[[], Awaitable[object]]


class Resource(Protocol):
    """Anything with an asynchronous start and stop: a producer, a table, a client."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class _Step:
    what: str
    start: Action | None
    stop: Action | None


@dataclass(frozen=True)
class _TaskSpec:
    name: str
    work: Callable[[], Awaitable[None]]
    drain: bool


class Runtime:
    """One service's lifecycle: the steps it starts, the tasks it watches, and how it stops.

    `ready` is the service's own judgement (connected, table loaded, ...); the runtime adds that
    a service is only ready between the end of its start-up and the first request to stop, so a
    draining pod leaves the load balancer's rotation at once.
    """

    def __init__(
        self, name: str, *, ready: Callable[[], bool] | None = None, drain_timeout_s: float | None = None
    ) -> None:
        """`drain_timeout_s` bounds how long `stop` lets drained tasks finish before cancelling them
        (None: as long as they take; `serve`'s grace period still bounds a process)."""
        self.name = name
        self._ready = ready or (lambda: True)
        self._drain_timeout_s = drain_timeout_s
        self._steps: list[_Step] = []
        self._specs: list[_TaskSpec] = []
        self._undo: list[_Step] = []
        self._tasks: list[tuple[_TaskSpec, asyncio.Task[None]]] = []
        self._stopping = asyncio.Event()
        self._started = asyncio.Event()
        self._stopped = False
        self._raised: BaseException | None = None

    # --- registration -------------------------------------------------------------------------

    def step(self, what: str, start: Action | None = None, stop: Action | None = None) -> None:
        """A start-up step and what undoes it at shutdown (either may be None)."""
        self._steps.append(_Step(what, start, stop))

    def add(self, resource: Resource, what: str | None = None) -> None:
        """Start `resource` at this point of start-up; stop it at the mirror point of shutdown."""
        self.step(what or type(resource).__name__, resource.start, resource.stop)

    def task(self, name: str, work: Callable[[], Awaitable[None]], *, drain: bool = False) -> None:
        """A watched background task, started once start-up is done.

        `drain`: at shutdown the task is asked (through `stopping`) to finish the work in hand and
        return, and is waited for; otherwise it is cancelled.
        """
        self._specs.append(_TaskSpec(name, work, drain))

    # --- state --------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """A stop was asked for: loops finish what they hold and take nothing new."""
        return self._stopping.is_set()

    @property
    def running(self) -> bool:
        """Started and not asked to stop."""
        return self._started.is_set() and not self._stopping.is_set()

    @property
    def ready(self) -> bool:
        return self.running and self._ready()

    async def sleep(self, seconds: float) -> bool:
        """Wait `seconds`, or less if a stop is asked for meanwhile; True when stopping.

        Always a point where the task can be cancelled: `asyncio.wait`, unlike `wait_for` on
        Python 3.11, never swallows a cancellation that arrives as the event is set.
        """
        if self._stopping.is_set():
            await asyncio.sleep(0)
            return True
        waiter = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        return self.stopping

    async def wait_started(self, timeout: float | None = None) -> None:
        """Until start-up is done (for tests, benchmarks and tools that start a service in-process)."""
        await asyncio.wait_for(self._started.wait(), timeout)

    # --- running ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Every step in order, then the tasks. A step that fails undoes those before it and raises.

        A stop asked for during start-up skips the remaining steps (there is nothing to start
        them for); `stop` then undoes those that ran.
        """
        try:
            for step in self._steps:
                if self.stopping:
                    return
                if step.start is not None:
                    await step.start()
                self._undo.append(step)
        except BaseException:
            await self._teardown()
            raise
        for spec in self._specs:
            self._tasks.append(
                (spec, asyncio.create_task(self._watched(spec), name=f"{self.name}-{spec.name}"))
            )
        self._started.set()
        log.info("service started", extra={"service": self.name})

    async def _watched(self, spec: _TaskSpec) -> None:
        try:
            await spec.work()
        except asyncio.CancelledError:
            raise
        except BaseException as error:
            # The traceback is logged once, by whoever `wait` raises it to (the process's main).
            log.error(
                "task failed; stopping the service",
                extra={"service": self.name, "task": spec.name, "error": repr(error)[:300]},
            )
            self._stopping.set()
            raise

    async def wait(self) -> None:
        """Until a stop is asked for, a drained task ends on its own, or a task fails (raised here)."""
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            while True:
                pending = {task for _, task in self._tasks if not task.done()}
                for spec, task in self._tasks:
                    if task.done() and not task.cancelled() and task.exception() is not None:
                        self._raised = task.exception()
                        raise self._raised  # type: ignore[misc]
                    if task.done() and spec.drain and not self.stopping:
                        return
                if self.stopping:
                    return
                await asyncio.wait({stopping, *pending}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

    def request_stop(self) -> None:
        """Ask everything to finish the work in hand; `stop` (or `run` returning) completes it."""
        self._stopping.set()

    async def stop(self, *, drain: bool = True) -> None:
        """Finish the work in hand, then undo start-up in reverse. Safe to call more than once.

        Drained tasks are waited for (up to `drain_timeout_s`; not at all with `drain=False`, when
        the grace period is over), the rest cancelled; then each step's undo runs even if an
        earlier one failed (each failure is logged), so a broken client never keeps the others
        open. A task that failed meanwhile (the loop, finishing its batch) is raised afterwards,
        unless `wait` already raised it.
        """
        self._stopping.set()
        tasks, self._tasks = self._tasks, []
        drained = [task for spec, task in tasks if spec.drain and not task.done()]
        try:
            if drained and drain:
                _, late = await asyncio.wait(drained, timeout=self._drain_timeout_s)
                if late:
                    log.warning(
                        "work in hand not finished in time; left for the next owner",
                        extra={"service": self.name, "waited_s": self._drain_timeout_s},
                    )
        finally:  # cancelled while draining (the grace period is over): still cancel and undo
            for _, task in tasks:
                task.cancel()
            failure: BaseException | None = None
            for _, task in tasks:
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception as error:
                    failure = failure or error
            await self._teardown()
        if failure is not None and failure is not self._raised:
            raise failure

    async def _teardown(self) -> None:
        while self._undo:
            step = self._undo.pop()
            if step.stop is None:
                continue
            try:
                await step.stop()
            except Exception:
                log.exception("stopping failed", extra={"service": self.name, "step": step.what})
        if self._started.is_set() and not self._stopped:
            self._stopped = True
            log.info("service stopped", extra={"service": self.name})

    async def run(self) -> None:
        """Start, work until asked to stop (or until a task fails, raised here), then stop.

        Cancelled (the grace period is over), it cancels the work in hand too, which stays
        uncommitted, and still undoes start-up before the cancellation goes on.
        """
        try:
            await self.start()
            await self.wait()
        except asyncio.CancelledError:
            await self.stop(drain=False)
            raise
        except BaseException:
            await self.stop()
            raise
        await self.stop()


async def serve(runtime: Runtime, settings: ServiceSettings, *, grace: bool = True) -> None:
    """Run `runtime` as this process's service until it stops, after SIGTERM/SIGINT or on its own.

    The ops server comes up first and goes down last. A signal asks the service to finish the work
    in hand; `settings.shutdown_timeout_s` later the run is cancelled. `grace=False` leaves that
    bound to the service, for one whose shutdown steps bound themselves and report what they
    could not finish (ingest counts the events it lost). What made the service fail is raised.
    """
    ops = OpsServer(runtime.name, settings.http_host, settings.http_port, lambda: runtime.ready)
    await ops.start()
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(runtime.run(), name=f"{runtime.name}-run")
    expired = False

    def cancel() -> None:
        nonlocal expired
        expired = True
        running.cancel()

    def shut_down() -> None:
        if runtime.stopping:
            return
        log.info("signal received; finishing the work in hand", extra={"service": runtime.name})
        runtime.request_stop()
        if grace:
            loop.call_later(settings.shutdown_timeout_s, cancel)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shut_down)
    try:
        await running
    except asyncio.CancelledError:
        if not expired:
            raise
        log.warning(
            "shutdown grace period over: the work in hand is left uncommitted for the next owner",
            extra={"service": runtime.name, "grace_s": settings.shutdown_timeout_s},
        )
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await ops.stop()
