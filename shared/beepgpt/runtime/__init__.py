"""The service runtime: how every BeepGPT service starts, consumes, commits and stops.

Modelled on what stream frameworks do well (an application object that owns the consumer, the
producer's flush before commit, rebalances and the process lifecycle, while the service only
registers its step), on top of aiokafka, which stays the Kafka client:

- `Runtime` (lifecycle.py): a service's start-up steps and their undo, its watched background
  tasks, asking to stop and finishing the work in hand;
- `serve` (lifecycle.py): a runtime as a process — ops server, SIGTERM/SIGINT, grace period;
- `ConsumerLoop` (consumer.py): poll → decode → dead-letter → handle → produce → flush → commit,
  with a hook for how a service commits, rebalance handling and pausing;
- `RecordBatch`, `next_offsets` (batch.py): what a step gets, and the one rule for which offsets
  committing records means.
"""

from beepgpt.runtime.batch import Entry, RecordBatch, decode_records, next_offsets
from beepgpt.runtime.consumer import ConsumerLoop, LeaveUncommitted, Poll, RebalanceListener
from beepgpt.runtime.lifecycle import Resource, Runtime, serve
from beepgpt.runtime.ops import OpsServer

__all__ = [
    "ConsumerLoop",
    "Entry",
    "LeaveUncommitted",
    "OpsServer",
    "Poll",
    "RebalanceListener",
    "RecordBatch",
    "Resource",
    "Runtime",
    "decode_records",
    "next_offsets",
    "serve",
]
