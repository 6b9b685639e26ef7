"""One error path for every command.

A `UserError` is a problem the person running the command can fix - a bad config value, a missing artefact, a
damaged or unsuitable data file - and its message names the key or the file and what to do. Every entry point's
`main` is wrapped in `command`: a UserError prints that one line on stderr and exits with status 2; anything else
is a bug and propagates with its traceback. The error classes of every phase derive from UserError (and from the
built-in exception they specialise, so `except FileNotFoundError` and the like keep working).
"""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


class UserError(Exception):
    """Something the user can fix; the message names the key or file and what to do."""


class DataError(UserError, ValueError):
    """A data file or data set is damaged or does not suit the command (too few episodes, wrong shape, ...)."""


def command(main: F) -> F:
    """Wrap an entry point's `main(argv=None)`: a UserError becomes one line on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(str(e).strip() or type(e).__name__, file=sys.stderr, flush=True)
            sys.exit(2)
    return wrapper  # type: ignore[return-value]
