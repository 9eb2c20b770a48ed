"""Create the six roles as groups with their global permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

ROLE_PERMS = {
    "admin": [
        "registry.view_usecase",
        "registry.add_usecase",
        "registry.change_usecase",
        "registry.contribute_usecase",
        "registry.manage_access",
        "audits.view_auditevent",
    ],
    "governance board": ["registry.view_usecase", "audits.view_auditevent"],
    "risk officer": [
        "registry.view_usecase",
        "registry.add_usecase",
        "registry.change_usecase",
        "audits.view_auditevent",
    ],
    "auditor": ["registry.view_usecase", "audits.view_auditevent"],
    "contributor": ["registry.add_usecase"],
    "viewer": [],
}


def create_roles(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for role, perms in ROLE_PERMS.items():
        group, _ = Group.objects.get_or_create(name=role)
        for dotted in perms:
            app_label, codename = dotted.split(".")
            group.permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )


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
