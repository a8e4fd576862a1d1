"""Pull: what the other replicas and the remote's own writers changed, applied to the local file.

:mod:`~d1sync.sync.pull.puller` runs one pull pass (the remote log window, the current rows, resyncs, pruning);
:mod:`~d1sync.sync.pull.apply` applies pulled rows in one transaction, uncaptured, under the conflict rule.
What d1sync keeps on D1 for it is :mod:`~d1sync.sync.remote`; this file's cursor and pull state are the
store's (:mod:`~d1sync.sync.store.twoway`). Pull sits beside push, never below it.
"""
