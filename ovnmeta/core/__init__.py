"""The pure core: records, names, the desired state, the plan, the port index, signing.
Imports nothing of the host, OVSDB or HTTP, so all of it is unit-tested without root."""
