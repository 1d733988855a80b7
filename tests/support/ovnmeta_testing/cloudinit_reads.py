"""What cloud-init 22.4's OpenStack datasource reads at boot, read the way it does (one
keep-alive connection, one path after the other), from inside a VM's namespace.

Standard library only: it is run by file path inside the VM's namespace. Prints one JSON
list: per path, [status, sha256 of the body, X-OVNMeta-Cache, milliseconds].
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import time

VERSION = "2018-08-27"   # the newest OpenStack version cloud-init 22.4 knows
# Its OpenStack reader, then the EC2 meta-data tree it walks ("latest"), as our nova double
# serves it.
EC2 = "/latest/meta-data/"
PATHS = [
    "/openstack",
    f"/openstack/{VERSION}/meta_data.json",
    f"/openstack/{VERSION}/user_data",
    f"/openstack/{VERSION}/vendor_data.json",
    f"/openstack/{VERSION}/vendor_data2.json",
    f"/openstack/{VERSION}/network_data.json",
    EC2,
    *(EC2 + k for k in ("ami-id", "ami-launch-index", "ami-manifest-path", "hostname",
                        "instance-action", "instance-id", "instance-type", "local-hostname",
                        "local-ipv4", "placement/", "placement/availability-zone",
                        "public-hostname", "public-ipv4", "public-keys/",
                        "public-keys/0/openssh-key", "reservation-id", "security-groups")),
]


def read(paths: list[str], host: str = "169.254.169.254", timeout: float = 10.0
         ) -> list[list]:
    """Each path's [status, sha256, cache header, ms]; status 0 when no answer came within
    cloud-init's 10 s (the connection is then made anew)."""
    out: list[list] = []
    conn = http.client.HTTPConnection(host, 80, timeout=timeout)
    for path in paths:
        started = time.monotonic()
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            out.append([resp.status, hashlib.sha256(body).hexdigest()[:16],
                        resp.getheader("X-OVNMeta-Cache", ""),
                        round((time.monotonic() - started) * 1000, 1)])
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection(host, 80, timeout=timeout)
            out.append([0, "", "", round((time.monotonic() - started) * 1000, 1)])
    conn.close()
    return out


if __name__ == "__main__":
    print(json.dumps(read(sys.argv[1:] or PATHS)))
