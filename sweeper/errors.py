"""Errors that are the user's to fix: the CLI prints them on one line and exits 2."""


class SweeperError(Exception):
    """Bad input (spec, data, arguments). The message is shown to the user as is."""


class SpecError(SweeperError):
    """The spec file is wrong: the message names the file and the key."""


class DataError(SweeperError):
    """The data set cannot be used: the message names the file or folder."""
