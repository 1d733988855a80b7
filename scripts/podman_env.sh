# Sourced by the image scripts and tests: podman on this kind of machine (no systemd, cgroup v1
# controllers beside a cgroup2 hierarchy, no CAP_SYS_RESOURCE) needs runc, the cgroupfs
# manager and no default ulimits. Installs podman and runc when missing.
for p in podman runc debootstrap; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        apt-get update -q >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
            podman runc debootstrap >/dev/null
        break
    fi
done
OVNMETA_PODMAN_CONF=/var/tmp/ovnmeta-containers.conf
cat > "$OVNMETA_PODMAN_CONF" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
export CONTAINERS_CONF=$OVNMETA_PODMAN_CONF
