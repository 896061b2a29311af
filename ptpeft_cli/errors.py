"""The two ways a run ends early on purpose, so the CLI can print one line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and what is allowed (exit 2,
    nothing written)."""

    exit_code = 2


class RunStopped(Exception):
    """A run that started but cannot go on without producing a wrong number (e.g. a non-finite
    loss): the message names where it stopped; the run dir is kept for inspection (exit 1)."""

    exit_code = 1
