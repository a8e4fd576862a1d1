"""d1sync's test suite. Shared helpers live in ``tests/support.py``, shared fixtures in ``tests/conftest.py``."""
