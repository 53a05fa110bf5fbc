/*
 * The server-side functions of maintenance, nodes and alarms, installed
 * by migration 1 (bl_pg_schema.c has the tables), and the statements of
 * bl_storage_maint.c.  Those statements are rare (a status, a hash, a
 * heartbeat a second), so they are planned each time rather than
 * prepared on every connection.
 *
 *   ballast_db_size() -> total, in_use: the bytes of ballast's tables
 *       (heap, indexes, TOAST, maps: what the files hold) and the share of
 *       each table that live rows hold, by PostgreSQL's statistics of
 *       live and dead rows.  Space that a VACUUM made reusable counts as
 *       in use: PostgreSQL does not tell free space without an extension.
 *       NULLs when a table is locked (a VACUUM FULL rewriting it): the
 *       caller keeps its last figures rather than wait.
 *   ballast_node_tick(id, name, urls, instance, quota) -> total, in_use,
 *       raised, then the alarms (member, alarm; NULL: none), a row each:
 *       the heartbeat of a node's watcher, its measure of the database
 *       and, over the quota, its NOSPACE alarm (raised: it is new).
 *       Rows of nodes silent for an hour are removed.
 *   ballast_alarm(action, member, alarm) -> member, alarm, active: etcd's
 *       Alarm GET (0: the alarms of that type, or all for NONE), ACTIVATE
 *       (1) and DEACTIVATE (2: the alarm removed, NULLs if none); active
 *       is the set of alarm types still raised afterwards, 1 << type.
 */
#include <bl_core.h>
#include <bl_pg.h>


const char  bl_pg_sql_maint[] =
    "CREATE FUNCTION ballast_db_size(OUT total bigint, OUT in_use bigint)\n"
    "LANGUAGE plpgsql STABLE SET lock_timeout = '200ms' AS $f$\n"
    "BEGIN\n"
    "    SELECT sum(s.size)::bigint,\n"
    "           sum(CASE WHEN s.live + s.dead = 0 THEN s.size\n"
    "                    ELSE s.size * s.live / (s.live + s.dead)\n"
    "               END)::bigint\n"
    "      INTO total, in_use\n"
    "      FROM (SELECT pg_total_relation_size(r)::numeric AS size,\n"
    "                   pg_stat_get_live_tuples(r) AS live,\n"
    "                   pg_stat_get_dead_tuples(r) AS dead\n"
    "            FROM unnest(ARRAY['ballast_meta', 'ballast_kv',\n"
    "                 'ballast_log', 'ballast_lease', 'ballast_node',\n"
    "                 'ballast_alarm', 'ballast_compaction']::regclass[])\n"
    "                 AS r) s;\n"
    "EXCEPTION WHEN lock_not_available THEN\n"
    "    total := NULL;\n"
    "    in_use := NULL;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_node_tick(p_id bigint, p_name text,\n"
    "    p_urls text[], p_instance bigint, p_quota bigint)\n"
    "RETURNS TABLE (r_total bigint, r_in_use bigint, r_raised boolean,\n"
    "    r_member bigint, r_alarm integer)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_total   bigint;\n"
    "    v_in_use  bigint;\n"
    "    v_raised  boolean := false;\n"
    "BEGIN\n"
    "    INSERT INTO ballast_node VALUES (p_id, p_name, p_urls, p_instance,\n"
    "                                     now())\n"
    "        ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,\n"
    "            client_urls = EXCLUDED.client_urls,\n"
    "            instance = EXCLUDED.instance,\n"
    "            last_heartbeat = EXCLUDED.last_heartbeat;\n"
    "    DELETE FROM ballast_node\n"
    "        WHERE last_heartbeat < now() - interval '1 hour';\n"
    "    SELECT s.total, s.in_use INTO v_total, v_in_use\n"
    "        FROM ballast_db_size() s;\n"
    "    IF p_quota > 0 AND v_total > p_quota THEN\n"
    "        INSERT INTO ballast_alarm VALUES (p_id, 1)\n"
    "            ON CONFLICT DO NOTHING;\n"
    "        v_raised := FOUND;\n"
    "    END IF;\n"
    "    RETURN QUERY SELECT v_total, v_in_use, v_raised, a.member_id,\n"
    "        a.alarm FROM (SELECT 1) x LEFT JOIN ballast_alarm a ON true\n"
    "        ORDER BY a.alarm, a.member_id;\n"
    "END\n"
    "$f$;\n"
    "CREATE FUNCTION ballast_alarm(p_action integer, p_member bigint,\n"
    "    p_alarm integer)\n"
    "RETURNS TABLE (r_member bigint, r_alarm integer, r_active integer)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_member  bigint;\n"
    "    v_alarm   integer;\n"
    "    v_active  integer;\n"
    "BEGIN\n"
    "    IF p_action = 1 THEN\n"
    "        INSERT INTO ballast_alarm VALUES (p_member, p_alarm)\n"
    "            ON CONFLICT DO NOTHING;\n"
    "        v_member := p_member;\n"
    "        v_alarm := p_alarm;\n"
    "    ELSIF p_action = 2 THEN\n"
    "        DELETE FROM ballast_alarm\n"
    "            WHERE member_id = p_member AND alarm = p_alarm\n"
    "            RETURNING member_id, alarm INTO v_member, v_alarm;\n"
    "    END IF;\n"
    "    SELECT coalesce(bit_or(1 << a.alarm), 0) INTO v_active\n"
    "        FROM ballast_alarm a WHERE a.alarm BETWEEN 0 AND 30;\n"
    "    IF p_action = 0 THEN\n"
    "        RETURN QUERY SELECT a.member_id, a.alarm, v_active\n"
    "            FROM (SELECT 1) x LEFT JOIN ballast_alarm a\n"
    "                ON p_alarm = 0 OR a.alarm = p_alarm\n"
    "            ORDER BY a.alarm, a.member_id;\n"
    "    ELSE\n"
    "        RETURN QUERY SELECT v_member, v_alarm, v_active;\n"
    "    END IF;\n"
    "END\n"
    "$f$;\n";


