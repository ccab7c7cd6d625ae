"""For adapter authors: run a fake broker over real HTTP and the conformance suite against it.

    from services.fetcher.testing import BrokerConformance, FakeBroker, Scenario, serve_fake

Subclass `BrokerConformance` in a test module (see its docstring); needs pytest and pytest-asyncio.
"""

from services.fetcher.testing.conformance import BrokerConformance
from services.fetcher.testing.fake_server import FakeBroker, Scenario, serve_fake

__all__ = ["BrokerConformance", "FakeBroker", "Scenario", "serve_fake"]
