"""Errors that are the user's to fix: the CLI prints them on one line and exits 2."""


class SweeperError(Exception):
    """Bad input (spec, data, arguments). The message is shown to the user as is."""


class SpecError(SweeperError):
    """The spec file is wrong: the message names the file and the key."""


class DataError(SweeperError):
    """The data set cannot be used: the message names the file or folder."""


class CheckpointMissing(SweeperError):
    """A trial kept no checkpoint (it ended before its first epoch, or its folder was removed)."""


class ParityError(SweeperError):
    """An exported model does not reproduce what the sweep measured: the bundle is not written."""


def quote(value, limit: int = 80) -> str:
    """A value's repr for an error message, cut short: a 505-byte YAML alias bomb once printed a
    580 MB line, and a path can be thousands of characters."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxstring, short.maxother = 3, limit, limit
    short.maxlist = short.maxdict = short.maxtuple = short.maxset = 6
    text = short.repr(value)
    return text if len(text) <= limit + 10 else text[:limit] + "..."


def clip(text: str, limit: int = 200) -> str:
    """Text for an error message, cut short the same way, without quotes."""
    return text if len(text) <= limit else text[:limit] + "..."
