"""haproxy: settings, rendered configs, its processes, its runtime API, and the direct
path's maps."""
