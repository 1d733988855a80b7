"""Serves neutron's API WSGI application (`neutron.wsgi.api`) on loopback.

Run by neutron's own interpreter (its venv), so it imports nothing of ovnmeta's: only the
standard library and neutron. neutron 29 has no `neutron-server` command; any WSGI server
will do, and wsgiref with a thread per request is enough for tests. neutron's config files
come from OS_NEUTRON_CONFIG_DIR and OS_NEUTRON_CONFIG_FILES, and ASGI_WORKERS=1 tells it
how many API workers run (without uwsgi it cannot count them and drops every OVN event).

    python neutron_wsgi.py PORT
"""

import socketserver
import sys
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _ThreadedServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:  # neutron logs each request itself
        pass


def main() -> None:
    port = int(sys.argv[1])
    del sys.argv[1:]  # neutron parses sys.argv as its own command line
    from neutron.wsgi.api import application
    server = make_server("127.0.0.1", port, application, server_class=_ThreadedServer,
                         handler_class=_QuietHandler)
    print("neutron-api: serving", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
