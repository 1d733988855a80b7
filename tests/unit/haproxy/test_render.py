from ovnmeta.core.model import Frontend, NovaEndpoint
from ovnmeta.haproxy.render import BUNDLED_TEMPLATES, render, renderer
from ovnmeta.haproxy.settings import Cache, Direct, RateLimit, Settings, direct_tls_refusal

TEMPLATE = renderer(BUNDLED_TEMPLATES)
SETTINGS = Settings(socket="/run/ovnmeta/metadata_proxy")


def frontends(*ids: str, ipv6: bool = False) -> list[Frontend]:
    return [Frontend(i, f"ovnmeta-{i}", f"omt{i}i", ipv6) for i in ids]


def test_one_frontend_per_network_bound_in_its_namespace() -> None:
    text = render(TEMPLATE, frontends("b", "a"), SETTINGS)
    assert text.index("frontend net-a") < text.index("frontend net-b")
    assert "bind 169.254.169.254:80 namespace ovnmeta-a" in text
    assert "server agent /run/ovnmeta/metadata_proxy" in text
    assert "fe80::a9fe:a9fe" not in text


def test_client_headers_are_replaced_not_appended() -> None:
    text = render(TEMPLATE, frontends("a"), SETTINGS)
    assert "http-request del-header X-OVN-Network-ID" in text
    assert "http-request set-header X-OVN-Network-ID a" in text
    assert "http-request set-header X-Forwarded-For %[src]" in text
    assert "option forwardfor" not in text


def test_ipv6_bind_uses_the_inner_device() -> None:
    text = render(TEMPLATE, frontends("a", ipv6=True), SETTINGS)
    assert "bind [fe80::a9fe:a9fe]:80 interface omtai namespace ovnmeta-a" in text


def test_user_group_and_stats_socket() -> None:
    text = render(TEMPLATE, frontends("a"), Settings(socket="/s", user="nobody",
                                                     group="nogroup"), stats_socket="/x.sock")
    assert "user nobody" in text and "group nogroup" in text
    assert "stats socket /x.sock mode 600 level admin expose-fd listeners" in text


def test_global_maxconn_does_not_grow_with_networks() -> None:
    many = render(TEMPLATE, frontends(*[str(i) for i in range(300)]), SETTINGS)
    assert f"    maxconn {SETTINGS.global_maxconn}\n" in many
    one = render(TEMPLATE, frontends("a"), SETTINGS)
    assert f"    maxconn {SETTINGS.maxconn}\n" in one.split("defaults")[0]


def test_request_logging_only_when_a_target_is_set() -> None:
    assert "httplog" not in render(TEMPLATE, frontends("a"), SETTINGS)
    text = render(TEMPLATE, frontends("a"), Settings(socket="/s", log_target="/dev/log"))
    assert "log /dev/log local0" in text and "option httplog" in text


def test_rate_limit_tables_are_per_network_and_versions_selectable() -> None:
    assert "stick-table" not in render(TEMPLATE, frontends("a"), SETTINGS)
    limited = Settings(socket="/s", rate_limit=RateLimit(base_query_rate_limit=3))
    text = render(TEMPLATE, frontends("a", "b"), limited)
    assert "backend rl-base-a" in text and "backend rl-base-b" in text
    assert "track-sc0 src table rl-base-a if { src 0.0.0.0/0 }" in text
    assert "deny deny_status 429 if { sc_http_req_rate(0) gt 3 }" in text
    both = Settings(socket="/s", rate_limit=RateLimit(ip_versions=(4, 6)))
    assert "track-sc0 src table rl-base-a\n" in render(TEMPLATE, frontends("a"), both)


def test_direct_path_is_gated_and_replaces_identity() -> None:
    direct = Direct.for_nova("/r.sock", NovaEndpoint(hosts=("10.1.0.1", "fd00::1"), port=8775,
                                                     timeout=2.5))
    text = render(TEMPLATE, frontends("a", "b"), Settings(socket="/s", direct=direct),
                  state_dir="/st")
    assert "map_ip(/st/maps/a.map) if { method GET HEAD } { nbsrv(ovnmeta_ready) gt 0 } " \
           "{ nbsrv(ovnmeta_nova) gt 0 }" in text
    assert text.count("use_backend ovnmeta_nova if { var(txn.ovnmeta_vm) -m found }") == 2
    nova = text.split("backend ovnmeta_nova\n")[1]
    for header in ("X-Instance-ID", "X-Tenant-ID", "X-Instance-ID-Signature",
                   "X-Metadata-Provider", "X-Metadata-Provider-Signature"):
        assert f"http-request del-header {header}\n" in nova
        assert nova.index(f"del-header {header}\n") < nova.index("set-header X-Instance-ID ")
    assert "server nova0 10.1.0.1:8775 maxconn 16 check" in nova
    assert "server nova1 ipv6@fd00::1:8775 maxconn 16 check" in nova
    assert "timeout server 2500ms" in nova and "Host 10.1.0.1:8775" in nova
    assert "server agent /r.sock check inter 500ms" in text
    assert "ovnmeta_nova" not in render(TEMPLATE, frontends("a"), SETTINGS)


