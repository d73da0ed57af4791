"""Root of the test suite.

Contract tests (unit/, integration/, stateful/) run under brownie's pytest
plugin, which starts anvil itself; this module first points it at a free
port, so a busy 8545 never makes the suite attach to a chain it did not
start. Service tests (service/) run with the plugin disabled.
"""

from gpucredit.localchain import use_free_port_for_development


def pytest_configure(config):
    if config.pluginmanager.has_plugin("pytest-brownie"):
        use_free_port_for_development()
