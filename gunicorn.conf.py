"""Gunicorn reads this file from the working directory by default.

The settings live in the package (instanceapi/serve/gunicorn_conf.py) so that an
installed service uses the same ones: ``gunicorn -c gunicorn.conf.py`` here,
``instanceapi serve`` (``gunicorn -c python:instanceapi.serve.gunicorn_conf``) anywhere.
"""

from instanceapi.serve.gunicorn_conf import *  # noqa: F403
