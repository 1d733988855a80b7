"""The data path on the metadata socket: identify the VM, sign, forward to nova, count."""
