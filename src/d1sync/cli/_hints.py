"""How a hint names a file: its real path, shell-quoted, so the command it suggests can be pasted as it is."""

from __future__ import annotations

from d1sync.sqlite import shown

__all__ = ["shown"]
