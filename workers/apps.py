from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Monitoring and retraining"

    def ready(self) -> None:
        from workers import retraining_signals  # noqa: F401  (approvals of retraining jobs)
        from workers.executors import checks  # noqa: F401  (the executor configuration check)
