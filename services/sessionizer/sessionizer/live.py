"""The conversation query running live: rows go in as Kafka delivers them, outputs stream out.

Kaskada 0.6.1 facts this wrapper is built around (measured, docs/conversations.md):

- A live source needs rows in time order; one older row ends the result iterator without an
  error, and a row at the same time as a row of an earlier `add` fails the query ("invalid
  batch input bounds … In shift_to"). Rows get strictly increasing times before they get here
  (`rules.Timeline`), and an iterator that ends anyway is a failure (`QueryEnded`), never
  "done": the owner rebuilds the query.
- Event time only advances when rows arrive, and a row's output comes out only once a row with
  a later time arrives in a later `add` (rows of one batch do not release each other, nor do
  rows at the same time). Heartbeat rows, always later than the rows before them, do both:
  move time and flush.
- `run_iter("pyarrow")` cannot be iterated asynchronously in 0.6.1 (it hands a list where an
  iterator is expected), and `run_iter("row")` costs more than the fold: results are read as a
  table per batch (`query.result_tables`) and parsed column by column.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator

import kaskada as kd

from sessionizer.query import (
    INPUT_SCHEMA,
    Output,
    Row,
    conversation_query,
    ensure_session,
    parse_table,
    result_tables,
)
from sessionizer.settings import SessionizerSettings

STOP_WAIT_S = 5.0
"""How long a live query's stop may take before it is abandoned (normally milliseconds)."""


class QueryEnded(RuntimeError):
    """The live result iterator stopped: Kaskada's way of failing (a row out of order, say)."""


class LiveQuery:
    """One live execution of `conversation_query` over its own source.

    The source keeps no rows (`queryable=False`): Kaskada holds only the query's state, and
    dropping the query releases it (rebuilding is how the service bounds memory).
    """

    def __init__(self, settings: SessionizerSettings) -> None:
        self._settings = settings
        self._source: kd.sources.PyDict | None = None
        self._results: kd.ResultIterator | None = None
        self.rows_added = 0

    async def start(self) -> None:
        ensure_session()
        self._source = await kd.sources.PyDict.create(
            None, time_column="time", key_column="channel", schema=INPUT_SCHEMA, queryable=False
        )
        self._results = result_tables(conversation_query(self._source, self._settings), "live")

    async def add(self, rows: list[Row]) -> None:
        """Rows in non-decreasing time order (also relative to every earlier call)."""
        if not rows:
            return
        assert self._source is not None, "start() first"
        await self._source.add_rows(rows)
        self.rows_added += len(rows)

    async def outputs(self) -> AsyncIterator[list[Output]]:
        """The outputs of each batch of output rows, until the query is stopped; ending is `QueryEnded`."""
        assert self._results is not None, "start() first"
        async for table in self._results:
            yield parse_table(table)
        raise QueryEnded(f"the live query's results ended after {self.rows_added} rows")

    async def stop(self, wait_s: float = STOP_WAIT_S) -> bool:
        """Stop the execution without blocking the event loop; False if it did not stop in time.

        Cancel any pending read of `outputs()` first: Kaskada's stop blocks while a read is
        waiting on the execution. Cancelling the task that awaits a read does not always cancel
        Kaskada's own read underneath (seen once in CI: a whole process frozen in `stop()` at
        shutdown), so the stop runs in a daemon thread and is awaited at most `wait_s`; a query
        whose stop does not return is abandoned — its state goes with the process — rather than
        freezing every other partition, the ops server and the shutdown with it."""
        results, self._results, self._source = self._results, None, None
        if results is None:
            return True
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not stopped.done():
                stopped.set_result(None)

        def stop() -> None:
            try:
                results.stop()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(finished)

        threading.Thread(target=stop, name="kaskada-stop", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(stopped), wait_s)
        except TimeoutError:
            return False
        return True
