#!/bin/bash
# kolla_start's hook for ovnmeta's image: the log directory kolla's ini names, and no side-car
# wrappers on PATH (a `haproxy` wrapper there would start haproxy in another container, in a
# namespace ovnmeta's shared haproxy does not use).
mkdir -p /var/log/kolla/neutron
chmod 755 /var/log/kolla/neutron
for wrapper in haproxy dnsmasq keepalived neutron-keepalived-state-change radvd; do
    if [ -f "/usr/local/lib/neutron-wrappers/$wrapper" ]; then
        rm -f "/usr/local/bin/$wrapper"
    fi
done
