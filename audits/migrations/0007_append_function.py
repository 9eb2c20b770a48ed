"""PostgreSQL: the chain append as one PL/pgSQL function (its plans are cached per session)."""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION charter_audit_append(
    p_before text, p_after text, p_actor_id bigint, p_actor_repr text, p_action text,
    p_object_type text, p_object_id text, p_object_repr text, p_changes jsonb,
    p_request_id text, p_client_ip text, p_user_agent text, p_channel text
) RETURNS TABLE (o_id bigint, o_seq bigint, o_created_at timestamptz, o_payload text,
                 o_prev_hash text, o_hash text) AS $$
DECLARE
    h_seq bigint;
    h_hash text;
    ts timestamptz := clock_timestamp();
    v_payload text;
    v_hash text;
    v_id bigint;
BEGIN
    -- The row lock serialises writers; FOR UPDATE returns the latest committed head.
    SELECT c.seq, c.hash INTO h_seq, h_hash FROM audits_chainhead c WHERE c.id = 1 FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM pg_advisory_xact_lock(1128808786);
        INSERT INTO audits_chainhead (id, seq, hash)
        SELECT 1, coalesce(max(e.seq), 0),
               coalesce((SELECT e2.hash FROM audits_auditevent e2 ORDER BY e2.seq DESC LIMIT 1),
                        repeat('0', 64))
        FROM audits_auditevent e
        ON CONFLICT (id) DO NOTHING;
        SELECT c.seq, c.hash INTO h_seq, h_hash FROM audits_chainhead c WHERE c.id = 1 FOR UPDATE;
    END IF;
    h_seq := h_seq + 1;
    v_payload := p_before || h_seq::text || ',"time":"'
        || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"' || p_after;
    v_hash := encode(sha256(convert_to(h_hash || v_payload, 'UTF8')), 'hex');
    INSERT INTO audits_auditevent (seq, created_at, payload, prev_hash, hash, actor_id,
        actor_repr, action, object_type, object_id, object_repr, changes, request_id,
        client_ip, user_agent, channel)
    VALUES (h_seq, ts, v_payload, h_hash, v_hash, p_actor_id, p_actor_repr, p_action,
        p_object_type, p_object_id, p_object_repr, p_changes, p_request_id, p_client_ip,
        p_user_agent, p_channel)
    RETURNING id INTO v_id;
    UPDATE audits_chainhead SET seq = h_seq, hash = v_hash WHERE id = 1;
    RETURN QUERY SELECT v_id, h_seq, ts, v_payload, h_hash, v_hash;
END;
$$ LANGUAGE plpgsql;
"""
DROP = "DROP FUNCTION IF EXISTS charter_audit_append(text, text, bigint, text, text, text, text, text, jsonb, text, text, text, text);"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("audits", "0006_checkpoint_append_only")]

    operations = [migrations.RunPython(forwards, backwards)]
