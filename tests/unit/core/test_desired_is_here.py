"""Which Port_Binding rows count as this chassis's (ovnmeta.core.desired.is_here)."""

from ovnmeta.core.desired import is_here

ME = "chassis-uuid-1"
NAMES = frozenset({"compute-1", "compute-1.example.org"})


def here(bound=(), additional=(), type_="", port="vm1", requested="", plugged=("vm1",),
         chassis=ME) -> bool:
    return is_here(chassis, NAMES, list(bound), list(additional), type_, port, requested,
                   frozenset(plugged))


def test_bound_or_additional_chassis_here_counts_plugged_or_not() -> None:
    assert here(bound=[ME], plugged=())
    assert here(additional=[ME], plugged=())
    assert not here(bound=["other"], plugged=())


def test_a_vm_port_plugged_here_counts_before_ovn_controller_binds_it() -> None:
    assert here()
    assert here(bound=["other"])          # live migration: still bound at the source
    assert here(requested="compute-1")
    assert here(requested="compute-0,compute-1.example.org")


def test_plugged_but_requested_elsewhere_or_not_a_vm_does_not_count() -> None:
    assert not here(requested="compute-2")
    assert not here(requested="compute-2, compute-3")
    assert not here(type_="localport")    # a metadata tap (another agent's) is no VM
    assert not here(type_="virtual")
    assert not here(plugged=("vm2",))
    assert not here(chassis=None)         # our Chassis row unknown yet: nothing is here
