"""The two ways a run ends early on purpose, so the CLI can print one line instead of a traceback."""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and what is allowed (exit 2,
    nothing written)."""

    exit_code = 2


class MissingData(UserError):
    """A file, directory or image the config points at is not on disk (or a split is empty).

    A subclass so that a dataset source can add, in the same one line, the `scripts/` helper
    that fetches what is missing; the loaders that raise it know paths, not download helpers.
    `images` says whether images (rather than annotation files) are missing: they come from
    different downloads.
    """

    def __init__(self, message: str, images: bool = False) -> None:
        super().__init__(message)
        self.images = images


class RunStopped(Exception):
    """A run that started but cannot go on without producing a wrong number (e.g. a non-finite
    loss): the message names where it stopped; the run dir is kept for inspection (exit 1)."""

    exit_code = 1
