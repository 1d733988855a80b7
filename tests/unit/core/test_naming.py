from ovnmeta.core import naming


def test_neutron_switch_gives_network_uuid() -> None:
    assert naming.network_id({"name": "neutron-1234", "name2": "private"}) == "1234"


def test_other_switch_falls_back_to_its_name() -> None:
    assert naming.network_id({"name": "ls-blue"}) == "ls-blue"
    assert naming.network_id({}) is None


def test_devices_fit_ifnamsiz_and_differ_for_shared_prefixes() -> None:
    a = "0123456789abcdef0123-aaaa"
    b = "0123456789abcdef0123-bbbb"
    names = {naming.outer_device(a), naming.inner_device(a), naming.outer_device(b),
             naming.inner_device(b)}
    assert len(names) == 4
    assert all(len(n) <= naming.IFNAMSIZ for n in names)


def test_namespace_round_trip() -> None:
    ns = naming.namespace("abc")
    assert ns == "ovnmeta-abc"
    assert naming.network_from_namespace(ns) == "abc"
    assert naming.network_from_namespace("qdhcp-abc") is None


def test_outer_devices_are_recognised_by_their_whole_shape() -> None:
    assert naming.is_outer_device(naming.outer_device("net-1"))
    assert not naming.is_outer_device(naming.inner_device("net-1"))
    for other in ("omt", "omto", "omtxxxxxxxxxxo", "omt0123456789ao", "tap0123456789o",
                  "br-int", "omt0123456789o"[:-1]):
        assert not naming.is_outer_device(other), other
