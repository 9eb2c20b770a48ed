"""Create the six roles as groups with their global permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

from portal.roles import ROLE_PERMS, ensure_roles


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    ensure_roles(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLE_PERMS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0002_initial"),
        ("registry", "0001_initial"),
        ("audits", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
