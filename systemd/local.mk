# systemd: filled in by its issue
