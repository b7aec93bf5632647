"""A simulated OpenStack cloud (Keystone v3 + Nova subset) over real HTTP on 127.0.0.1.

Used by the demo, the end-to-end tests and the benchmarks::

    with SimulatedCloud() as cloud:
        server = cloud.add_server(project="alpha")
        ...  # point keystoneauth1 / openstack.config at cloud.auth_url

Modules: ``cloud`` (SimulatedCloud facade) and ``servers_ops`` (its server operations),
``state`` (shared state, lock, fault wrapper), ``model`` (FakeServer, Fault, clock,
counters), ``identity`` + ``rules`` (users, tokens, roles, access rules), ``compute``
(per-region servers and listing selection), ``keystone``, ``nova``, ``listing`` and
``nova_views`` (the HTTP APIs), ``control`` (``/_sim/``), ``httpd`` (listeners),
``cloudsyaml``, ``demo`` (seed_demo), ``clients`` (real clients for tests), ``hostile``
(what a hostile client sends and what it costs upstream), ``__main__`` (CLI).
"""

from instanceapi.testing.cloud import SimulatedCloud
from instanceapi.testing.demo import seed_demo
from instanceapi.testing.model import FakeServer, Fault, RequestRecord

__all__ = ["FakeServer", "Fault", "RequestRecord", "SimulatedCloud", "seed_demo"]
