"""A simulated OpenStack cloud (Keystone v3 + Nova subset) over real HTTP on 127.0.0.1.

Used by the demo, the end-to-end tests and the benchmarks::

    with SimulatedCloud() as cloud:
        server = cloud.add_server(project="alpha")
        ...  # point keystoneauth1 at cloud.auth_url
"""

from instanceapi.testing.cloud import SimulatedCloud
from instanceapi.testing.demo import seed_demo
from instanceapi.testing.model import FakeServer, Fault, RequestRecord

__all__ = ["FakeServer", "Fault", "RequestRecord", "SimulatedCloud", "seed_demo"]
