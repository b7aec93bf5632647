"""The one door to OpenStack: the only package that imports keystoneauth1,
novaclient and openstacksdk."""

from instanceapi.openstack.clouds import build_regions
from instanceapi.openstack.compute import (
    Compute,
    Identity,
    NovaRegion,
    Observer,
    UpstreamError,
    describe,
)

__all__ = [
    "Compute",
    "Identity",
    "NovaRegion",
    "Observer",
    "UpstreamError",
    "build_regions",
    "describe",
]
