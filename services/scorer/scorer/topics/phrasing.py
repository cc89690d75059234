"""What a followed topic is about, without the instruction around it.

People write topics as requests: "Alert me when people are making streaming technology
decisions", "Poke me when there are people chatting about SRE topics". The request part ("alert
me when people are", "poke me when there are people") is the same in every topic and is nothing
any conversation talks about; left in, it pulls every topic's vector towards the same place and
makes topics look alike. It is stripped before embedding; what remains ("making streaming
technology decisions") is what conversations are compared with. Measured on the development
set, stripping raises the mean best-threshold F1 and the AUC of the hardest topic (see
`services/scorer/devset/README.md`).
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


def topic_subject(text: str) -> str:
    """The subject of a topic sentence; the sentence itself when no request wording is found."""
    stripped = _REQUEST.sub("", text, count=1).strip(" \t\n.!?,")
    return stripped if len(stripped) >= 3 else text.strip()
