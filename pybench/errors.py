"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input (unknown model, impossible shape, unwritable path, malformed results file...)."""
