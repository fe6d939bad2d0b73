"""User-facing errors: one line that says what is wrong and how to fix it."""


class CrossforgetError(Exception):
    """An error caused by the user's input; the CLI prints its message without a traceback."""
