"""instanceapi reap: delete Satellite host records whose OpenStack instance is gone.

Runs beside Satellite with Satellite credentials only. It reads hosts and facts
from the Foreman API, asks an instanceapi service about OpenStack guests, and
deletes a host record only after repeated, authoritative answers of absence.
"""
