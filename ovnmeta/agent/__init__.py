"""The daemon: configuration, start-up, the reconciler that drives the edges, the socket
keeper, workers, the control socket and systemd notification."""
