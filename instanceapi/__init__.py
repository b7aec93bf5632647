"""instanceapi: does the OpenStack instance with this UUID still exist?"""

__version__ = "0.1.0"
