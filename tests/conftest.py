"""Shared pytest setup: the lab fixture (network namespaces) for every test folder."""

pytest_plugins = ["hearth_lab.pytest_plugin"]
