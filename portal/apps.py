import logging

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import metrics, signals  # noqa: F401  (login auditing; metrics' receivers)
        from portal.keys import SIGNING_DOWN_CONSEQUENCES, configured_problem

        problem = configured_problem()
        if problem:  # say so at start-up (server, worker, commands), not at the first signature
            logging.getLogger("charter").error(
                "The portal signing key is unavailable: %s. %s.",
                problem,
                SIGNING_DOWN_CONSEQUENCES[0].upper() + SIGNING_DOWN_CONSEQUENCES[1:],
            )
