"""The sync engine's former home, kept so that ``from d1sync.outbox import SyncWorker`` (and every other public
name of the engine) keeps working. The engine lives in :mod:`d1sync.sync`; import from :mod:`d1sync`.
"""

from __future__ import annotations

from d1sync.sync import *  # noqa: F403 - the engine's public names, exactly
from d1sync.sync import __all__ as __all__
