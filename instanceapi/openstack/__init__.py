"""The one door to OpenStack: the only package that imports keystoneauth1,
novaclient and openstacksdk."""

from instanceapi.openstack.clouds import build_targets
from instanceapi.openstack.compute import (
    Compute,
    Identity,
    NovaTarget,
    Observer,
    UpstreamError,
    describe,
)

__all__ = [
    "Compute",
    "Identity",
    "NovaTarget",
    "Observer",
    "UpstreamError",
    "build_targets",
    "describe",
]
