"""Ways to run an engine: :mod:`~d1sync.sync.run.loop` (a thread or the foreground, woken by writes),
:mod:`~d1sync.sync.run.drain` (until nothing is pending, for ``d1sync sync``) and
:mod:`~d1sync.sync.run.embed` (``from_env``, for applications). An outside scheduler needs none of them: it
calls ``sync_once`` (or ``step``) itself.
"""
