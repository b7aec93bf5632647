"""Users of the simulated Satellite: authentication and Foreman's permission model.

Authentication is HTTP basic with the password or a personal access token used as
the password; a PAT sent as `Bearer` is refused (401). Each route needs one Foreman
permission (an admin has all of them); a missing one answers 403 as Foreman does.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

# The permission each route needs, as Foreman's access_permissions registry grants it.
ROUTE_PERMISSIONS = {
    "GET /api/v2/hosts": "view_hosts",
    "GET /api/v2/hosts/:id": "view_hosts",
    "GET /api/v2/hosts/:id/parameters": "view_params",
    "GET /api/v2/fact_values": "view_facts",
    "DELETE /api/v2/hosts/:id": "destroy_hosts",
}
# Every permission a Foreman role filter can name for these resource types.
RESOURCE_TYPES = {
    "view_hosts": "Host",
    "create_hosts": "Host",
    "edit_hosts": "Host",
    "destroy_hosts": "Host",
    "view_facts": "FactValue",
    "upload_facts": "FactValue",
    "view_params": "Parameter",
    "create_params": "Parameter",
    "edit_params": "Parameter",
    "destroy_params": "Parameter",
}


@dataclass
class SimUser:
    """An API user: login, password, personal access tokens, and permissions."""

    login: str
    password: str
    permissions: frozenset[str] | None = None  # None: an administrator
    tokens: set[str] = field(default_factory=set)

    def can(self, permission: str) -> bool:
        """Return whether the user holds `permission`."""
        return self.permissions is None or permission in self.permissions


def authenticate(header: str | None, users: dict[str, SimUser]) -> SimUser | None:
    """Return the user an Authorization header proves, or None (Bearer included)."""
    scheme, _, blob = (header or "").partition(" ")
    if scheme != "Basic":
        return None
    try:
        login, _, secret = base64.b64decode(blob, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = users.get(login)
    if user is None or not secret:
        return None
    return user if secret == user.password or secret in user.tokens else None
