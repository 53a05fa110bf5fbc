/*
 * The server-side functions of put, delete, compares, ranges and
 * compaction, installed by migration 1 (bl_pg_schema.c has the tables and
 * the conventions: the revision lock, error codes, key range forms).
 */
#include <bl_core.h>
#include <bl_pg.h>



/*
 * Writing, shared by put, delete and txn (the caller holds the revision
 * lock and has checked everything):
 *
 *   ballast_write_put(rev, sub, key, value, lease, old row or NULLs)
 *   ballast_write_delete(rev, sub, lo, hi) -> the deleted rows, key order;
 *       hi NULL: no upper bound; tombstones get sub, sub + 1, ... in key
 *       order
 *
 * The requests:
 *
 *   ballast_put(key, value, lease, flags) -> err, rev, prev_*
 *       flags: 1 prev_kv, 2 ignore_value, 4 ignore_lease; prev_* NULL
 *       unless prev_kv was asked and the key existed; on an error rev is
 *       the current revision.  The lease first, then ignore_*: etcd's
 *       order for a Put (applierV3backend.Put); a Txn checks the other
 *       way round (checkRequestPut), see ballast_txn
 *   ballast_put_many(keys, values, leases, flags) -> n, then ballast_put's
 *       columns: the puts of one group commit in one statement, the n-th
 *       row answering the n-th put, each as if ballast_put had run alone
 *       in that order
 *   ballast_delete(form, key, end, prev) -> rows: the deleted key-values
 *       in key order when prev (r_rev NULL), then one row: r_rev (the new
 *       revision, or the current one when nothing was deleted), r_deleted
 *
 * Compares and ranges (STABLE: inside ballast_txn_ro they read its one
 * snapshot):
 *
 *   ballast_sign(target, row, number, value): -1, 0, 1 as the row's
 *       target field compares with number (value: bytewise)
 *   ballast_cmp(target, result, row, number, value): etcd's compareKV
 *       (both plain SQL expressions, inlined where they are used)
 *   ballast_compare(target, result, form, key, end, number, value): etcd's
 *       applyCompare: every key in a range must satisfy it; a missing key
 *       or an empty range compares as the zero key-value, except that a
 *       VALUE compare is then false
 *   ballast_range_count(lo, hi, at), ballast_range_rows(lo, hi, at, limit,
 *       keys_only): a range now (at <= 0) or at a revision (below)
 */
