"""Small synthetic histories whose answers are known, for training tests (no sessionizer needed)."""

from __future__ import annotations

import itertools

from beepgpt.contracts import ConversationEvent, ConversationMessage
from offline.training.examples import Example
from scorer.embeddings import Embedder, Matrix, MessageEmbeddings
from scorer.interest.features import Vocabulary
from scorer.interest.model import NOBODY
from scorer.interest.prompt import Prompt, PromptMessage
from scorer.interest.substance import has_substance

TOPIC_WORKSPACE: list[list[str]] = [
    ["the Kafka consumer lag is growing on the orders topic", "let's add partitions and more consumers"],
    ["Flink or Spark Streaming for the new pipeline?", "Flink handles event time better"],
    ["how was everyone's weekend?", "I went hiking with my family", "we tried a new recipe"],
    ["the invoice totals don't match the ledger", "finance will re-run the report"],
    ["pager went off at 3am for the API", "we need better alerting thresholds and dashboards"],
    ["lunch at noon?", "sure, the ramen place"],
]
"""Six conversations of six kinds, for the topic matcher's tests (each topic finds its own)."""

SUBJECTS = {
    "UANA": [
        "the Kafka consumer group keeps rebalancing after the deploy",
        "should we raise the partition count on the orders topic",
        "Kubernetes pods for the stream processor are crash looping",
        "broker disk usage is at ninety percent on the cluster",
    ],
    "UBO": [
        "which sourdough starter recipe did you use for the bread",
        "the new ramen place downtown has a vegetarian broth",
        "how long should the lasagna rest before cutting it",
        "I am looking for a good recipe for lemon tart",
    ],
    "UCY": [
        "the quarterly budget forecast needs the revised headcount",
        "invoice totals do not match the ledger for July",
        "can finance approve the expense report for the offsite",
        "tax filing deadline for the subsidiary is next month",
    ],
}
SMALL_TALK = ["thanks!", "good morning everyone", "ok cool", "haha nice"]
VOCAB = Vocabulary(
    users=("UANA", "UBO", "UCY", "UDEE"),
    channels=("general", "random"),
    names={"UANA": "Ana", "UBO": "Bob", "UCY": "Cyd", "UDEE": "Dee"},
)


def synthetic_examples(embedder: Embedder, repeats: int = 4) -> tuple[list[Example], MessageEmbeddings]:
    """Dee asks; whoever owns the subject answers; small talk gets nobody."""
    store = MessageEmbeddings(embedder)
    examples: list[Example] = []
    clock = itertools.count(1_700_000_000, 60)
    row = itertools.count()
    for round_ in range(repeats):
        for user, texts in SUBJECTS.items():
            for text in texts:
                examples.append(_example(f"{text} (round {round_})", user, next(clock), next(row)))
        for text in SMALL_TALK:
            examples.append(_example(text, "UANA", next(clock), next(row)))
    keys = [(e.channel, str(e.ts)) for e in examples]
    store.vectors(keys, [e.prompt.messages[0].text for e in examples])
    return examples, store


def _example(text: str, author: str, ts: int, row: int) -> Example:
    prompt = Prompt(channel="general", in_thread=False, messages=(PromptMessage("UDEE", text),))
    label = author if has_substance(prompt.texts) else NOBODY
    return Example(
        row=row,
        ts=float(ts),
        channel="general",
        conversation=("general", float(ts)),
        author=author,
        label=label,
        prompt=prompt,
        prompt_rows=(row,),
        joining=True,
    )


def vectors_of(store: MessageEmbeddings):  # type: ignore[no-untyped-def]
    def lookup(example: Example) -> Matrix:
        return store.vectors([(example.channel, str(example.ts))], [example.prompt.messages[0].text])

    return lookup


def conversation(
    texts: list[tuple[str, str]], channel: str = "general", version: int = 1
) -> ConversationEvent:
    messages = [
        ConversationMessage(ts=f"1700000{i:03d}.000100", user=u, text=t) for i, (u, t) in enumerate(texts)
    ]
    return ConversationEvent(
        kind="updated",
        conversation_id=f"{channel}:{messages[0].ts}",
        channel=channel,
        first_ts=messages[0].ts,
        last_ts=messages[-1].ts,
        version=version,
        messages=messages,
        participants=sorted({u for u, _ in texts}),
        message_count=len(messages),
    )
