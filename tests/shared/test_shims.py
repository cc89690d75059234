"""The private APIs fenced in beepgpt.shims (and sessionizer.kaskada_shim) still exist, in the
shape the shims use, on the installed versions: an upgrade that moves one fails here, loudly."""

from __future__ import annotations

import asyncio
import inspect

import aiokafka
import kaskada as kd
import kaskada._ffi as _ffi
import slack_bolt.adapter.socket_mode.async_internals as bolt_socket_internals
import slack_bolt.request.internals as bolt_request_internals
from aiohttp import web
from aiokafka.client import AIOKafkaClient
from aiokafka.consumer.group_coordinator import GroupCoordinator

from beepgpt.shims import aiohttp as aiohttp_shim
from beepgpt.shims import slack_bolt as slack_bolt_shim


def params(function: object) -> list[str]:
    assert callable(function), f"{function!r} is no longer callable"
    return list(inspect.signature(function).parameters)


# --- aiokafka -----------------------------------------------------------------------------------


async def test_aiokafka_consumer_keeps_its_client_with_force_metadata_update() -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
    try:
        client = consumer._client
        assert isinstance(client, AIOKafkaClient), f"AIOKafkaConsumer._client is {type(client)!r}"
        assert params(client.force_metadata_update) == []
    finally:
        await consumer.stop()


def test_aiokafka_coordinator_fetches_committed_offsets_with_metadata() -> None:
    assert "self._coordinator = GroupCoordinator(" in inspect.getsource(aiokafka.AIOKafkaConsumer.start), (
        "AIOKafkaConsumer.start no longer sets self._coordinator to a GroupCoordinator"
    )
    fetch = GroupCoordinator.fetch_committed_offsets
    assert inspect.iscoroutinefunction(fetch)
    assert params(fetch) == ["self", "partitions"]


# --- aiohttp ------------------------------------------------------------------------------------


async def test_aiohttp_site_keeps_its_server_and_the_bound_port_is_read() -> None:
    runner = web.AppRunner(web.Application())
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        assert isinstance(site._server, asyncio.AbstractServer), f"TCPSite._server is {type(site._server)!r}"
        port = aiohttp_shim.bound_port(site, 0)
        assert port > 0
        assert site._server.sockets[0].getsockname()[1] == port
    finally:
        await runner.cleanup()


# --- slack_bolt ---------------------------------------------------------------------------------


def test_slack_bolt_parse_body_reads_json_and_form_payloads() -> None:
    assert params(bolt_request_internals.parse_body) == ["body", "content_type"]
    assert slack_bolt_shim.parse_body('{"type": "event_callback"}', "application/json") == {
        "type": "event_callback"
    }
    form = "payload=%7B%22type%22%3A%22block_actions%22%7D"
    assert slack_bolt_shim.parse_body(form, "application/x-www-form-urlencoded") == {"type": "block_actions"}


def test_slack_bolt_socket_mode_internals_keep_their_signatures() -> None:
    run = bolt_socket_internals.run_async_bolt_app
    send = bolt_socket_internals.send_async_response
    assert inspect.iscoroutinefunction(run)
    assert params(run) == ["app", "req"]
    assert inspect.iscoroutinefunction(send)
    assert params(send) == ["client", "req", "bolt_resp", "start_time"]


# --- kaskada (sessionizer.kaskada_shim) ---------------------------------------------------------


def test_kaskada_internals_the_conversation_query_uses_are_there() -> None:
    assert callable(_ffi.Expr.literal_timedelta)
    assert params(kd.Timestream.__init__) == ["self", "ffi"]
    assert "self._ffi_expr = ffi" in inspect.getsource(kd.Timestream.__init__)
    assert params(kd.Timestream._call)[:2] == ["func", "args"]
    execute = inspect.signature(kd.Timestream._execute)
    assert list(execute.parameters)[:2] == ["self", "results"]
    assert "mode" in execute.parameters
    assert execute.parameters["mode"].kind is inspect.Parameter.KEYWORD_ONLY


# --- torch (the scorer) -------------------------------------------------------------------------


def test_torch_keeps_its_amx_tile_probe() -> None:
    import torch

    from beepgpt.shims.torch import amx_tile_supported

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    assert probe is not None, "torch.cpu._is_amx_tile_supported is gone"
    assert params(probe) == []
    assert isinstance(amx_tile_supported(), bool)
