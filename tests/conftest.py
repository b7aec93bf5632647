"""Fixtures shared by test modules (plain helpers live in tests/fakes.py).

``cloud``, ``demo`` and ``service``: the simulated cloud with the demo servers and
the real service under Gunicorn (two workers), one of each per test module. A
module that defines a fixture of the same name uses its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from instanceapi.testing import SimulatedCloud, seed_demo
from instanceapi.testing.harness import ServiceProcess, service_env


@pytest.fixture(scope="module")
def cloud() -> Iterator[SimulatedCloud]:
    with SimulatedCloud() as cloud:
        yield cloud


@pytest.fixture(scope="module")
def demo(cloud: SimulatedCloud) -> dict[str, list[str]]:
    return seed_demo(cloud)


@pytest.fixture(scope="module")
def service(cloud, demo, tmp_path_factory) -> Iterator[ServiceProcess]:
    # NOTE: no Keystone pause: tests/test_regressions.py switches Keystone faults on
    # and off between two requests.
    env = service_env(cloud, tmp_path_factory.mktemp("hostile"), INSTANCEAPI_KEYSTONE_PAUSE="0")
    with ServiceProcess(env, workers=2, ready_path="/readyz") as service:
        yield service
