"""The topic matcher: conversations against topics people follow, written in their own words.

- `phrasing`: strips the instruction around a topic ("alert me when …") before embedding it;
- `matcher`: scores a conversation's message vectors against topics, with the default threshold;
- `feedback`: adapts a topic from "useful / not useful" clicks.
"""
