"""Real OpenStack clients (keystoneauth1, python-novaclient) pointed at a SimulatedCloud."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from keystoneauth1 import session
from keystoneauth1.identity import v3
from novaclient import client as nova_client

if TYPE_CHECKING:
    from instanceapi.testing.cloud import SimulatedCloud


def password_session(
    cloud: SimulatedCloud, user: str = "admin", *, timeout: float | None = 10.0, **kwargs: Any
) -> session.Session:
    """A keystoneauth1 session for a built-in (or added) user, scoped to its project."""
    auth = v3.Password(
        auth_url=cloud.auth_url,
        username=user,
        password=cloud.password(user),
        project_name=cloud.user_project(user),
        user_domain_name="Default",
        project_domain_name="Default",
    )
    return session.Session(auth=auth, timeout=timeout, **kwargs)


def app_credential_session(
    cloud: SimulatedCloud, cred_id: str, secret: str, *, timeout: float | None = 10.0
) -> session.Session:
    """A keystoneauth1 session authenticated with an application credential."""
    auth = v3.ApplicationCredential(
        auth_url=cloud.auth_url,
        application_credential_id=cred_id,
        application_credential_secret=secret,
    )
    return session.Session(auth=auth, timeout=timeout)


def nova(sess: session.Session, version: str = "2.69", region: str | None = None) -> Any:
    """A python-novaclient ``Client`` on ``sess``."""
    return nova_client.Client(version, session=sess, region_name=region)
