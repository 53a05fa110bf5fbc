/*
 * The server-side functions of leases, installed by migration 1
 * (bl_pg_schema.c has the tables and the conventions).
 *
 * Deadlines are on the database's clock: expires_at = now() + ttl at the
 * grant and at each keepalive, so a ballast restart never extends a lease
 * and any node can expire any lease.
 *
 *   ballast_lease_grant(id, ttl) -> err, rev, id: id 0 picks a random
 *       positive int63 not in use (again on a collision); an id in use ->
 *       err 5.  No revision: rev is the current one.
 *   ballast_lease_revoke(id) -> err, rev: unknown -> err 2; else the
 *       lease's keys are deleted in one revision, then the lease.  rev: the
 *       new revision, or the current one if it had no key.
 *   ballast_lease_expire(max) -> revoked, more, rev: revokes up to max
 *       leases past their deadline, each in its own revision; more: some
 *       were left.
 *
 * Keepalive, TimeToLive and Leases are plain statements (bl_pg_schema.c).
 *
 * Locks, always in this order: the revision lock (the meta row), then
 * lease rows.  Revoke and expire take the revision lock first, also when
 * there is no key to delete: a put that attaches a key holds it while it
 * checks that the lease exists, so either the put commits first and its
 * key is deleted with the lease, or it sees the lease gone.  Keepalives
 * lock lease rows only; expiry skips rows a keepalive holds (SKIP LOCKED)
 * and a keepalive never renews a lease past its deadline, so the two never
 * disagree.  Two nodes expiring at once queue on the revision lock, and
 * the second no longer sees what the first revoked.
 */
#include <bl_core.h>
#include <bl_pg.h>


const char  bl_pg_sql_lease[] =
    /* the caller holds the revision lock; tombstones in key order */
    "CREATE FUNCTION ballast_lease_detach(p_rev bigint, p_id bigint)\n"
    "RETURNS bigint\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_n  bigint;\n"
    "BEGIN\n"
    "    WITH d AS (DELETE FROM ballast_kv\n"
    "               WHERE lease = p_id AND lease <> 0\n"
    "               RETURNING key, mod_rev),\n"
    "    l AS (INSERT INTO ballast_log\n"
    "          SELECT p_rev + 1,\n"
    "                 (row_number() OVER (ORDER BY d.key))::integer - 1,\n"
    "                 d.key, 1, 0, 0, 0, ''::bytea, d.mod_rev FROM d\n"
    "          RETURNING 1)\n"
    "    SELECT count(*) INTO v_n FROM l;\n"
    "    IF v_n = 0 THEN\n"
    "        RETURN p_rev;\n"
    "    END IF;\n"
    "    UPDATE ballast_meta SET revision = p_rev + 1 WHERE id = 1;\n"
    "    RETURN p_rev + 1;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_lease_grant(p_id bigint, p_ttl bigint,\n"
    "    OUT err integer, OUT rev bigint, OUT id bigint)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "BEGIN\n"
    "    err := 0;\n"
    "    SELECT m.revision INTO rev FROM ballast_meta m WHERE m.id = 1;\n"
    "    id := p_id;\n"
    "    LOOP\n"
    "        IF p_id = 0 THEN\n"
    "            id := ('x' || substr(md5(gen_random_uuid()::text), 1, 16))\n"
    "                  ::bit(64)::bigint & 9223372036854775807;\n"
    "            CONTINUE WHEN id = 0;\n"
    "        END IF;\n"
    "        INSERT INTO ballast_lease\n"
    "            VALUES (id, p_ttl, now() + make_interval(secs => p_ttl))\n"
    "            ON CONFLICT DO NOTHING;\n"
    "        EXIT WHEN FOUND;\n"
    "        IF p_id <> 0 THEN\n"
    "            err := 5;\n"
    "            EXIT;\n"
    "        END IF;\n"
    "    END LOOP;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_lease_revoke(p_id bigint, OUT err integer,\n"
    "    OUT rev bigint)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "BEGIN\n"
    "    err := 0;\n"
    "    SELECT m.revision INTO rev FROM ballast_meta m WHERE m.id = 1\n"
    "        FOR UPDATE;\n"
    "    DELETE FROM ballast_lease WHERE id = p_id;\n"
    "    IF NOT FOUND THEN\n"
    "        err := 2;\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    rev := ballast_lease_detach(rev, p_id);\n"
    "END\n"
    "$f$;\n"
    /* the look without the lock first: nothing due is the usual answer,
     * several times a second on every node, and must not queue behind
     * (nor hold up) the writers */
    "CREATE FUNCTION ballast_lease_expire(p_max integer,\n"
    "    OUT revoked bigint, OUT more boolean, OUT rev bigint)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_id  bigint;\n"
    "BEGIN\n"
    "    revoked := 0;\n"
    "    more := false;\n"
    "    PERFORM FROM ballast_lease WHERE expires_at <= now() LIMIT 1;\n"
    "    IF NOT FOUND OR p_max <= 0 THEN\n"
    "        more := FOUND;\n"
    "        SELECT m.revision INTO rev FROM ballast_meta m WHERE m.id = 1;\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    SELECT m.revision INTO rev FROM ballast_meta m WHERE m.id = 1\n"
    "        FOR UPDATE;\n"
    "    FOR v_id IN SELECT l.id FROM ballast_lease l\n"
    "        WHERE l.expires_at <= now()\n"
    "        ORDER BY l.expires_at LIMIT p_max + 1\n"
    "        FOR UPDATE SKIP LOCKED\n"
    "    LOOP\n"
    "        IF revoked = p_max THEN\n"
    "            more := true;\n"
    "            EXIT;\n"
    "        END IF;\n"
    "        DELETE FROM ballast_lease WHERE id = v_id;\n"
    "        rev := ballast_lease_detach(rev, v_id);\n"
    "        revoked := revoked + 1;\n"
    "    END LOOP;\n"
    "END\n"
    "$f$;\n";
