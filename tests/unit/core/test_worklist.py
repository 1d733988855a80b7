"""Which networks a reconcile pass looks at and may change."""

from ovnmeta.core import naming
from ovnmeta.core.model import NetworkSpec, PortRecord
from ovnmeta.core.worklist import PassInputs, to_check, to_converge


def spec(net: str) -> NetworkSpec:
    return NetworkSpec(network_id=net, namespace=naming.namespace(net),
                       outer=naming.outer_device(net), inner=naming.inner_device(net),
                       iface_id=f"lp-{net}", mac="fa:16:3e:00:00:01",
                       addresses=frozenset({"10.0.0.2/24"}), mtu=1442, vm_ports=1)


DESIRED = {n: spec(n) for n in ("a", "b", "c")}
SETTLED = PassInputs(desired=DESIRED, present=frozenset(DESIRED), ready=frozenset(DESIRED),
                     plugged={DESIRED[n].outer: DESIRED[n].iface_id for n in DESIRED})


def inputs(**changes) -> PassInputs:
    return PassInputs(**{**SETTLED.__dict__, **changes})


def test_a_settled_host_with_no_news_checks_nothing() -> None:
    assert to_check(SETTLED) == set()


def test_a_full_resync_checks_every_desired_and_present_network() -> None:
    assert to_check(inputs(full=True, present=frozenset({"a", "old"}))) == {"a", "b", "c",
                                                                            "old"}


def test_each_reason_to_look_brings_its_network_only() -> None:
    assert to_check(inputs(dirty=frozenset({"b"}))) == {"b"}
    assert to_check(inputs(present=frozenset({"a", "b"}))) == {"c"}        # not built yet
    assert to_check(inputs(ready=frozenset({"a", "c"}))) == {"b"}          # not converged
    assert to_check(inputs(present=frozenset({*DESIRED, "gone"}))) == {"gone"}
    assert to_check(inputs(retry_due=frozenset({"c"}))) == {"c"}
    assert to_check(inputs(watched=frozenset({"a"}))) == {"a"}


def test_a_port_plugged_or_unplugged_here_brings_its_network() -> None:
    port = PortRecord("vm-1", "", "b", ("fa:16:3e:00:00:09 10.0.0.9",), (), True)
    other = PortRecord("vm-2", "", "c", ("fa:16:3e:00:00:0a 10.0.0.10",), (), True)
    assert to_check(inputs(moved_ports=frozenset({"vm-1"}), ports=(port, other))) == {"b"}


def test_a_ready_network_whose_ovs_port_changed_is_checked() -> None:
    plugged = dict(SETTLED.plugged)
    plugged[DESIRED["a"].outer] = "someone-else"
    del plugged[DESIRED["b"].outer]
    assert to_check(inputs(plugged=plugged)) == {"a", "b"}


def test_a_network_backing_off_waits_unless_the_pass_is_full() -> None:
    waiting = inputs(backing_off=frozenset({"b"}))
    assert to_converge(waiting, {"c", "b", "a"}) == ["a", "c"]
    assert to_converge(inputs(backing_off=frozenset({"b"}), full=True), {"b"}) == ["b"]


def test_nothing_is_removed_while_the_sb_cannot_be_refreshed() -> None:
    offline = inputs(may_delete=False, present=frozenset({*DESIRED, "gone"}))
    assert to_converge(offline, {"a", "gone"}) == ["a"]
    assert to_converge(inputs(), {"a", "gone"}) == ["a", "gone"]


def test_the_rolling_resync_looks_at_the_oldest_few_and_each_within_an_interval() -> None:
    from ovnmeta.core.worklist import sweep
    nets = [f"n{i:03}" for i in range(200)]
    # All looked at together at t = 0 (the first, full pass): from t = 60 on, 4 a pass.
    checked = {n: 0.0 for n in nets}
    assert sweep(nets, checked, 59.9, 60, 1) == frozenset()
    assert len(sweep(nets, checked, 60, 60, 1)) == 4
    # A pass a second from then on looks at each network once in the next 50 passes.
    seen, t = [], 60.0
    while len(seen) < 200:
        due = sweep(nets, checked, t, 60, 1)
        assert due and not set(due) & set(seen)
        seen += sorted(due)
        checked.update({n: t for n in due})
        t += 1
    assert t - 60 <= 60
    # The oldest go first; a network never looked at is the oldest of all.
    checked["n007"] = -5.0
    assert "n007" in sweep(nets, checked, t + 60, 60, 1)
    assert "new" in sweep(["new", *nets], checked, t, 60, 1)
