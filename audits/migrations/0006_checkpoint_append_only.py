"""Checkpoints are append-only too (PostgreSQL): a deleted checkpoint cannot go unseen."""

from django.db import migrations

CREATE = """
CREATE TRIGGER audits_checkpoint_append_only
    BEFORE UPDATE OR DELETE ON audits_checkpoint
    FOR EACH ROW EXECUTE FUNCTION charter_audit_append_only();
"""
DROP = "DROP TRIGGER IF EXISTS audits_checkpoint_append_only ON audits_checkpoint;"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audits", "0005_verification_run")]

    operations = [migrations.RunPython(forwards, backwards)]