const char  bl_pg_sql_kv[] =
    "CREATE FUNCTION ballast_write_put(p_rev bigint, p_sub integer,\n"
    "    p_key bytea, p_value bytea, p_lease bigint, o ballast_kv)\n"
    "RETURNS void\n"
    "LANGUAGE plpgsql AS $f$\n"
    "BEGIN\n"
    "    IF o.key IS NULL THEN\n"
    "        INSERT INTO ballast_kv\n"
    "            VALUES (p_key, p_rev, p_rev, 1, p_lease, p_value);\n"
    "        INSERT INTO ballast_log\n"
    "            VALUES (p_rev, p_sub, p_key, 0, p_rev, 1, p_lease, p_value,\n"
    "                    0);\n"
    "    ELSE\n"
    "        UPDATE ballast_kv SET mod_rev = p_rev, version = o.version + 1,\n"
    "            lease = p_lease, value = p_value WHERE key = p_key;\n"
    "        INSERT INTO ballast_log VALUES (p_rev, p_sub, p_key, 0,\n"
    "            o.create_rev, o.version + 1, p_lease, p_value, o.mod_rev);\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_write_delete(p_rev bigint, p_sub integer,\n"
    "    p_lo bytea, p_hi bytea)\n"
    "RETURNS SETOF ballast_kv\n"
    "LANGUAGE plpgsql AS $f$\n"
    "BEGIN\n"
    "    IF p_hi IS NULL THEN\n"
    "        RETURN QUERY\n"
    "        WITH d AS (DELETE FROM ballast_kv WHERE key >= p_lo\n"
    "                   RETURNING *),\n"
    "        l AS (INSERT INTO ballast_log\n"
    "              SELECT p_rev, p_sub - 1\n"
    "                       + (row_number() OVER (ORDER BY d.key))::integer,\n"
    "                     d.key, 1, 0, 0, 0, ''::bytea, d.mod_rev FROM d)\n"
    "        SELECT * FROM d ORDER BY d.key;\n"
    "    ELSE\n"
    "        RETURN QUERY\n"
    "        WITH d AS (DELETE FROM ballast_kv\n"
    "                   WHERE key >= p_lo AND key < p_hi RETURNING *),\n"
    "        l AS (INSERT INTO ballast_log\n"
    "              SELECT p_rev, p_sub - 1\n"
    "                       + (row_number() OVER (ORDER BY d.key))::integer,\n"
    "                     d.key, 1, 0, 0, 0, ''::bytea, d.mod_rev FROM d)\n"
    "        SELECT * FROM d ORDER BY d.key;\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_put(p_key bytea, p_value bytea,\n"
    "    p_lease bigint, p_flags integer, OUT err integer, OUT rev bigint,\n"
    "    OUT prev_create_rev bigint, OUT prev_mod_rev bigint,\n"
    "    OUT prev_version bigint, OUT prev_lease bigint,\n"
    "    OUT prev_value bytea)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    o        ballast_kv%ROWTYPE;\n"
    "    v_value  bytea;\n"
    "    v_lease  bigint;\n"
    "BEGIN\n"
    "    err := 0;\n"
    "    UPDATE ballast_meta SET revision = revision + 1 WHERE id = 1\n"
    "        RETURNING revision INTO rev;\n"
    "    IF p_lease <> 0 THEN\n"
    "        PERFORM FROM ballast_lease WHERE id = p_lease;\n"
    "        IF NOT FOUND THEN\n"
    "            err := 2;\n"
    "        END IF;\n"
    "    END IF;\n"
    "    SELECT * INTO o FROM ballast_kv WHERE key = p_key;\n"
    "    IF NOT FOUND THEN\n"
    "        IF err = 0 AND p_flags & 6 <> 0 THEN\n"
    "            err := 1;\n"
    "        END IF;\n"
    "        v_value := p_value;\n"
    "        v_lease := p_lease;\n"
    "    ELSE\n"
    "        v_value := CASE WHEN p_flags & 2 <> 0 THEN o.value\n"
    "                        ELSE p_value END;\n"
    "        v_lease := CASE WHEN p_flags & 4 <> 0 THEN o.lease\n"
    "                        ELSE p_lease END;\n"
    "    END IF;\n"
    "    IF err <> 0 THEN\n"
    "        UPDATE ballast_meta SET revision = revision - 1 WHERE id = 1\n"
    "            RETURNING revision INTO rev;\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    PERFORM ballast_write_put(rev, 0, p_key, v_value, v_lease, o);\n"
    "    IF p_flags & 1 <> 0 AND o.key IS NOT NULL THEN\n"
    "        prev_create_rev := o.create_rev;\n"
    "        prev_mod_rev := o.mod_rev;\n"
    "        prev_version := o.version;\n"
    "        prev_lease := o.lease;\n"
    "        prev_value := o.value;\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n"
    /*
     * A group of puts costs one statement and, run by run, set-based
     * work: one join reads the keys' current rows, one statement each
     * updates and inserts them and appends to the log, and the revision
     * is written once.  A run ends before a key repeats, so that the
     * second put of a key sees the first.  The lock on ballast_meta comes
     * first, as in every writer.
     */
    "CREATE FUNCTION ballast_put_many(p_keys bytea[], p_values bytea[],\n"
    "    p_leases bigint[], p_flags integer[])\n"
    "RETURNS TABLE (n integer, err integer, rev bigint,\n"
    "    prev_create_rev bigint, prev_mod_rev bigint, prev_version bigint,\n"
    "    prev_lease bigint, prev_value bytea)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_begin  bigint;\n"
    "    v_rev    bigint;\n"
    "    v_lo     integer := 1;\n"
    "    v_hi     integer;\n"
    "    v_n      integer := cardinality(p_keys);\n"
    "BEGIN\n"
    "    SELECT revision INTO v_begin FROM ballast_meta WHERE id = 1\n"
    "        FOR UPDATE;\n"
    "    v_rev := v_begin;\n"
    "    WHILE v_lo <= v_n LOOP\n"
    "        v_hi := v_lo + 1;\n"
    "        WHILE v_hi <= v_n\n"
    "              AND NOT p_keys[v_hi] = ANY (p_keys[v_lo:v_hi - 1]) LOOP\n"
    "            v_hi := v_hi + 1;\n"
    "        END LOOP;\n"
    "        RETURN QUERY\n"
    "        WITH o AS (\n"
    "            SELECT i AS n, p_keys[i] AS key, p_values[i] AS value,\n"
    "                p_leases[i] AS lease, p_flags[i] AS flags, k.key AS o_key,\n"
    "                k.create_rev AS o_create_rev, k.mod_rev AS o_mod_rev,\n"
    "                k.version AS o_version, k.lease AS o_lease,\n"
    "                k.value AS o_value,\n"
    "                CASE WHEN p_leases[i] <> 0 AND NOT EXISTS\n"
    "                         (SELECT FROM ballast_lease l\n"
    "                          WHERE l.id = p_leases[i]) THEN 2\n"
    "                     WHEN k.key IS NULL AND p_flags[i] & 6 <> 0 THEN 1\n"
    "                     ELSE 0 END AS err\n"
    "            FROM generate_series(v_lo, v_hi - 1) i\n"
    "            LEFT JOIN ballast_kv k ON k.key = p_keys[i]),\n"
    "        r AS (\n"
    "            SELECT o.*,\n"
    "                v_rev + count(*) FILTER (WHERE o.err = 0)\n"
    "                    OVER (ORDER BY o.n) AS rev,\n"
    "                CASE WHEN o.flags & 2 <> 0 THEN o.o_value\n"
    "                     ELSE o.value END AS w_value,\n"
    "                CASE WHEN o.flags & 4 <> 0 THEN o.o_lease\n"
    "                     ELSE o.lease END AS w_lease\n"
    "            FROM o),\n"
    "        upd AS (\n"
    "            UPDATE ballast_kv k SET mod_rev = r.rev,\n"
    "                version = r.o_version + 1, lease = r.w_lease,\n"
    "                value = r.w_value\n"
    "            FROM r WHERE r.err = 0 AND r.o_key IS NOT NULL\n"
    "                AND k.key = r.key),\n"
    "        ins AS (\n"
    "            INSERT INTO ballast_kv\n"
    "            SELECT r.key, r.rev, r.rev, 1, r.w_lease, r.w_value\n"
    "            FROM r WHERE r.err = 0 AND r.o_key IS NULL),\n"
    "        app AS (\n"
    "            INSERT INTO ballast_log\n"
    "            SELECT r.rev, 0, r.key, 0, coalesce(r.o_create_rev, r.rev),\n"
    "                coalesce(r.o_version, 0) + 1, r.w_lease, r.w_value,\n"
    "                coalesce(r.o_mod_rev, 0)\n"
    "            FROM r WHERE r.err = 0)\n"
    "        SELECT r.n, r.err, r.rev,\n"
    "            CASE WHEN r.err = 0 AND r.flags & 1 <> 0 THEN r.o_create_rev END,\n"
    "            CASE WHEN r.err = 0 AND r.flags & 1 <> 0 THEN r.o_mod_rev END,\n"
    "            CASE WHEN r.err = 0 AND r.flags & 1 <> 0 THEN r.o_version END,\n"
    "            CASE WHEN r.err = 0 AND r.flags & 1 <> 0 THEN r.o_lease END,\n"
    "            CASE WHEN r.err = 0 AND r.flags & 1 <> 0 THEN r.o_value END\n"
    "        FROM r ORDER BY r.n;\n"
    "        SELECT coalesce(max(g.rev), v_rev) INTO v_rev FROM ballast_log g\n"
    "            WHERE g.rev > v_rev;\n"
    "        v_lo := v_hi;\n"
    "    END LOOP;\n"
    "    IF v_rev > v_begin THEN\n"
    "        UPDATE ballast_meta SET revision = v_rev WHERE id = 1;\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_delete(p_form integer, p_key bytea, p_end bytea,\n"
    "    p_prev boolean)\n"
    "RETURNS TABLE (r_rev bigint, r_deleted bigint, r_key bytea,\n"
    "    r_create_rev bigint, r_mod_rev bigint, r_version bigint,\n"
    "    r_lease bigint, r_value bytea)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_begin  bigint;\n"
    "    v_n      bigint := 0;\n"
    "    o        ballast_kv%ROWTYPE;\n"
    "BEGIN\n"
    "    SELECT revision INTO v_begin FROM ballast_meta WHERE id = 1\n"
    "        FOR UPDATE;\n"
    "    FOR o IN SELECT * FROM ballast_write_delete(v_begin + 1, 0, p_key,\n"
    "        CASE p_form WHEN 0 THEN p_key || '\\x00'::bytea\n"
    "                    WHEN 1 THEN NULL ELSE p_end END)\n"
    "    LOOP\n"
    "        v_n := v_n + 1;\n"
    "        IF p_prev THEN\n"
    "            r_key := o.key;\n"
    "            r_create_rev := o.create_rev;\n"
    "            r_mod_rev := o.mod_rev;\n"
    "            r_version := o.version;\n"
    "            r_lease := o.lease;\n"
    "            r_value := o.value;\n"
    "            RETURN NEXT;\n"
    "        END IF;\n"
    "    END LOOP;\n"
    "    r_key := NULL;\n"
    "    r_deleted := v_n;\n"
    "    r_rev := v_begin;\n"
    "    IF v_n > 0 THEN\n"
    "        r_rev := v_begin + 1;\n"
    "        UPDATE ballast_meta SET revision = r_rev WHERE id = 1;\n"
    "    END IF;\n"
    "    RETURN NEXT;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_sign(p_target integer, k ballast_kv,\n"
    "    p_num bigint, p_want bytea)\n"
    "RETURNS integer\n"
    "LANGUAGE sql IMMUTABLE AS $f$\n"
    "SELECT CASE p_target\n"
    "    WHEN 0 THEN (k.version > p_num)::integer\n"
    "                - (k.version < p_num)::integer\n"
    "    WHEN 1 THEN (k.create_rev > p_num)::integer\n"
    "                - (k.create_rev < p_num)::integer\n"
    "    WHEN 2 THEN (k.mod_rev > p_num)::integer\n"
    "                - (k.mod_rev < p_num)::integer\n"
    "    WHEN 3 THEN (k.value > p_want)::integer\n"
    "                - (k.value < p_want)::integer\n"
    "    WHEN 4 THEN (k.lease > p_num)::integer\n"
    "                - (k.lease < p_num)::integer\n"
    "    ELSE 0 END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_cmp(p_target integer, p_result integer,\n"
    "    k ballast_kv, p_num bigint, p_want bytea)\n"
    "RETURNS boolean\n"
    "LANGUAGE sql IMMUTABLE AS $f$\n"
    "SELECT CASE p_result\n"
    "    WHEN 0 THEN ballast_sign(p_target, k, p_num, p_want) = 0\n"
    "    WHEN 1 THEN ballast_sign(p_target, k, p_num, p_want) > 0\n"
    "    WHEN 2 THEN ballast_sign(p_target, k, p_num, p_want) < 0\n"
    "    WHEN 3 THEN ballast_sign(p_target, k, p_num, p_want) <> 0\n"
    "    ELSE true END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_compare(p_target integer, p_result integer,\n"
    "    p_form integer, p_key bytea, p_end bytea, p_num bigint,\n"
    "    p_want bytea)\n"
    "RETURNS boolean\n"
    "LANGUAGE plpgsql STABLE AS $f$\n"
    "DECLARE\n"
    "    k  ballast_kv%ROWTYPE;\n"
    "BEGIN\n"
    "    IF p_form = 0 THEN\n"
    "        SELECT * INTO k FROM ballast_kv WHERE key = p_key;\n"
    "        IF NOT FOUND THEN\n"
    "            IF p_target = 3 THEN\n"
    "                RETURN false;\n"
    "            END IF;\n"
    "            k := ROW(p_key, 0, 0, 0, 0, ''::bytea);\n"
    "        END IF;\n"
    "        RETURN ballast_cmp(p_target, p_result, k, p_num, p_want);\n"
    "    END IF;\n"
    "    IF p_form = 1 THEN\n"
    "        PERFORM FROM ballast_kv x WHERE x.key >= p_key\n"
    "            AND NOT ballast_cmp(p_target, p_result, x, p_num, p_want)\n"
    "            LIMIT 1;\n"
    "        IF FOUND THEN\n"
    "            RETURN false;\n"
    "        END IF;\n"
    "        PERFORM FROM ballast_kv WHERE key >= p_key LIMIT 1;\n"
    "    ELSE\n"
    "        PERFORM FROM ballast_kv x WHERE x.key >= p_key AND x.key < p_end\n"
    "            AND NOT ballast_cmp(p_target, p_result, x, p_num, p_want)\n"
    "            LIMIT 1;\n"
    "        IF FOUND THEN\n"
    "            RETURN false;\n"
    "        END IF;\n"
    "        PERFORM FROM ballast_kv WHERE key >= p_key AND key < p_end\n"
    "            LIMIT 1;\n"
    "    END IF;\n"
    "    IF FOUND THEN\n"
    "        RETURN true;\n"
    "    END IF;\n"
    "    RETURN p_target <> 3 AND ballast_cmp(p_target, p_result,\n"
    "        ROW(p_key, 0, 0, 0, 0, ''::bytea)::ballast_kv, p_num, p_want);\n"
    "END\n"
    "$f$;\n"
    /*
     * A range at revision `at` reads the current rows (ballast_kv) when
     * they are the rows at `at`, or corrects them by the few keys that
     * changed since; only far in the past does it walk the log key by
     * key.  Kubernetes lists page by page at the first page's revision,
     * usually the current one or a few revisions behind it.
     *
     * ballast_changed_since(at) -> log rows after `at`, counted up to
     *     BL_PG_DELTA_MAX + 1 (so the count costs at most that much)
     * ballast_range_fresh(lo, hi, at) -> whether the current rows of the
     *     range are its rows at `at`
     * ballast_at_rows(lo, hi, at, limit, keys_only) -> the live rows at
     *     `at`, from the log (ballast_at_keys counts them, reading no
     *     value): a loose index scan that jumps from key to key and probes
     *     each key's newest log row at or below `at`, O(keys), never
     *     O(history).  Its recursion is evaluated lazily, so the LIMIT
     *     stops it after a page, and its rows come in key order: the
     *     recursive scan yields keys in order and the nested loop keeps
     *     it.  Each step finds the next key with no upper bound, one index
     *     descent; the bound ends the recursion (as a scan condition it
     *     would, at the range's end, read every later key looking for one).
     * hi NULL: no upper bound.
     */
    "CREATE FUNCTION ballast_changed_since(p_at bigint)\n"
    "RETURNS bigint\n"
    "LANGUAGE sql STABLE AS $f$\n"
    "    SELECT count(*) FROM (SELECT 1 FROM ballast_log\n"
    "        WHERE rev > p_at ORDER BY rev, sub\n"
    "        LIMIT " BL_PG_DELTA_MAX " + 1) c\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_at_rows(p_lo bytea, p_hi bytea, p_at bigint,\n"
    "    p_limit bigint, p_keys_only boolean)\n"
    "RETURNS SETOF ballast_kv\n"
    "LANGUAGE sql STABLE AS $f$\n"
    "    WITH RECURSIVE ks(key) AS (\n"
    "        SELECT (SELECT l.key FROM ballast_log l\n"
    "                WHERE l.key >= p_lo ORDER BY l.key LIMIT 1)\n"
    "        UNION ALL\n"
    "        SELECT (SELECT l.key FROM ballast_log l\n"
    "                WHERE l.key > ks.key ORDER BY l.key LIMIT 1)\n"
    "        FROM ks\n"
    "        WHERE ks.key < p_hi OR (p_hi IS NULL AND ks.key IS NOT NULL))\n"
    "    SELECT x.key, x.create_rev, x.rev, x.version, x.lease,\n"
    "        CASE WHEN p_keys_only THEN NULL ELSE x.value END\n"
    "    FROM ks CROSS JOIN LATERAL\n"
    "        (SELECT * FROM ballast_log l\n"
    "         WHERE l.key = ks.key AND l.rev <= p_at\n"
    "         ORDER BY l.rev DESC, l.sub DESC LIMIT 1) x\n"
    "    WHERE x.kind = 0 AND (ks.key < p_hi OR p_hi IS NULL)\n"
    "    LIMIT p_limit\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_at_keys(p_lo bytea, p_hi bytea, p_at bigint)\n"
    "RETURNS bigint\n"
    "LANGUAGE sql STABLE AS $f$\n"
    "    SELECT count(*) FROM ballast_at_rows(p_lo, p_hi, p_at, NULL, true)\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_range_count(p_lo bytea, p_hi bytea, p_at bigint)\n"
    "RETURNS bigint\n"
    "LANGUAGE plpgsql STABLE AS $f$\n"
    "DECLARE\n"
    "    v_n  bigint;\n"
    "    v_d  bigint;\n"
    "    v_c  bigint := 0;\n"
    "BEGIN\n"
    "    IF p_at > 0 THEN\n"
    "        v_c := ballast_changed_since(p_at);\n"
    "        IF v_c > " BL_PG_DELTA_MAX " THEN\n"
    "            RETURN ballast_at_keys(p_lo, p_hi, p_at);\n"
    "        END IF;\n"
    "    END IF;\n"
    "    IF p_hi IS NULL THEN\n"
    "        SELECT count(*) INTO v_n FROM ballast_kv WHERE key >= p_lo;\n"
    "    ELSE\n"
    "        SELECT count(*) INTO v_n FROM ballast_kv\n"
    "            WHERE key >= p_lo AND key < p_hi;\n"
    "    END IF;\n"
    "    IF v_c = 0 THEN\n"
    "        RETURN v_n;\n"
    "    END IF;\n"
    /*
     * each key changed since `at`: it was live at `at` if its first row
     * after `at` replaced a live version (prev_rev > 0), and it is live
     * now if its last row is a put; so the rows after `at` alone tell,
     * with no lookup per key (compaction never removes a row above the
     * compact revision, and `at` is at or above it)
     */
    "    SELECT coalesce(sum(d), 0) INTO v_d FROM\n"
    "        (SELECT ((min(ARRAY[l.rev, l.sub, l.prev_rev]))[3] > 0)::integer\n"
    "                - ((max(ARRAY[l.rev, l.sub, l.kind]))[3] = 0)::integer\n"
    "                AS d\n"
    "         FROM ballast_log l\n"
    "         WHERE l.rev > p_at AND l.key >= p_lo\n"
    "           AND (p_hi IS NULL OR l.key < p_hi)\n"
    "         GROUP BY l.key) c;\n"
    "    RETURN v_n + v_d;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_range_fresh(p_lo bytea, p_hi bytea,\n"
    "    p_at bigint)\n"
    "RETURNS boolean\n"
    "LANGUAGE sql STABLE AS $f$\n"
    "    SELECT p_at <= 0\n"
    "        OR (ballast_changed_since(p_at) <= " BL_PG_DELTA_MAX "\n"
    "            AND NOT EXISTS (SELECT FROM ballast_log l\n"
    "                            WHERE l.rev > p_at AND l.key >= p_lo\n"
    "                              AND (p_hi IS NULL OR l.key < p_hi)))\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_range_rows(p_lo bytea, p_hi bytea, p_at bigint,\n"
    "    p_limit bigint, p_keys_only boolean)\n"
    "RETURNS SETOF ballast_kv\n"
    "LANGUAGE plpgsql STABLE AS $f$\n"
    "BEGIN\n"
    "    IF NOT ballast_range_fresh(p_lo, p_hi, p_at) THEN\n"
    "        RETURN QUERY SELECT * FROM ballast_at_rows(p_lo, p_hi, p_at,\n"
    "                                                   p_limit, p_keys_only);\n"
    "    ELSIF p_hi IS NULL THEN\n"
    "        RETURN QUERY SELECT x.key, x.create_rev, x.mod_rev, x.version,\n"
    "            x.lease, CASE WHEN p_keys_only THEN NULL ELSE x.value END\n"
    "            FROM ballast_kv x WHERE x.key >= p_lo\n"
    "            ORDER BY x.key LIMIT p_limit;\n"
    "    ELSE\n"
    "        RETURN QUERY SELECT x.key, x.create_rev, x.mod_rev, x.version,\n"
    "            x.lease, CASE WHEN p_keys_only THEN NULL ELSE x.value END\n"
    "            FROM ballast_kv x WHERE x.key >= p_lo AND x.key < p_hi\n"
    "            ORDER BY x.key LIMIT p_limit;\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n";


