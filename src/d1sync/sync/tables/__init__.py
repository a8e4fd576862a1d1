"""One synced table's life beyond its rows: one table's problem never stops the others.

:mod:`~d1sync.sync.tables.follow` follows local DDL (ADD/DROP/RENAME COLUMN, RENAME TABLE, DROP + CREATE);
:mod:`~d1sync.sync.tables.preflight` checks each table on the remote before a pass, with re-send chunks and
purges; :mod:`~d1sync.sync.tables.resend` queues a whole table (or some keys) again;
:mod:`~d1sync.sync.tables.pauses` pauses and resumes one table. A new table state is a field of
:class:`~d1sync.sync.store.state.TableState`, set here and shown by :mod:`~d1sync.sync.status`.
"""
