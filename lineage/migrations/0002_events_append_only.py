"""Raw OpenLineage events are append-only: UPDATE, DELETE and TRUNCATE are refused.

TRUNCATE passes only in a session that sets ``charter.allow_truncate = 'on'`` (the
test suite resets its database that way), like the audit table (audits 0002).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION charter_lineage_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'lineage_lineageevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER lineage_lineageevent_append_only
    BEFORE UPDATE OR DELETE ON lineage_lineageevent
    FOR EACH ROW EXECUTE FUNCTION charter_lineage_append_only();
CREATE OR REPLACE FUNCTION charter_lineage_no_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('charter.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'lineage_lineageevent is append-only: TRUNCATE refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER lineage_lineageevent_no_truncate
    BEFORE TRUNCATE ON lineage_lineageevent
    FOR EACH STATEMENT EXECUTE FUNCTION charter_lineage_no_truncate();
"""
DROP = """
DROP TRIGGER IF EXISTS lineage_lineageevent_append_only ON lineage_lineageevent;
DROP TRIGGER IF EXISTS lineage_lineageevent_no_truncate ON lineage_lineageevent;
DROP FUNCTION IF EXISTS charter_lineage_append_only();
DROP FUNCTION IF EXISTS charter_lineage_no_truncate();
"""
SQLITE_CREATE = [
    "CREATE TRIGGER lineage_lineageevent_no_update BEFORE UPDATE ON lineage_lineageevent "
    "BEGIN SELECT RAISE(ABORT, 'lineage_lineageevent is append-only: UPDATE refused'); END;",
    "CREATE TRIGGER lineage_lineageevent_no_delete BEFORE DELETE ON lineage_lineageevent "
    "BEGIN SELECT RAISE(ABORT, 'lineage_lineageevent is append-only: DELETE refused'); END;",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS lineage_lineageevent_no_update;",
    "DROP TRIGGER IF EXISTS lineage_lineageevent_no_delete;",
]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_CREATE:
            schema_editor.execute(statement)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(DROP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DROP:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("lineage", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