def test_https_nova_with_neutrons_tls_options() -> None:
    """haproxy speaks TLS to nova: auth_ca_cert as ca-file (the system store without one),
    the host name as SNI and the name checked, the client certificate in one file,
    nova_metadata_insecure as `verify none`."""
    def nova_line(**kwargs) -> str:
        endpoint = NovaEndpoint(hosts=kwargs.pop("hosts", ("nova.example",)), port=8775,
                                protocol="https", **kwargs)
        text = render(TEMPLATE, frontends("a"), Settings(socket="/s", direct=Direct.for_nova(
            "/r.sock", endpoint, "/st/nova-client.pem")), state_dir="/st")
        return text.split("server nova0 ")[1].split("\n")[0]

    assert nova_line(ca_cert="/ca.pem").startswith(
        "nova.example:8775 ssl verify required ca-file /ca.pem sni str(nova.example) "
        "verifyhost nova.example maxconn 16 check ")
    assert "ca-file @system-ca sni" in nova_line()
    assert nova_line(ca_cert="/ca.pem", client_cert="/c.pem", client_key="/c.key").startswith(
        "nova.example:8775 ssl verify required ca-file /ca.pem sni str(nova.example) "
        "verifyhost nova.example crt /st/nova-client.pem maxconn 16 check ")
    assert nova_line(insecure=True).startswith("nova.example:8775 ssl verify none maxconn 16 check ")
    # haproxy matches DNS names only: an IP is checked by its chain, against auth_ca_cert.
    assert nova_line(hosts=("10.0.0.5",), ca_cert="/ca.pem").startswith(
        "10.0.0.5:8775 ssl verify required ca-file /ca.pem maxconn 16 check ")
    plain = render(TEMPLATE, frontends("a"), Settings(socket="/s", direct=(
        Direct.for_nova("/r.sock", NovaEndpoint(hosts=("n",), port=1)))), state_dir="/st")
    assert "server nova0 n:1 maxconn 16 check " in plain


def test_the_direct_path_refuses_an_ip_nova_trusted_through_the_system_store() -> None:
    def refusal(**kwargs) -> str:
        return direct_tls_refusal(NovaEndpoint(port=8775, protocol="https", **kwargs))
    assert "auth_ca_cert is not set" in refusal(hosts=("10.0.0.5",))
    assert refusal(hosts=("10.0.0.5",), ca_cert="/ca.pem") == ""
    assert refusal(hosts=("nova.example",)) == ""
    assert refusal(hosts=("10.0.0.5",), insecure=True) == ""
    assert direct_tls_refusal(NovaEndpoint(hosts=("10.0.0.5",), port=80)) == ""


def test_the_direct_path_queues_for_nova_fewest_in_flight_first() -> None:
    direct = Direct.for_nova("/r.sock", NovaEndpoint(hosts=("n",), port=1, timeout=3),
                             maxconn=7)
    text = render(TEMPLATE, frontends("a", "b"), Settings(socket="/s", direct=direct),
                  state_dir="/st")
    assert text.count("http-request track-sc0 var(txn.ovnmeta_vm),field(1,|) table "
                      "ovnmeta_vms if { var(txn.ovnmeta_vm) -m found }") == 2
    assert text.count("http-request set-priority-class sc0_conn_cur if") == 2
    assert "stick-table type string len 64 size 100k expire 60s store conn_cur" in text
    nova = text.split("backend ovnmeta_nova\n")[1]
    assert "timeout queue 3000ms" in nova and "server nova0 n:1 maxconn 7 check" in nova
    # neutron's rate limiting caps each VM itself, and owns sc0: no second policy then.
    limited = render(TEMPLATE, frontends("a"), Settings(socket="/s", direct=direct,
                                                        rate_limit=RateLimit()),
                     state_dir="/st")
    assert "ovnmeta_vms" not in limited and "set-priority-class" not in limited
    assert "ovnmeta_nova_busy" not in limited


def test_a_vm_past_its_share_goes_to_the_busy_lane_which_tracks_nova_health() -> None:
    direct = Direct.for_nova("/r.sock", NovaEndpoint(hosts=("n", "m"), port=1),
                             maxconn=16, vm_maxconn=3)
    text = render(TEMPLATE, frontends("a", "b"), Settings(socket="/s", direct=direct),
                  state_dir="/st")
    assert text.count("use_backend ovnmeta_nova_busy if { var(txn.ovnmeta_vm) -m found } "
                      "{ sc0_conn_cur gt 3 }") == 2
    # Before the main lane's rule, or no request would ever reach the busy lane.
    frontend = text.split("frontend ")[1]
    assert frontend.index("ovnmeta_nova_busy") < frontend.index("use_backend ovnmeta_nova ")
    busy = text.split("backend ovnmeta_nova_busy\n")[1].split("\nbackend ")[0]
    assert "server nova0 n:1 maxconn 3 track ovnmeta_nova/nova0 " in busy
    assert "server nova1 m:1 maxconn 3 track ovnmeta_nova/nova1 " in busy
    assert "http-request set-header X-Instance-ID-Signature" in busy and " check" not in busy
    off = render(TEMPLATE, frontends("a"), Settings(socket="/s", direct=Direct.for_nova(
        "/r.sock", NovaEndpoint(hosts=("n",), port=1), vm_maxconn=0)), state_dir="/st")
    assert "ovnmeta_nova_busy" not in off and "set-priority-class" in off


