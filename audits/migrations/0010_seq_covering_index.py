"""PostgreSQL: the unique index on seq also carries prev_hash and hash (INCLUDE).

Still one index paid per append (only wider); in exchange the link check of
verification (each prev_hash against the previous row's hash) runs as an
index-only scan instead of reading the whole table a second time.
"""

from django.db import migrations

FORWARD = """
CREATE UNIQUE INDEX audits_auditevent_seq_cover ON audits_auditevent (seq) INCLUDE (prev_hash, hash);
ALTER TABLE audits_auditevent DROP CONSTRAINT audits_auditevent_seq_key;
ALTER TABLE audits_auditevent ADD CONSTRAINT audits_auditevent_seq_key
    UNIQUE USING INDEX audits_auditevent_seq_cover;
"""
BACKWARD = """
CREATE UNIQUE INDEX audits_auditevent_seq_plain ON audits_auditevent (seq);
ALTER TABLE audits_auditevent DROP CONSTRAINT audits_auditevent_seq_key;
ALTER TABLE audits_auditevent ADD CONSTRAINT audits_auditevent_seq_key
    UNIQUE USING INDEX audits_auditevent_seq_plain;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("audits", "0009_segment")]

    operations = [migrations.RunPython(forwards, backwards)]
