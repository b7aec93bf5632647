"""The one door to OpenStack: the only package that imports keystoneauth1,
novaclient and openstacksdk, and the only one that reads Nova's JSON (it
returns ServerRecords)."""

from instanceapi.openstack.clouds import build_regions
from instanceapi.openstack.compute import (
    Compute,
    Identity,
    NovaRegion,
    Observer,
    UnexpectedBody,
    UpstreamError,
    describe,
)
from instanceapi.openstack.records import MalformedRecord, ServerRecord, parse_page, parse_server

__all__ = [
    "Compute",
    "Identity",
    "MalformedRecord",
    "NovaRegion",
    "Observer",
    "ServerRecord",
    "UnexpectedBody",
    "UpstreamError",
    "build_regions",
    "describe",
    "parse_page",
    "parse_server",
]
