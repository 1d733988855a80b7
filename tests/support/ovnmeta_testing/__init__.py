"""Test and demo support, never shipped to compute nodes: the OVN sandbox, the nova
double, fake VMs, neutron's host layout, probers and the demo."""
