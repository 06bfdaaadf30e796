"""One base for every error that means "bad input or set-up: exit 2"."""


class LatencyLabError(Exception):
    """Bad input or set-up that the user can fix; the CLI prints the message and exits 2."""
