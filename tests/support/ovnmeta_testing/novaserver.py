"""A nova-compatible metadata API for the demo and the tests (`ovnmeta-nova-metadata`).

It behaves like nova behind a neutron proxy: it requires X-Instance-ID, X-Tenant-ID and
X-Instance-ID-Signature, checks the signature in constant time, and serves the OpenStack and
EC2 trees cloud-init reads, for the instances described in a JSON or YAML file:

    instances:
      <instance uuid>:
        project_id: ...
        hostname: vm1
        public_keys: {mykey: "ssh-ed25519 AAAA... user@host"}
        user_data: "#cloud-config\\n..."
        network_data: {...}          # optional
        vendor_data: {...}           # optional
        delay: 0.5                   # optional: seconds every answer for it takes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import ssl
import sys
from pathlib import Path

import yaml
from aiohttp import web

from ovnmeta.core.signing import signature_valid

LOG = logging.getLogger("ovnmeta_testing.novaserver")
OPENSTACK_VERSIONS = ["2012-08-10", "2013-04-04", "2013-10-17", "2015-10-15", "2016-06-30",
                      "2016-10-06", "2017-02-22", "2018-08-27", "2020-10-14", "latest"]
EC2_VERSIONS = ["1.0", "2007-01-19", "2007-03-01", "2007-08-29", "2007-10-10", "2007-12-15",
                "2008-02-01", "2008-09-01", "2009-04-04", "latest"]
PASSWORD_MAX = 256


def load_instances(path: str) -> dict[str, dict]:
    data = yaml.safe_load(Path(path).read_text()) or {}
    instances = data.get("instances", data)
    if not isinstance(instances, dict):
        raise ValueError(f"{path}: 'instances' must map instance ids to their data")
    return {str(k): dict(v or {}) for k, v in instances.items()}


def _plain(text: str, status: int = 200) -> web.Response:
    return web.Response(status=status, text=text, content_type="text/plain")


def _json(data: object) -> web.Response:
    return web.Response(text=json.dumps(data), content_type="application/json")


def meta_data_json(iid: str, inst: dict) -> dict:
    keys = inst.get("public_keys", {})
    return {
        "uuid": iid,
        "name": inst.get("name", inst.get("hostname", iid)),
        "hostname": inst.get("hostname", iid),
        "launch_index": 0,
        "availability_zone": inst.get("availability_zone", "nova"),
        "project_id": inst.get("project_id", ""),
        "public_keys": keys,
        "keys": [{"name": n, "type": "ssh", "data": k} for n, k in keys.items()],
        "meta": inst.get("meta", {}),
        "devices": [],
    }


def ec2_meta_data(iid: str, inst: dict, client_ip: str) -> dict[str, object]:
    hostname = inst.get("hostname", iid)
    keys = inst.get("public_keys", {})
    return {
        "ami-id": inst.get("ami_id", "ami-00000001"),
        "ami-launch-index": "0",
        "ami-manifest-path": "FIXME",
        "hostname": hostname,
        "instance-action": "none",
        "instance-id": inst.get("ec2_id", "i-" + iid.replace("-", "")[:8]),
        "instance-type": inst.get("flavor", "m1.small"),
        "local-hostname": hostname,
        "local-ipv4": inst.get("local_ipv4", client_ip),
        "placement": {"availability-zone": inst.get("availability_zone", "nova")},
        "public-hostname": hostname,
        "public-ipv4": inst.get("public_ipv4", ""),
        "public-keys": {f"{i}={name}": {"openssh-key": key}
                        for i, (name, key) in enumerate(keys.items())},
        "reservation-id": "r-" + iid[:8],
        "security-groups": "default",
    }


def _walk_ec2(tree: dict[str, object], parts: list[str]) -> web.Response:
    node: object = tree
    for part in parts:
        if not isinstance(node, dict):
            raise web.HTTPNotFound()
        if part in node:
            node = node[part]
            continue
        # public-keys/0/ addresses the entry named "0=name"
        match = [v for k, v in node.items() if k.split("=", 1)[0] == part]
        if not match:
            raise web.HTTPNotFound()
        node = match[0]
    if isinstance(node, dict):
        # public-keys lists "0=name" entries without a slash, as EC2 does.
        in_keys = parts[-1:] == ["public-keys"]
        return _plain("\n".join(k + ("/" if isinstance(v, dict) and not in_keys else "")
                                 for k, v in node.items()))
    return _plain(str(node))


REQUESTS_PATH = "/_ovnmeta_testing/requests"   # how many VMs' requests reached this nova


class NovaMetadata:
    def __init__(self, instances: dict[str, dict], secret: str,
                 source: str | None = None) -> None:
        self.instances = instances
        self.source = source  # the instances file: reread when it changed
        self._source_mtime = os.stat(source).st_mtime_ns if source else 0
        self.secret = secret
        self.passwords: dict[str, str] = {}
        self.requests = 0
        self.failing = 0   # a status to answer everything with (nova broken), 0: none
        self.in_flight: dict[str, int] = {}
        self.peak: dict[str, int] = {}

    def _identify(self, request: web.Request) -> tuple[str, dict]:
        iid = request.headers.get("X-Instance-ID")
        tenant = request.headers.get("X-Tenant-ID")
        signature = request.headers.get("X-Instance-ID-Signature")
        if not iid:
            raise web.HTTPBadRequest(text="X-Instance-ID header is missing from request.")
        if not tenant:
            raise web.HTTPBadRequest(text="X-Tenant-ID header is missing from request.")
        if not signature:
            raise web.HTTPBadRequest(text="X-Instance-ID-Signature header is missing.")
        if "," in iid or not signature_valid(self.secret, iid, signature):
            LOG.warning("X-Instance-ID-Signature for %s does not match", iid)
            raise web.HTTPForbidden(text="Invalid proxy request signature.")
        if self.source:   # a VM booted since, or its data changed
            mtime = os.stat(self.source).st_mtime_ns
            if mtime != self._source_mtime:
                self.instances, self._source_mtime = load_instances(self.source), mtime
        inst = self.instances.get(iid)
        if inst is None or inst.get("project_id", tenant) != tenant:
            raise web.HTTPNotFound(text="Instance not found.")
        return iid, inst

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == REQUESTS_PATH:   # the tests' question, not a VM's: not counted
            return _plain(str(self.requests))
        if "X-Forwarded-For" in request.headers:   # a VM's, not haproxy's health check
            self.requests += 1
        if self.failing:
            return _plain("nova is failing on purpose", self.failing)
        path = request.path.rstrip("/")
        parts = [p for p in path.split("/") if p]
        if not parts:
            return _plain("\n".join(EC2_VERSIONS))
        if parts == ["openstack"]:
            return _plain("\n".join(OPENSTACK_VERSIONS))
        iid, inst = self._identify(request)
        now = self.in_flight[iid] = self.in_flight.get(iid, 0) + 1
        if now > self.peak.get(iid, 0):   # the tests read how many one VM had here at once
            self.peak[iid] = now
            LOG.info("instance %s: %d requests in flight at once, the most yet", iid, now)
        try:
            if inst.get("delay"):   # a slow answer for this instance: nova under load
                await asyncio.sleep(float(inst["delay"]))
            if parts[0] == "openstack":
                return await self._openstack(request, iid, inst, parts[1:])
            if parts[0] in EC2_VERSIONS:
                return self._ec2(request, iid, inst, parts[1:])
            raise web.HTTPNotFound()
        finally:
            self.in_flight[iid] -= 1

    async def _openstack(self, request: web.Request, iid: str, inst: dict,
                         parts: list[str]) -> web.Response:
        if parts[0] not in OPENSTACK_VERSIONS:
            raise web.HTTPNotFound()
        if len(parts) == 1:
            items = ["meta_data.json", "password", "vendor_data.json", "network_data.json",
                     "vendor_data2.json"]
            if "user_data" in inst:
                items.append("user_data")
            return _plain("\n".join(items))
        item = "/".join(parts[1:])
        if item == "meta_data.json":
            return _json(meta_data_json(iid, inst))
        if item == "user_data":
            if "user_data" not in inst:
                raise web.HTTPNotFound()
            return web.Response(body=str(inst["user_data"]).encode(),
                                content_type="application/octet-stream")
        if item == "network_data.json":
            return _json(inst.get("network_data", {"links": [], "networks": [], "services": []}))
        if item == "vendor_data.json":
            return _json(inst.get("vendor_data", {}))
        if item == "vendor_data2.json":
            return _json({"static": inst.get("vendor_data", {})})
        if item == "password":
            return await self._password(request, iid)
        raise web.HTTPNotFound()

    async def _password(self, request: web.Request, iid: str) -> web.Response:
        if request.method == "GET":
            return _plain(self.passwords.get(iid, ""))
        if request.method != "POST":
            raise web.HTTPBadRequest()
        body = await request.read()
        if len(body) > PASSWORD_MAX:
            raise web.HTTPBadRequest(text="Request is too large.")
        if self.passwords.get(iid):
            raise web.HTTPConflict(text="Password already set.")
        self.passwords[iid] = body.decode(errors="replace")
        return _plain("")

    def _ec2(self, request: web.Request, iid: str, inst: dict,
             parts: list[str]) -> web.Response:
        if not parts:
            return _plain("meta-data/\nuser-data" if "user_data" in inst else "meta-data/")
        if parts == ["user-data"]:
            if "user_data" not in inst:
                raise web.HTTPNotFound()
            return web.Response(body=str(inst["user_data"]).encode(),
                                content_type="application/octet-stream")
        if parts[0] != "meta-data":
            raise web.HTTPNotFound()
        client = request.headers.get("X-Forwarded-For", "")
        return _walk_ec2(ec2_meta_data(iid, inst, client), parts[1:])


def make_app(nova: NovaMetadata) -> web.Application:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", nova.handle)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ovnmeta-nova-metadata", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", required=True, help="JSON/YAML file of instances")
    parser.add_argument("--secret", default="", help="metadata_proxy_shared_secret")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8775)
    parser.add_argument("--tls-cert", help="serve https with this certificate (PEM)")
    parser.add_argument("--tls-key", help="its private key")
    parser.add_argument("--tls-client-ca", help="require a client certificate signed by it")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s nova-metadata %(message)s")
    try:
        nova = NovaMetadata(load_instances(args.instances), args.secret,
                            source=args.instances)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"ovnmeta-nova-metadata: {exc}", file=sys.stderr)
        return 2
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_client_ca:
            tls.verify_mode = ssl.CERT_REQUIRED
            tls.load_verify_locations(args.tls_client_ca)
    web.run_app(make_app(nova), host=args.host, port=args.port, access_log=None, ssl_context=tls,
                print=lambda *_: LOG.info("listening on %s:%d", args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
