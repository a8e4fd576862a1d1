"""Compare: a local file and a Database side by side, exactly.

:mod:`~d1sync.sync.compare.pages` reads keyset pages of exact rows (the same SQL on any Database);
:mod:`~d1sync.sync.compare.verify` compares and repairs through the outbox; :mod:`~d1sync.sync.compare.clone`
copies a Database into a new file (its plan and cursors: :mod:`~d1sync.sync.compare.clone_plan`).
"""
