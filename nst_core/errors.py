"""Errors that carry a one-line, user-facing message.

The CLI prints ``str(error)`` on one line and exits non-zero; it never shows a traceback
for these. Anything else escaping is a bug.
"""


class NSTError(Exception):
    """A failure the user can act on; the message names the input and the reason."""

    exit_code = 1


class InvalidInputError(NSTError):
    """An input file (image, video, weights) is missing, unreadable or malformed."""


class InvalidSettingsError(NSTError):
    """A setting is out of range or inconsistent (usage error)."""

    exit_code = 2


class WeightsError(NSTError):
    """VGG19 weights could not be found, fetched or verified."""


def one_line(message: str | BaseException, limit: int | None = 200) -> str:
    """`message` on one line: whitespace collapsed, an empty exception named by its type, cut
    to `limit` characters with "..." (None: never cut)."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        text = type(message).__name__
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 3] + "..."
