"""From clouds.yaml and OS_* variables to one NovaRegion per cloud/region.

openstacksdk's ``openstack.config`` reads the standard places (``./clouds.yaml``,
``~/.config/openstack/``, ``/etc/openstack/``, ``OS_CLIENT_CONFIG_FILE`` and the
``OS_*`` variables of an openrc); this module turns what it finds into sessions
with our timeouts and retries. No network I/O happens here.
"""

from __future__ import annotations

import logging
import warnings

import openstack.config
import openstack.exceptions
from keystoneauth1 import exceptions as ksa_exc
from keystoneauth1 import session as ksa_session

from instanceapi.config import ConfigError, RegionSpec, Settings
from instanceapi.openstack.breaker import MAX_PAUSE, Breaker
from instanceapi.openstack.compute import NovaRegion, Observer, ignore

log = logging.getLogger(__name__)


def build_regions(settings: Settings, observe: Observer = ignore) -> list[NovaRegion]:
    """Create one NovaRegion per configured cloud/region; no network I/O."""
    # NOTE: openstacksdk warns about InfluxDB metrics support for every cloud
    # region it builds, whether or not metrics are configured. Not ours to act on.
    warnings.filterwarnings("ignore", message="Support for InfluxDB")
    loader = openstack.config.OpenStackConfig(load_envvars=True)
    novas: list[NovaRegion] = []
    for spec in settings.regions:
        for region in _regions(loader, spec):
            novas.append(_nova_region(loader, spec.cloud, region, settings, observe))
    _check_exclusions(settings, novas)
    return novas


def _check_exclusions(settings: Settings, novas: list[NovaRegion]) -> None:
    """Refuse a region both excluded and checked (clouds.yaml's regions included)."""
    checked = {(n.cloud, n.region) for n in novas}
    for spec in settings.exclude_regions:
        if (spec.cloud, spec.region) in checked:
            raise ConfigError(
                "INSTANCEAPI_EXCLUDE_REGIONS",
                f"{spec.cloud}/{spec.region} is excluded but configured "
                f"(clouds.yaml lists it for cloud {spec.cloud!r})",
            )


def _regions(loader: openstack.config.OpenStackConfig, spec: RegionSpec) -> list[str | None]:
    """Return the regions to check: the one named, else every region the cloud lists."""
    if spec.cloud not in loader.get_cloud_names():
        known = ", ".join(sorted(loader.get_cloud_names())) or "none"
        raise ConfigError(
            "INSTANCEAPI_CLOUDS",
            f"cloud {spec.cloud!r} is not configured "
            f"(clouds.yaml or OS_* variables; known: {known})",
        )
    if spec.region is not None:
        return [spec.region]
    try:
        regions = [c.region_name for c in loader.get_all() if c.name == spec.cloud]
    except (openstack.exceptions.ConfigException, ksa_exc.ClientException) as ex:
        raise ConfigError("INSTANCEAPI_CLOUDS", f"cloud {spec.cloud!r}: {ex}") from ex
    return list(dict.fromkeys(regions)) or [None]


def _nova_region(
    loader: openstack.config.OpenStackConfig,
    cloud: str,
    region: str | None,
    settings: Settings,
    observe: Observer,
) -> NovaRegion:
    try:
        config = loader.get_one(cloud=cloud, region_name=region or "")
        auth = config.get_auth()
        verify, cert = config.get_requests_verify_args()
    except (openstack.exceptions.ConfigException, ksa_exc.ClientException) as ex:
        raise ConfigError("INSTANCEAPI_CLOUDS", f"cloud {cloud!r}: {ex}") from ex
    if verify is False:
        log.warning("%s: TLS verification is turned off by its configuration", cloud)
    session = ksa_session.Session(
        auth=auth,
        verify=verify,
        cert=cert,
        timeout=settings.timeout,
        connect_retries=settings.retries,
        user_agent=f"instanceapi ({cloud})",
    )
    configured = config.get_interface("compute")
    if isinstance(configured, list):  # openstacksdk allows a list; the first one is preferred
        configured = configured[0] if configured else None
    interface = settings.interface or configured or "public"
    return NovaRegion(
        cloud=cloud,
        region=region or config.get_region_name("compute") or None,
        session=session,
        interface=interface,
        retries=settings.retries,
        observe=observe,
        breaker=Breaker(base=settings.keystone_pause, cap=max(MAX_PAUSE, settings.keystone_pause)),
    )
