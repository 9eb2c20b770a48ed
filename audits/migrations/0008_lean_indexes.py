"""Fewer indexes on the audit table: each one is paid on every append."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def brin_on_created_at(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX audits_auditevent_created_brin ON audits_auditevent "
            "USING brin (created_at)"
        )
    else:
        schema_editor.execute(
            "CREATE INDEX audits_auditevent_created_at ON audits_auditevent (created_at)"
        )


def drop_created_at(apps, schema_editor):
    name = (
        "audits_auditevent_created_brin"
        if schema_editor.connection.vendor == "postgresql"
        else "audits_auditevent_created_at"
    )
    schema_editor.execute(f"DROP INDEX {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("audits", "0007_append_function"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="auditevent",
            name="audits_audi_created_3ea91a_idx",
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="actor",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.DO_NOTHING,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(max_length=64),
        ),
        migrations.RunPython(brin_on_created_at, drop_created_at),
    ]
