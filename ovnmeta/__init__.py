"""ovnmeta: a metadata agent for OVN-based OpenStack clouds."""

# The one place the version is set: pyproject.toml reads it, `--version` prints it, and
# debian/changelog must name it (a unit test checks that).
__version__ = "0.2.0"
