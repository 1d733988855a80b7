"""The host edge: namespaces and veths (pyroute2), processes, the agent lock, and what
another agent (neutron's) runs or left here."""
