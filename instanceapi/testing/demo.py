"""Demo data: a realistic mix of instance states across projects."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from instanceapi.testing.cloud import SimulatedCloud

# (project, status, name) of instances that exist (GET answers 200).
EXISTING = (
    ("alpha", "ACTIVE", "web-01"),
    ("alpha", "SHUTOFF", "db-01"),
    ("alpha", "ERROR", "broken-01"),
    ("alpha", "PAUSED", "batch-01"),
    ("beta", "ACTIVE", "api-01"),
    ("beta", "SUSPENDED", "legacy-01"),
    ("beta", "SHELVED_OFFLOADED", "archive-01"),
    ("beta", "BUILD", "new-01"),
    ("gamma", "ACTIVE", "ci-runner-01"),
    ("gamma", "RESCUE", "rescue-01"),
)
SOFT_DELETED = (("gamma", "restorable-01"), ("alpha", "oops-01"))
DELETED = (("alpha", "gone-01"), ("beta", "gone-02"), ("gamma", "gone-03"))


def seed_demo(cloud: SimulatedCloud) -> dict[str, list[str]]:
    """Seed ``cloud`` with the demo mix; return the ids by fate.

    ``existing`` includes the soft-deleted ones (Nova still answers them); extra
    regions get one ACTIVE instance each, also in ``existing``.
    """
    existing = [
        cloud.add_server(project=project, status=status, name=name).id
        for project, status, name in EXISTING
    ]
    soft = []
    for project, name in SOFT_DELETED:
        server = cloud.add_server(project=project, status="ACTIVE", name=name)
        cloud.soft_delete_server(server.id)
        soft.append(server.id)
    deleted = []
    for project, name in DELETED:
        server = cloud.add_server(project=project, status="ACTIVE", name=name)
        cloud.delete_server(server.id)
        deleted.append(server.id)
    for region in cloud.regions[1:]:
        server = cloud.add_server(project="alpha", region=region, name=f"{region.lower()}-01")
        existing.append(server.id)
    return {"existing": existing + soft, "deleted": deleted, "soft_deleted": soft}
