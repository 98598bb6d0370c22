"""Errors that the CLI reports as one line and a non-zero exit code."""


class AggassetsError(Exception):
    """Bad input or an impossible request: the message is shown to the user as is."""
