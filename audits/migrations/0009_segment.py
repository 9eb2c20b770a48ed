"""Archived segments, and the only DELETE the audit table allows.

PostgreSQL: a DELETE of an audit row passes the trigger only in a session that
sets ``charter.archiving = 'on'`` *and* only for rows a signed Segment already
covers (seq <= the highest archived last_seq). Segments themselves are
append-only. SQLite (the embedded default) gets the same coverage rule.
"""

from django.db import migrations, models

PG_CREATE = """
CREATE OR REPLACE FUNCTION charter_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE'
       AND coalesce(current_setting('charter.archiving', true), '') = 'on'
       AND OLD.seq <= (SELECT coalesce(max(s.last_seq), 0) FROM audits_segment s) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audits_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION charter_segment_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audits_segment is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audits_segment_append_only
    BEFORE UPDATE OR DELETE ON audits_segment
    FOR EACH ROW EXECUTE FUNCTION charter_segment_append_only();
"""
PG_DROP = """
DROP TRIGGER IF EXISTS audits_segment_append_only ON audits_segment;
DROP FUNCTION IF EXISTS charter_segment_append_only();
CREATE OR REPLACE FUNCTION charter_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audits_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
"""
# (Migration 0008 rebuilt the SQLite table, which drops its triggers: recreate both.)
SQLITE_CREATE = [
    "DROP TRIGGER IF EXISTS audits_auditevent_no_update;",
    "CREATE TRIGGER audits_auditevent_no_update BEFORE UPDATE ON audits_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audits_auditevent is append-only: UPDATE refused'); END;",
    "DROP TRIGGER IF EXISTS audits_auditevent_no_delete;",
    "CREATE TRIGGER audits_auditevent_no_delete BEFORE DELETE ON audits_auditevent "
    "WHEN OLD.seq > (SELECT coalesce(max(last_seq), 0) FROM audits_segment) "
    "BEGIN SELECT RAISE(ABORT, 'audits_auditevent is append-only: DELETE refused'); END;",
    "CREATE TRIGGER audits_segment_no_update BEFORE UPDATE ON audits_segment "
    "BEGIN SELECT RAISE(ABORT, 'audits_segment is append-only: UPDATE refused'); END;",
    "CREATE TRIGGER audits_segment_no_delete BEFORE DELETE ON audits_segment "
    "BEGIN SELECT RAISE(ABORT, 'audits_segment is append-only: DELETE refused'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS audits_segment_no_update;",
    "DROP TRIGGER IF EXISTS audits_segment_no_delete;",
    "DROP TRIGGER IF EXISTS audits_auditevent_no_delete;",
    "CREATE TRIGGER audits_auditevent_no_delete BEFORE DELETE ON audits_auditevent "
    "BEGIN SELECT RAISE(ABORT, 'audits_auditevent is append-only: DELETE refused'); END;",
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_CREATE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_DROP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("audits", "0008_lean_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="Segment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("first_seq", models.BigIntegerField(unique=True)),
                ("last_seq", models.BigIntegerField(unique=True)),
                ("prev_hash", models.CharField(max_length=64)),
                ("last_hash", models.CharField(max_length=64)),
                ("events", models.BigIntegerField()),
                ("events_sha256", models.CharField(max_length=64)),
                ("file_name", models.CharField(max_length=200)),
                ("created_at", models.DateTimeField()),
                ("key_id", models.CharField(max_length=64)),
                ("envelope", models.JSONField()),
            ],
            options={
                "ordering": ["first_seq"],
            },
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("create", "Create"),
                    ("update", "Update"),
                    ("delete", "Delete"),
                    ("transition", "Transition"),
                    ("grant", "Grant"),
                    ("revoke", "Revoke"),
                    ("token_issue", "Token Issue"),
                    ("token_revoke", "Token Revoke"),
                    ("login", "Login"),
                    ("login_failed", "Login Failed"),
                    ("logout", "Logout"),
                    ("view", "View"),
                    ("download", "Download"),
                    ("export", "Export"),
                    ("verify", "Verify"),
                    ("checkpoint", "Checkpoint"),
                    ("archive", "Archive"),
                    ("task", "Task"),
                ],
                max_length=20,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
