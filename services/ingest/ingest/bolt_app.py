"""The Bolt app: middleware and listeners, independent of how Slack reaches it (Socket Mode or HTTP).

Choices that differ from Bolt's defaults, and why:

- `process_before_response=True`: the listener runs before Bolt answers Slack, so the answer can
  say whether the event was taken (200/ack) or refused because the buffer is full (503 / no ack,
  and Slack redelivers). Event listeners wait until Kafka has the record, within the ack budget
  (see `intake`), so an ack means "durable" unless Kafka is slower than the budget.
  Listeners that need other I/O (slash commands, App Home) call `ack()` first and buffer their
  records through the same publisher, or use Bolt's lazy listeners.
- `authorize` answers from the identity fetched once at start-up (auth.test), instead of Bolt's
  default single-workspace authorization that calls auth.test lazily on the first event and, if
  Slack is unreachable then, acknowledges and drops that event.
- Bolt's self-event filter is off: the normalizer drops the bot's own messages (and every other
  bot's) and counts them, instead of Bolt dropping them silently.

New Slack features (commands, App Home, buttons) plug in as listener modules: pass their
`register(app, intake)` functions as `extra_listeners`; they run before the catch-all that
dead-letters unknown event types.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.retry import retry_call
from ingest.intake import Intake, Overloaded, Refused
from ingest.listeners import Register, register_all
from ingest.metrics import EVENTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BotIdentity:
    """Who the app is in the workspace, from auth.test: needed to authorize and to spot self events."""

    team_id: str | None
    bot_user_id: str | None
    bot_id: str | None
    bot_token: str
    enterprise_id: str | None = None

    @classmethod
    async def fetch(
        cls,
        client: AsyncWebClient,
        timeout_s: float = 60.0,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> BotIdentity:
        """auth.test with backoff: Slack (or the stand-in) may come up after us; a bad token fails fast."""

        def on_retry(attempt: int, delay: float, error: BaseException) -> None:
            log.warning("auth.test failed; retrying", extra={"error": repr(error)})

        try:
            result = await retry_call(
                client.auth_test,
                "auth.test",
                None,
                0.1,
                5.0,
                within_s=timeout_s,
                retry_on=_worth_retrying,
                on_retry=on_retry,
                sleep=sleep,
            )
        except Exception as failure:
            if not _worth_retrying(failure):
                raise
            raise TimeoutError(f"auth.test did not succeed within {timeout_s:.0f}s: {failure!r}") from None
        return cls(
            team_id=result.get("team_id"),
            bot_user_id=result.get("user_id"),
            bot_id=result.get("bot_id"),
            bot_token=client.token or "",
            enterprise_id=result.get("enterprise_id"),
        )

    def authorizer(self) -> IdentityAuthorize:
        return IdentityAuthorize(self)


_BAD_TOKEN = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked"})


def _worth_retrying(error: BaseException) -> bool:
    """Everything but a bad token: connection refused, timeouts, 5xx, Slack not up yet."""
    return not (isinstance(error, SlackApiError) and error.response.get("error") in _BAD_TOKEN)


class IdentityAuthorize(AsyncAuthorize):  # type: ignore[misc]
    """Bolt's `authorize`, answered from the start-up identity with no I/O and no per-request
    argument introspection (Bolt's callable wrapper costs more than the rest of the event path)."""

    def __init__(self, identity: BotIdentity) -> None:
        self.identity = identity

    async def __call__(self, **_: Any) -> AuthorizeResult:
        identity = self.identity
        return AuthorizeResult(
            enterprise_id=identity.enterprise_id,
            team_id=identity.team_id,
            bot_token=identity.bot_token,
            bot_user_id=identity.bot_user_id,
            bot_id=identity.bot_id,
        )


def build_app(
    intake: Intake,
    identity: BotIdentity,
    *,
    signing_secret: str,
    api_url: str,
    extra_listeners: Sequence[Register] = (),
) -> AsyncApp:
    """The ingest Bolt app: global middleware, the event listeners, then `extra_listeners`."""
    app = AsyncApp(
        name="beepgpt-ingest",
        logger=logging.getLogger("ingest.bolt"),
        client=AsyncWebClient(base_url=api_url),
        signing_secret=signing_secret,
        authorize=identity.authorizer(),
        # after signature verification, before anything that assumes a well-formed body
        before_authorize=RejectMalformedEnvelopes(intake),
        process_before_response=True,
        ignoring_self_events_enabled=False,
        ignoring_self_assistant_message_events_enabled=False,
        # assistant threads and workflow steps are not used: skip their per-request middleware
        attaching_conversation_kwargs_enabled=False,
        attaching_function_token_enabled=False,
    )
    app.error(_on_error)
    register_all(app, intake, extra_listeners)
    return app


class RejectMalformedEnvelopes(AsyncMiddleware):  # type: ignore[misc]
    """Global middleware: an `event_callback` whose `event` is not an object breaks Bolt's own
    middleware (500) or matches no listener (404), and Slack would retry it forever either way.
    It runs right after signature verification (as Bolt's `before_authorize`) and dead-letters
    such bodies instead."""

    def __init__(self, intake: Intake) -> None:
        self._intake = intake

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        body = req.body
        if body.get("type") == "event_callback":
            event = body.get("event")
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                try:
                    await self._intake.receive(body)  # the normalizer rejects it with the precise reason
                except Refused as refused:
                    return _refusal(refused, body)
                return BoltResponse(status=200, body="")
        return await next()


def _refusal(error: Refused, body: dict[str, Any]) -> BoltResponse:
    """503 so Slack retries (over Socket Mode any non-200 means "no ack")."""
    what = "buffer full" if isinstance(error, Overloaded) else "not published"
    log.warning(f"event refused: {what}", extra={"event_id": body.get("event_id"), "error": str(error)})
    return BoltResponse(status=503, body=f"{what}, retry later")


async def _on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
    """Refused (buffer full, or stopping before Kafka took it) → 503; anything else → 500."""
    if isinstance(error, Refused):
        return _refusal(error, body)
    EVENTS.labels("failed", "listener_error").inc()
    log.error("listener failed", exc_info=error, extra={"event_id": body.get("event_id")})
    return BoltResponse(status=500, body="")
