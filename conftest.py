"""Shared pytest setup for every test folder (tests/ and services/*/tests): the ``lab``
fixture (network namespaces) from the lab distribution."""

pytest_plugins = ["hearth_lab.pytest_plugin"]