/*
 * Compaction:
 *
 *   ballast_compact(rev) -> err, rev (current), compact_rev: records it
 *       (reads below it fail from the commit on)
 *   ballast_compact_step(limit) -> busy, deleted, scheduled, finished:
 *       one bounded transaction of the deletion (bl_pg_compact.c)
 *
 * A step goes through the next `limit` log rows after the cursor, up to
 * the compact revision C, in (rev, sub) order.  Each row removes the
 * version it superseded (the row of the same key at prev_rev), and a
 * tombstone removes itself.  So every row older than C that a newer row
 * at or below C superseded goes, and every tombstone at or below C, which
 * leaves exactly the latest live version at or below C of each key: reads
 * at C and above answer as before.  (Rows at or below a previous
 * compaction were gone through by it: only its survivors can be
 * superseded now, by rows after the cursor.)  An advisory lock keeps two
 * processes from doing the same rows at once; any process may drive it.
 */
const char  bl_pg_sql_compact[] =
    "CREATE FUNCTION ballast_compact(p_rev bigint, OUT err integer,\n"
    "    OUT rev bigint, OUT compact_rev bigint)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "BEGIN\n"
    "    err := 0;\n"
    "    SELECT revision, compact_revision INTO rev, compact_rev\n"
    "        FROM ballast_meta WHERE id = 1 FOR UPDATE;\n"
    "    IF p_rev <= compact_rev THEN\n"
    "        err := 3;\n"
    "    ELSIF p_rev > rev THEN\n"
    "        err := 4;\n"
    "    ELSE\n"
    "        UPDATE ballast_meta SET compact_revision = p_rev WHERE id = 1;\n"
    "        compact_rev := p_rev;\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_compact_step(p_limit integer, OUT busy boolean,\n"
    "    OUT deleted bigint, OUT scheduled bigint, OUT finished bigint)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    s        ballast_compaction%ROWTYPE;\n"
    "    v_rows   bigint;\n"
    "    v_rev    bigint;\n"
    "    v_sub    integer;\n"
    "BEGIN\n"
    "    busy := false;\n"
    "    deleted := 0;\n"
    "    SELECT compact_revision INTO scheduled FROM ballast_meta\n"
    "        WHERE id = 1;\n"
    "    IF NOT pg_try_advisory_xact_lock(7089066501205095425) THEN\n"
    "        busy := true;\n"
    "        SELECT c.finished INTO finished FROM ballast_compaction c\n"
    "            WHERE c.id = 1;\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    SELECT * INTO s FROM ballast_compaction c WHERE c.id = 1;\n"
    "    finished := s.finished;\n"
    "    IF s.finished >= scheduled THEN\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    WITH c AS MATERIALIZED\n"
    "        (SELECT l.rev, l.sub, l.key, l.kind, l.prev_rev\n"
    "         FROM ballast_log l\n"
    "         WHERE (l.rev, l.sub) > (s.cursor_rev, s.cursor_sub)\n"
    "           AND l.rev <= scheduled\n"
    "         ORDER BY l.rev, l.sub LIMIT p_limit),\n"
    "    p AS (DELETE FROM ballast_log l USING c\n"
    "          WHERE c.prev_rev > 0 AND l.key = c.key AND l.rev = c.prev_rev\n"
    "            AND (l.rev, l.sub) < (c.rev, c.sub)\n"
    "          RETURNING 1),\n"
    "    t AS (DELETE FROM ballast_log l USING c\n"
    "          WHERE c.kind = 1 AND l.rev = c.rev AND l.sub = c.sub\n"
    "          RETURNING 1),\n"
    "    z AS (SELECT c.rev, c.sub FROM c ORDER BY c.rev DESC, c.sub DESC\n"
    "          LIMIT 1)\n"
    "    SELECT (SELECT count(*) FROM p) + (SELECT count(*) FROM t),\n"
    "           (SELECT count(*) FROM c), z.rev, z.sub\n"
    "        INTO deleted, v_rows, v_rev, v_sub\n"
    "        FROM (SELECT 1) one LEFT JOIN z ON true;\n"
    "    IF v_rows < p_limit THEN\n"
    "        finished := scheduled;\n"
    "    END IF;\n"
    "    UPDATE ballast_compaction c\n"
    "        SET finished = ballast_compact_step.finished,\n"
    "            cursor_rev = coalesce(v_rev, s.cursor_rev),\n"
    "            cursor_sub = coalesce(v_sub, s.cursor_sub)\n"
    "        WHERE c.id = 1;\n"
    "END\n"
    "$f$;\n";
