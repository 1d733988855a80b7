"""What operators run: `ovnmeta status`, `trace` and `cleanup`."""
