"""One exception type for user mistakes, so the CLI can print one line and exit 2."""


class UserError(Exception):
    """Bad input from the user: the message names what is wrong and what is allowed."""

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
