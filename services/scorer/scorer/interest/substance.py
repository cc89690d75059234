"""Which prompts have no substance: the rule that makes "nobody" examples (docs/scoring.md).

A prompt like "good morning!", "thanks" or "standup?" predicts nothing about who will engage:
people answer it out of politeness or habit, and an alert about it would be noise. Training
labels such prompts "nobody" so the classifier learns to put its probability there instead of
on a person.

The rule, deliberately simple so anyone can predict it: strip Slack markup (mentions, channel and
link references, emoji codes, code blocks), split into words, and drop English function words and
the vocabulary of greetings, thanks, acknowledgements and pleasantries. What is left are content
words. A prompt has substance when its messages together hold at least `MIN_CONTENT_WORDS`
(default 3) content words. "Could we move the Kafka consumer to the new cluster?" has five;
"Thanks everyone, great standup!" has none.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable

MIN_CONTENT_WORDS = 3

_MARKUP = re.compile(
    r"```.*?```"  # code blocks
    r"|<[@#!][^>]*>"  # <@U123>, <#C123|general>, <!here>
    r"|<https?://[^>]*>"  # <https://…|label>
    r"|https?://\S+"
    r"|:[a-z0-9_+\-]+:",  # :tada:
    re.DOTALL | re.IGNORECASE,
)
_WORD = re.compile(r"[a-z][a-z'\-]*[a-z]|[a-z]", re.IGNORECASE)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FUNCTION_WORDS = _words(
    """
    a about above after again all also am an and any are aren't as at be because been before being
    below between both but by can can't could couldn't did didn't do does doesn't doing don't down
    during each even ever few for from further get gets got had hadn't has hasn't have haven't having
    he her here hers herself him himself his how i i'd i'll i'm i've if in into is isn't it it's its
    itself just let let's me more most much my myself no nor not now of off on once one only or other
    our ours ourselves out over own really same she should shouldn't so some still such than that
    that's the their theirs them themselves then there there's these they they're this those through
    to too under until up us very was wasn't we we'll we're we've were weren't what what's when where
    which while who who's whom why will with won't would wouldn't you you'd you'll you're you've your
    yours yourself yourselves anyone anything everyone everybody everything someone something
    somebody today tomorrow yesterday tonight
    """
)

SMALL_TALK = _words(
    """
    hi hello hey hiya yo howdy morning afternoon evening night gm gn good day bye goodbye cya later
    thanks thank thx ty tysm cheers appreciate appreciated grateful welcome np
    ok okay k kk sure yes yep yeah yup no nope nah cool great nice awesome amazing fantastic perfect
    lol lmao haha hahaha heh wow oh ah hmm um uh oops sorry
    agree agreed indeed absolutely definitely totally exactly right true correct sounds fine
    done noted ack roger will do +1
    team all folks guys everyone y'all people
    hope hoping glad happy fun
    standup stand-up sync meeting call lunch coffee brb afk back
    """
)


def content_words(text: str) -> list[str]:
    """The words of a message that carry content, lower-cased, in order."""
    plain = _MARKUP.sub(" ", text)
    return [
        word
        for word in (w.lower() for w in _WORD.findall(plain))
        if word not in FUNCTION_WORDS and word not in SMALL_TALK and len(word) > 1
    ]


@functools.lru_cache(maxsize=65536)
def _content_word_count(text: str) -> int:
    """Cached by text: the scorer asks again for the same messages at every update of a
    conversation (as the topic matcher's stems and the embeddings, each message is read once)."""
    return len(content_words(text))


def substance(texts: Iterable[str]) -> int:
    """How many content words a prompt's messages hold together."""
    return sum(_content_word_count(text) for text in texts)


def has_substance(texts: Iterable[str], minimum: int = MIN_CONTENT_WORDS) -> bool:
    return substance(texts) >= minimum
