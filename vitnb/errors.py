"""The one exception type for a user's mistake.

`UsageError` says what the caller got wrong (an argument, a file, a data set that does not fit the model) and
what to do instead. The CLI prints it as one `error: ...` line with exit status 2; any other exception is a bug
in vitnb and keeps its traceback. It subclasses `ValueError`, so code that catches `ValueError` still does.
"""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(ValueError):
    """A mistake of the caller's, with a message that names it and says what to do."""
