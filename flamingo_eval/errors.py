"""Errors that the command line reports as one line, without a traceback."""


class InputError(Exception):
    """Invalid user input: a file, field or value that the user must fix before a run."""
