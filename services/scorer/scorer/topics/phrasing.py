"""What a followed topic is about, without the instruction around it.

People write topics as requests: "Alert me when people are making streaming technology
decisions", "Poke me when there are people chatting about SRE topics". The request part ("alert
me when people are", "poke me when there are people") is the same in every topic and is nothing
any conversation talks about; left in, it pulls every topic's vector towards the same place and
makes topics look alike. It is stripped before embedding, and so is the conversation framing
that follows it ("discussions related to …", "chatting about …"); what remains ("making
streaming technology decisions", "SRE topics like monitoring and alerting") is what
conversations are compared with. Both were measured on the calibration topics of the development
set (`offline/devset/README.md`).
"""

from __future__ import annotations

import re

_REQUEST = re.compile(
    r"""^\s*
    (?:hey\s+\w+[,!]?\s+)?                                   # "Hey BeepGPT,"
    (?:please\s+)?(?:can\s+you\s+|could\s+you\s+)?(?:please\s+)?
    (?:
        (?:tell|alert|poke|ping|notify|inform|message|dm|remind|warn|update|show|wake|beep)\s+me
      | let\s+me\s+know
      | keep\s+me\s+(?:posted|updated|informed|in\s+the\s+loop)
      | i\s+(?:want|would\s+like|['’]d\s+like)\s+to\s+(?:know|hear|be\s+told)
      | i(?:['’]m|\s+am)\s+interested\s+in
      | i\s+care\s+about
    )
    \s*(?:about|of|on|to|when(?:ever)?|if|whenever|anytime|any\s+time)?\s*
    (?:there(?:['’]s|\s+is|\s+are)\s+)?
    (?:any\s+|an?\s+)?(?:important\s+)?
    (?:(?:people|someone|somebody|anyone|anybody|folks|colleagues|the\s+team|my\s+team|we)\s+(?:is\s+|are\s+)?)?
    """,
    re.IGNORECASE | re.VERBOSE,
)


_FRAMING = re.compile(
    r"""^(?:(?:engineering|important|technical)\s+)?
    (?:discussions?|conversations?|chatting|chats?|talking|talks?|discuss(?:es|ing)?)\s*
    (?:(?:related\s+to|happening\s+on|happening\s+in|about|on|of|in|regarding|around)\s+)?""",
    re.IGNORECASE | re.VERBOSE,
)


def topic_subject(text: str) -> str:
    """The subject of a topic sentence; the sentence itself when no request wording is found.

    Two layers go: the request ("alert me when people are") and then the conversation framing
    ("discussions related to", "chatting about") — every conversation is a discussion, so those
    words only pull topics towards each other."""
    stripped = _REQUEST.sub("", text, count=1).strip(" \t\n.!?,")
    subject = _FRAMING.sub("", stripped, count=1).strip(" \t\n.!?,")
    for candidate in (subject, stripped):
        if len(candidate) >= 3:
            return candidate
    return text.strip()
