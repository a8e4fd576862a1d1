"""The store: the only code that reads or writes the outbox's own ``_d1sync_*`` tables in the application's
file. Everything else asks it, through the functions of its modules, which are the outbox's vocabulary:

- :mod:`~d1sync.sync.store.state`: the worker's typed state (back-off, pause, last error, the lease's row)
  and per-table state (pauses, re-sends, remote columns); the PREFIX of every name d1sync keeps;
- :mod:`~d1sync.sync.store.specs`: the synced tables' specs;
- :mod:`~d1sync.sync.store.lease`: the single-drainer lease (:class:`~d1sync.sync.store.lease.DrainLease`);
- :mod:`~d1sync.sync.store.log`: the change log: appends, windows read from it, acknowledgements (deletes
  that never reuse a seq), counts, and the clock behind "oldest pending age";
- :mod:`~d1sync.sync.store.triggers`: the capture triggers that append to the log, and backfills;
- :mod:`~d1sync.sync.store.dead`: dead letters;
- :mod:`~d1sync.sync.store.twoway`: a two-way file's own state (its origin id, cursor, pull state) and the
  apply marker that capture triggers skip on;
- :mod:`~d1sync.sync.store.upgrade`: the tables' DDL, created or upgraded from an earlier build in place.

The store imports nothing of push, pull or the worker: they sit above it. A new piece of local state is a
new field of :class:`~d1sync.sync.store.state.WorkerState` or
:class:`~d1sync.sync.store.state.TableState` (or a table here), never SQL written elsewhere.
"""
