"""Write clouds.yaml entries that openstack.config (openstacksdk) reads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from instanceapi.testing.cloud import SimulatedCloud


def cloud_entry(
    cloud: SimulatedCloud,
    *,
    user: str = "admin",
    regions: list[str] | None = None,
    application_credential: tuple[str, str] | dict[str, str] | None = None,
) -> dict[str, Any]:
    """One ``clouds:`` entry for ``user`` (password) or an application credential."""
    auth: dict[str, Any] = {"auth_url": cloud.auth_url}
    entry: dict[str, Any] = {"auth": auth}
    if application_credential is not None:
        if isinstance(application_credential, dict):
            cred_id = application_credential["id"]
            secret = application_credential["secret"]
        else:
            cred_id, secret = application_credential
        entry["auth_type"] = "v3applicationcredential"
        auth["application_credential_id"] = cred_id
        auth["application_credential_secret"] = secret
    else:
        entry["auth_type"] = "password"
        auth.update(
            username=user,
            password=cloud.password(user),
            project_name=cloud.user_project(user),
            user_domain_name="Default",
            project_domain_name="Default",
        )
    names = list(regions or cloud.regions)
    if len(names) == 1:
        entry["region_name"] = names[0]
    else:
        entry["regions"] = names
    entry["interface"] = "public"
    entry["identity_api_version"] = 3
    return entry


def write_clouds_yaml(
    cloud: SimulatedCloud,
    path: Path,
    *,
    cloud_name: str = "demo",
    user: str = "admin",
    regions: list[str] | None = None,
    application_credential: tuple[str, str] | dict[str, str] | None = None,
) -> Path:
    """Add or replace ``cloud_name`` in ``path`` (created 0600 if missing)."""
    data: dict[str, Any] = {}
    if path.exists():
        data = yaml.safe_load(path.read_text()) or {}
    data.setdefault("clouds", {})[cloud_name] = cloud_entry(
        cloud, user=user, regions=regions, application_credential=application_credential
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
    return path