/* Status: revision, compact revision, sizes, then the alarms (a row each,
 * NULLs: none) */
const char  bl_pg_status_sql[] =
    "SELECT m.revision, m.compact_revision, s.total, s.in_use,"
    "  a.member_id, a.alarm"
    " FROM ballast_meta m CROSS JOIN ballast_db_size() s"
    " LEFT JOIN ballast_alarm a ON true"
    " WHERE m.id = 1 ORDER BY a.alarm, a.member_id";

/*
 * HashKV($1 revision, <= 0: the current one), in one snapshot: revision,
 * compact revision, the revision hashed, and a SHA-256 (NULL unless the
 * revision is valid) over what etcd's hashByRev covers: every log row of
 * a revision in (compact, at], and of the rows at or below the compact
 * revision, those that are the key's live version at `at` (what
 * compaction keeps, whether or not its deletion of the rest is done).
 * Rows in (rev, sub) order; each is hashed, then the hashes of a chunk
 * of revisions, then those of the chunks: memory stays bounded by a
 * chunk, whatever the history.
 */
const char  bl_pg_hash_kv_sql[] =
    "WITH m AS (SELECT revision, compact_revision,"
    "             CASE WHEN $1 > 0 THEN $1 ELSE revision END AS at,"
    "             ($1 <= 0 OR ($1 > compact_revision AND $1 <= revision))"
    "               AS valid"
    "           FROM ballast_meta WHERE id = 1),"
    " r AS (SELECT l.rev, l.sub,"
    "         sha256(int8send(l.rev) || int4send(l.sub)"
    "                || int2send(l.kind) || int8send(l.create_rev)"
    "                || int8send(l.version) || int8send(l.lease)"
    "                || int4send(length(l.key)) || l.key || l.value) AS h"
    "       FROM m, ballast_log l"
    "       WHERE m.valid AND l.rev <= m.at"
    "         AND (l.rev > m.compact_revision"
    "              OR (l.kind = 0 AND NOT EXISTS"
    "                  (SELECT 1 FROM ballast_log n"
    "                   WHERE n.key = l.key AND n.rev > l.rev"
    "                     AND n.rev <= m.at)))),"
    " c AS (SELECT rev / 4096 AS chunk,"
    "         sha256(string_agg(substr(h, 1, 8), ''::bytea"
    "                           ORDER BY rev, sub)) AS d"
    "       FROM r GROUP BY 1)"
    " SELECT m.revision, m.compact_revision, m.at,"
    "   CASE WHEN m.valid THEN coalesce("
    "     (SELECT sha256(string_agg(d, ''::bytea ORDER BY chunk)) FROM c),"
    "     sha256(''::bytea)) END"
    " FROM m";

/* Hash: revision, and a SHA-256 of the current key-values in key order */
const char  bl_pg_hash_sql[] =
    "WITH r AS (SELECT row_number() OVER (ORDER BY key) AS n,"
    "             sha256(int4send(length(key)) || key || int8send(create_rev)"
    "                    || int8send(mod_rev) || int8send(version)"
    "                    || int8send(lease) || value) AS h"
    "           FROM ballast_kv),"
    " c AS (SELECT n / 4096 AS chunk,"
    "         sha256(string_agg(substr(h, 1, 8), ''::bytea ORDER BY n))"
    "           AS d"
    "       FROM r GROUP BY 1)"
    " SELECT m.revision, coalesce("
    "   (SELECT sha256(string_agg(d, ''::bytea ORDER BY chunk)) FROM c),"
    "   sha256(''::bytea))"
    " FROM ballast_meta m WHERE m.id = 1";

/* Alarm: $1 action, $2 member, $3 alarm */
const char  bl_pg_alarm_sql[] =
    "SELECT r_member, r_alarm, r_active FROM ballast_alarm($1, $2, $3)";

/* the live nodes ($1: heartbeat within that many seconds), a row per
 * client URL (NULL: none), by id */
const char  bl_pg_members_sql[] =
    "SELECT n.id, n.name, u.url FROM ballast_node n"
    " LEFT JOIN LATERAL unnest(n.client_urls) WITH ORDINALITY AS u(url, i)"
    "   ON true"
    " WHERE n.last_heartbeat > now() - make_interval(secs => $1::float8)"
    " ORDER BY n.id, u.i";

/* $1 id, $2 name, $3 urls, $4 instance, $5 quota */
const char  bl_pg_node_tick_sql[] =
    "SELECT r_total, r_in_use, r_raised, r_member, r_alarm"
    " FROM ballast_node_tick($1, $2, $3, $4, $5)";

/* a node's watcher leaves: its own row only (a reload's new watcher may
 * have taken it over already) */
const char  bl_pg_node_leave_sql[] =
    "DELETE FROM ballast_node WHERE id = $1 AND instance = $2";
