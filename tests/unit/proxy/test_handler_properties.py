"""Property tests of what a hostile VM controls: every header, the method, the path and the
body. Whatever it sends, the answer is one of the documented statuses and never carries
another VM's identity (the agent's proxy, real loopback HTTP, an echoing nova)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovnmeta.proxy import handler
from ovnmeta.core.model import PortRecord, SbSnapshot
from ovnmeta.core.model import NovaEndpoint
from ovnmeta.proxy.nova import NovaClient
from ovnmeta.core.portindex import BadAddress, PortIndex
from ovnmeta_testing.loopback import serving

NETS = ("net-1", "net-2")
PORTS = tuple(
    PortRecord(f"p{n}{i}", "", net, (f"fa:16:3e:00:0{n}:{i:02x} 10.0.0.{10 + i} "
                                     f"fd00::{10 + i:x}",),
               (("neutron:device_id", f"inst-{net}-{i}"), ("neutron:project_id", "proj")),
               True)
    for n, net in enumerate(NETS) for i in range(3))
SNAP = SbSnapshot("c1", PORTS)
OWNER = {(p.network_id, ip): p.ext("neutron:device_id")
         for p in PORTS for ip in p.mac[0].split()[1:]}
DOCUMENTED = {200, 400, 403, 404, 405, 413, 502, 504}

header_names = st.sampled_from([
    "X-OVN-Network-ID", "X-Forwarded-For", "X-Instance-ID", "X-Tenant-ID",
    "X-Instance-ID-Signature", "X-Metadata-Provider", "X-Metadata-Provider-Signature",
    "Host", "Content-Length", "Transfer-Encoding", "Connection", "X-Other"])
header_values = st.one_of(
    st.sampled_from(list(NETS) + ["10.0.0.10", "10.0.0.11", "fd00::a", "fe80::1%eth0",
                                  "10.0.0.10, 10.0.0.11", "inst-net-1-0", "", " "]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40))
requests = st.fixed_dictionaries({
    "method": st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
    "path": st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/_.-%?=&", max_size=60),
    "headers": st.lists(st.tuples(header_names, header_values), max_size=8),
    "body": st.binary(max_size=300),
})


@given(network=st.sampled_from(NETS + ("net-3", "")),
       client=st.one_of(st.sampled_from([ip for _, ip in OWNER] + ["10.0.0.99", "::1"]),
                        st.text(max_size=40)))
@settings(max_examples=400)
def test_index_answers_only_for_the_exact_owner(network: str, client: str) -> None:
    index = PortIndex.build(SNAP.ports)
    try:
        found = index.lookup(network, client)
    except BadAddress:
        return
    if found is not None:
        ip = str(ipaddress.ip_address(client.strip().split("%")[0]))
        assert OWNER.get((network, ip)) == found.instance_id


async def _echo_nova(request: web.Request) -> web.Response:
    await request.read()
    return web.json_response({"instance": request.headers.getall("X-Instance-ID", [])})


@pytest.fixture(scope="module")
def stack():
    """The proxy app before an echoing nova, on loopback, in one event loop."""
    loop = asyncio.new_event_loop()

    async def up():
        nova_app = web.Application()
        nova_app.router.add_route("*", "/{tail:.*}", _echo_nova)
        nova = TestServer(nova_app)
        await nova.start_server()
        client = NovaClient(NovaEndpoint(hosts=("127.0.0.1",), port=nova.port, timeout=5))
        srv = serving(handler.make_server(handler.MetadataProxy(lambda: SNAP, client, "s")))
        address = await srv.__aenter__()
        return nova, client, srv, address

    nova, client, srv, address = loop.run_until_complete(up())
    yield loop, address, None
    loop.run_until_complete(client.close())
    loop.run_until_complete(srv.__aexit__(None, None, None))
    loop.run_until_complete(nova.close())
    loop.close()


@given(req=requests)
@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_request_gets_a_documented_status_and_only_its_own_identity(stack, req,
                                                                       caplog) -> None:
    loop, (host, port), _ = stack

    declared = [v.strip() for k, v in req["headers"] if k.lower() == "content-length"]
    short = bool(declared) and declared[0].isdigit() and int(declared[0]) > len(req["body"])

    async def send() -> tuple[int, bytes]:
        """Raw bytes, as a hostile client writes them; the answer's status and body."""
        reader, writer = await asyncio.open_connection(host, port)
        head = f"{req['method']} /{req['path'].lstrip('/')} HTTP/1.1\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in req["headers"])
        if not any(k.lower() == "content-length" for k, _ in req["headers"]):
            head += f"Content-Length: {len(req['body'])}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + req["body"])
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), 1 if short else 10)
        except TimeoutError:
            if not short:
                raise
            # The server waits for the body it was promised, as any would (in front of
            # the socket, haproxy's `timeout http-request` bounds that wait).
            data = b""
        writer.close()
        if not data:
            return 0, b""
        status_line, _, rest = data.partition(b"\r\n")
        return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]

    status, body = loop.run_until_complete(send())
    if status == 0:  # unanswered: only a body cut short of its declared length
        assert short
        return
    assert status in DOCUMENTED, (status, body[:200])
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    if status == 200 and req["method"] != "HEAD" and body.startswith(b"{"):
        import json
        seen = json.loads(body)["instance"]
        nets = {v.strip() for k, v in req["headers"] if k.lower() == "x-ovn-network-id"}
        xff = [v.strip() for k, v in req["headers"] if k.lower() == "x-forwarded-for"]
        assert len(nets) == 1 and len(xff) == 1
        ip = str(ipaddress.ip_address(xff[0].split("%")[0]))
        assert seen == [OWNER[(nets.pop(), ip)]]
