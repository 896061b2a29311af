"""One exception type for user mistakes, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and what is allowed."""

    exit_code = 2
