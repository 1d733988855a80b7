# Sourced by the image scripts and tests: podman on this kind of machine (no systemd, cgroup v1
# controllers beside a cgroup2 hierarchy, no CAP_SYS_RESOURCE) needs runc, the cgroupfs
# manager and no default ulimits. Installs podman and runc when missing.
. "$(dirname "${BASH_SOURCE[0]}")/apt_need.sh"
apt_need podman runc debootstrap
OVNMETA_PODMAN_CONF=/var/tmp/ovnmeta-containers.conf
cat > "$OVNMETA_PODMAN_CONF" <<'CONF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
export CONTAINERS_CONF=$OVNMETA_PODMAN_CONF
