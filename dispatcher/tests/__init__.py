"""Unit tests of the dispatcher runtime (standard library `unittest` + `nuclio_sdk` + `requests`).

Run from the repository root, with the venv built from `dispatcher/requirements-test.txt`:

    python3 -m venv .venv && .venv/bin/pip install -r dispatcher/requirements-test.txt
    .venv/bin/python -m unittest discover -s dispatcher/tests -t dispatcher -v
"""
