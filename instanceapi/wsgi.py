"""Gunicorn's entry point: ``gunicorn -c gunicorn.conf.py instanceapi.wsgi:app``.

Importing this module builds the app from the environment; nothing else in
the package does work at import time.
"""

from instanceapi.app import get_app

app = get_app()