def test_haproxy_runs_one_thread_unless_told() -> None:
    assert "\n    nbthread 1\n" in render(TEMPLATE, frontends("a"), Settings(socket="/s"))
    assert "nbthread" not in render(TEMPLATE, frontends("a"), Settings(socket="/s", threads=0))


def test_a_frontend_rendered_before_follows_new_settings_and_templates(tmp_path) -> None:
    """Each frontend's text is kept between renders: a change of settings, state directory
    or template renders it again, and the text equals the template's own include."""
    plain = render(TEMPLATE, frontends("a"), SETTINGS)
    limited = render(TEMPLATE, frontends("a"), Settings(socket="/run/ovnmeta/metadata_proxy",
                                                        rate_limit=RateLimit()))
    assert "track-sc0 src table rl-base-a" in limited and "rl-base-a" not in plain
    assert render(TEMPLATE, frontends("a"), SETTINGS) == plain
    direct = Settings(socket="/s", direct=Direct.for_nova("/r.sock", NovaEndpoint(
        hosts=("127.0.0.1",), port=8775, timeout=2.5)))
    assert "map_ip(/one/maps/a.map)" in render(TEMPLATE, frontends("a"), direct,
                                               state_dir="/one")
    assert "map_ip(/two/maps/a.map)" in render(TEMPLATE, frontends("a"), direct,
                                               state_dir="/two")
    # A template of [haproxy] templates_dir that includes the frontends itself.
    (tmp_path / "frontend.cfg.j2").write_text((BUNDLED_TEMPLATES / "frontend.cfg.j2")
                                              .read_text())
    (tmp_path / "haproxy.cfg.j2").write_text(
        (BUNDLED_TEMPLATES / "haproxy.cfg.j2").read_text().split("{#- each frontend")[0]
        + '{% for f in frontends %}\n{% include "frontend.cfg.j2" %}\n{% endfor %}\n')
    own = renderer(tmp_path)
    for settings in (SETTINGS, direct):
        fronts = frontends("b", "a", ipv6=True)
        assert render(own, fronts, settings, state_dir="/s") \
            == render(TEMPLATE, fronts, settings, state_dir="/s")


def test_with_the_cache_known_vms_gets_are_answered_by_haproxy_and_misses_go_to_the_agent(
        ) -> None:
    class Group:
        enabled, ttl, max_bytes, max_entry_bytes = True, 15.0, 64 * 2**20, 2**20
    cache = Cache.from_conf(Group)
    assert cache == Cache(total_mb=16, max_object_bytes=2**20, max_age=15)
    direct = Direct.for_nova("/r.sock", NovaEndpoint(hosts=("n",), port=1), cache=cache)
    text = render(TEMPLATE, frontends("a", "b"), Settings(socket="/s", direct=direct),
                  state_dir="/st")
    section = text.split("\ncache ovnmeta\n")[1].split("\n\n")[0]
    for line in ("total-max-size 16", "max-object-size 1048576", "max-age 15"):
        assert f"    {line}\n" in section + "\n"
    frontend = text.split("frontend net-a\n")[1].split("\nfrontend ")[0]
    # The key is the instance the map names, set as Host before the cache is looked up;
    # nova down does not keep haproxy from answering what it holds.
    assert "map_ip(/st/maps/a.map) if { method GET HEAD } { nbsrv(ovnmeta_ready) gt 0 }\n" \
        in frontend
    assert frontend.index("set-header Host %[var(txn.ovnmeta_vm),field(1,|)] if") \
        < frontend.index("http-request cache-use ovnmeta if { var(txn.ovnmeta_vm) -m found }")
    assert "http-response cache-store ovnmeta if { var(txn.ovnmeta_vm) -m found }" in frontend
    assert "use_backend ovnmeta_nova" not in frontend
    # Nothing goes from haproxy to nova: no lanes to it, no health checks of it.
    assert "ovnmeta_nova" not in text and "backend ovnmeta_ready" in text
    assert "default_backend ovnmeta_agent" in frontend
    Group.ttl = 0.5   # haproxy counts whole seconds: the agent marks all no-store then
    assert Cache.from_conf(Group).max_age == 1
    Group.enabled, Group.ttl = False, 15.0
    assert Cache.from_conf(Group) is None
