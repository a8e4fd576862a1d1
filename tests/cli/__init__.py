"""The CLI commands of the outbox, run through click and as real subprocesses."""
