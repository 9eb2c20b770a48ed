"""On PostgreSQL, refuse UPDATE, DELETE and TRUNCATE on the audit table.

TRUNCATE is allowed only in a session that sets ``charter.allow_truncate = 'on'``
(the test suite does, to reset its database between transactional tests); a
role able to set that can equally disable triggers, so it grants nothing new.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION charter_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audits_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audits_auditevent_append_only
    BEFORE UPDATE OR DELETE ON audits_auditevent
    FOR EACH ROW EXECUTE FUNCTION charter_audit_append_only();
CREATE OR REPLACE FUNCTION charter_audit_no_truncate() RETURNS trigger AS $$
BEGIN
    IF coalesce(current_setting('charter.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audits_auditevent is append-only: TRUNCATE refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audits_auditevent_no_truncate
    BEFORE TRUNCATE ON audits_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION charter_audit_no_truncate();
"""
DROP = """
DROP TRIGGER IF EXISTS audits_auditevent_append_only ON audits_auditevent;
DROP TRIGGER IF EXISTS audits_auditevent_no_truncate ON audits_auditevent;
DROP FUNCTION IF EXISTS charter_audit_append_only();
DROP FUNCTION IF EXISTS charter_audit_no_truncate();
"""
SQLITE_CREATE = """
CREATE TRIGGER audits_auditevent_no_update BEFORE UPDATE ON audits_auditevent
BEGIN SELECT RAISE(ABORT, 'audits_auditevent is append-only: UPDATE refused'); END;
CREATE TRIGGER audits_auditevent_no_delete BEFORE DELETE ON audits_auditevent
BEGIN SELECT RAISE(ABORT, 'audits_auditevent is append-only: DELETE refused'); END;
"""
SQLITE_DROP = """
DROP TRIGGER IF EXISTS audits_auditevent_no_update;
DROP TRIGGER IF EXISTS audits_auditevent_no_delete;
"""


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_CREATE.strip().split(";\n"):
            if statement.strip():
                schema_editor.execute(statement if statement.endswith(";") else statement + ";")


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(DROP, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_DROP.strip().splitlines():
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("audits", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
