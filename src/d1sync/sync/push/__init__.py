"""Push: local changes carried to the target as a pipeline.

:mod:`~d1sync.sync.push.window` (the window source: a window of the change log, coalesced per key, with the
rows' current state) -> :mod:`~d1sync.sync.push.planner` (``json_each`` bulk statements packed into requests)
-> :mod:`~d1sync.sync.push.sender` (one atomic batch per request, acknowledged, refusals carried out).
:mod:`~d1sync.sync.push.readahead` wraps the window source: the next window is read while a request is in
flight. :mod:`~d1sync.sync.push.refusals` decides what each refusal means; :mod:`~d1sync.sync.push.swap`
sends rows whose UNIQUE values move among themselves. A large backlog goes through D1's import instead
(:mod:`~d1sync.sync.push.seeder`, with the file :mod:`~d1sync.sync.push.seedfile` writes). Push imports
nothing of pull.
"""
