"""A local Slack that the official clients (slack_sdk, slack_bolt) can be pointed at.

Slack cannot be reached from development machines and CI, and tests must see exactly what an app
sends to Slack and how it copes when Slack misbehaves. The stand-in speaks the Web API methods
BeepGPT calls, Socket Mode and signed HTTP events, and records everything.

    async with SlackStandin() as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        ack = await slack.push_event(slack.events.message("C0GENERAL", "U0ALICE", "hi"))
        posts = await slack.wait_for_posts(1)
"""

from .errors import SlackError
from .events import EventBuilder
from .export import write_export
from .faults import Fault, Faults
from .http_events import HttpEventsSender, HttpReply
from .identity import AppIdentity
from .recorder import Ack, ApiCall, Post, Recorder
from .remote import RemoteStandin
from .server import SlackStandin
from .signing import signature, signed_headers
from .socket_mode import AckTimeout, NoConnection
from .workspace import Channel, User, Workspace

__all__ = [
    "Ack",
    "AckTimeout",
    "ApiCall",
    "AppIdentity",
    "Channel",
    "EventBuilder",
    "Fault",
    "Faults",
    "HttpEventsSender",
    "HttpReply",
    "NoConnection",
    "Post",
    "Recorder",
    "RemoteStandin",
    "SlackError",
    "SlackStandin",
    "User",
    "Workspace",
    "signature",
    "signed_headers",
    "write_export",
]
