"""The mirror's schema: read any database's tables in one request and compare them
(:mod:`~d1sync.sync.schema.describe`, over the DDL tokens of :mod:`~d1sync.sync.schema.ddl`), and make D1's
tables follow the local file's: create, ALTER, or SQLite's own rebuild in one atomic batch.
"""
