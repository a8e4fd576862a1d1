"""The store: the only code that reads or writes the outbox's own ``_d1sync_*`` tables in the application's
file. Everything else asks it, through the functions of its modules, which are the outbox's vocabulary:

- :mod:`~d1sync.outbox.store.schema`: the tables, the worker's typed state (lease, back-off, pause, last
  error), per-table state (pauses, re-sends, remote columns) and the synced tables' specs;
- :mod:`~d1sync.outbox.store.log`: the change log: appends, windows read from it, acknowledgements (deletes
  that never reuse a seq), counts, and the clock behind "oldest pending age";
- :mod:`~d1sync.outbox.store.triggers`: the capture triggers that append to the log, and backfills;
- :mod:`~d1sync.outbox.store.dead`: dead letters;
- :mod:`~d1sync.outbox.store.replica`: a replica's own state (id, cursor, pull state) and the apply marker
  that capture triggers skip on;
- :mod:`~d1sync.outbox.store.upgrade`: creating the tables and upgrading an earlier build's in place.

The store imports nothing of push, pull or the worker: they sit above it. A new piece of local state is a
new field of :class:`~d1sync.outbox.store.schema.WorkerState` or
:class:`~d1sync.outbox.store.schema.TableState` (or a table here), never SQL written elsewhere.
"""
