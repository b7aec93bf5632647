"""Gunicorn's entry point: ``gunicorn -c gunicorn.conf.py instanceapi.http.wsgi:app``.

Importing this module builds the app from the environment; nothing else in
the package does work at import time.
"""

from instanceapi.http.app import get_app

app = get_app()
