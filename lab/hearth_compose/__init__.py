"""The lab stack in containers: `make demo-compose` and the compose end-to-end test.

:class:`LabStack` brings docker-compose.lab.yml up and down (a private network with no
outside route) and looks inside; :mod:`hearth_compose.house` fills it with the demo house
through the gateway.
"""

from hearth_compose.stack import LabStack, StackError, engine_reachable, sweep

__all__ = ["LabStack", "StackError", "engine_reachable", "sweep"]
