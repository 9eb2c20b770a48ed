"""PostgreSQL: a commit-ordered log of edge changes for in-memory graph copies.

Each edge row gets ``tx``, the id of the transaction that inserted it. A deferred
constraint trigger runs at commit, once per transaction and kind of change: it
takes a transaction-scoped advisory lock (held until the commit completes, so the
next writer's row gets a higher ``seq`` only after this commit) and appends one
``lineage_graphchange`` row: ``full = false`` for inserted edges, ``true`` when
edges were removed (``removed_at`` set) or deleted. Detail-only updates (column
lineage) change no topology and log nothing.
"""

from django.db import migrations

CREATE = """
ALTER TABLE lineage_lineageedge ADD COLUMN tx bigint NOT NULL
    DEFAULT (pg_current_xact_id()::text::bigint);
CREATE INDEX lineage_lineageedge_tx ON lineage_lineageedge (tx);
CREATE OR REPLACE FUNCTION charter_lineage_log_change() RETURNS trigger AS $$
DECLARE
    is_full boolean := TG_OP <> 'INSERT';
    flag text := CASE WHEN TG_OP = 'INSERT' THEN 'charter.lineage_logged_add'
                      ELSE 'charter.lineage_logged_full' END;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.removed_at IS NOT DISTINCT FROM NEW.removed_at
       AND OLD.src_id = NEW.src_id AND OLD.dst_id = NEW.dst_id AND OLD.kind = NEW.kind THEN
        RETURN NULL;
    END IF;
    IF coalesce(current_setting(flag, true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    PERFORM pg_advisory_xact_lock(1279872581);  -- 0x4C494E45, "LINE"
    INSERT INTO lineage_graphchange (tx, "full", created_at)
    VALUES (pg_current_xact_id()::text::bigint, is_full, clock_timestamp());
    PERFORM set_config(flag, 'on', true);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE CONSTRAINT TRIGGER lineage_lineageedge_log_change
    AFTER INSERT OR UPDATE OR DELETE ON lineage_lineageedge
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION charter_lineage_log_change();
"""
DROP = """
DROP TRIGGER IF EXISTS lineage_lineageedge_log_change ON lineage_lineageedge;
DROP FUNCTION IF EXISTS charter_lineage_log_change();
DROP INDEX IF EXISTS lineage_lineageedge_tx;
ALTER TABLE lineage_lineageedge DROP COLUMN IF EXISTS tx;
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("lineage", "0004_graph_change")]

    operations = [migrations.RunPython(forwards, backwards)]
