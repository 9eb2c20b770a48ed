"""The default approval policy for every risk tier and environment (approvals/defaults.py)."""

from django.db import migrations


def install(apps, schema_editor):
    from approvals.defaults import install_defaults

    install_defaults(apps.get_model("approvals", "ApprovalPolicy"))


def remove(apps, schema_editor):
    apps.get_model("approvals", "ApprovalPolicy").objects.filter(
        version=1, created_by__isnull=True
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]

    operations = [migrations.RunPython(install, remove)]
