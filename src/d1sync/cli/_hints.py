"""How a hint names a file: its real path, shell-quoted, so the command it suggests can be pasted as it is."""

from __future__ import annotations

import os
import shlex

__all__ = ["shown"]


def shown(path: str | os.PathLike[str]) -> str:
    """A file's path as a hint prints it: ``'my files/app.db'`` (never a placeholder such as ``DB``)."""
    return shlex.quote(os.fspath(path))
