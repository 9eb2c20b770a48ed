from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        from portal import metrics, signals  # noqa: F401  (login auditing; metrics' receivers)
