/*
 * The database schema: versioned migrations, the server-side functions
 * they install, and the statements every connection prepares.
 *
 * Tables (DESIGN.md section 3):
 *
 *   ballast_meta        one row (id 1): revision (1 in a fresh store, as
 *                       etcd), compact_revision (-1: never compacted, as
 *                       etcd; reads below it fail), cluster_id (random,
 *                       positive), schema_version
 *   ballast_kv          the current state, one row per live key
 *   ballast_log         one row per event, (rev, sub); kind 0 put, 1
 *                       delete (a tombstone: create_rev, version, lease 0,
 *                       value empty); prev_rev: mod revision of the key's
 *                       previous live version (0: the key was absent), for
 *                       prev_kv, and what compaction follows
 *   ballast_lease       leases: id, granted ttl, expires_at (on the
 *                       database's clock: now() + ttl at grant and at each
 *                       keepalive), see bl_pg_sql_lease.c
 *   ballast_node        ballast nodes sharing the database: id (the
 *                       member id), name, client URLs, last heartbeat
 *   ballast_alarm       etcd's alarms (NOSPACE, CORRUPT), cluster-wide
 *   ballast_compaction  one row: how far the deletion of compacted history
 *                       got (see bl_pg_compact.c); apart from meta so that
 *                       it never waits for, nor holds up, the revision lock
 *
 * Keys and values are bytea, which PostgreSQL orders bytewise (memcmp,
 * then length): etcd's order.
 *
 * Revisions are taken under the row lock of ballast_meta, inside the
 * transaction that writes kv and log, never from a sequence: a writer
 * cannot take revision R+1 before R committed, so revisions are gap-free
 * and visible in order on every node.  Every writing function takes that
 * lock first (UPDATE or SELECT ... FOR UPDATE of the meta row) and only
 * then reads kv, in statements of their own, so that it sees every earlier
 * write and locks in one order.  A write that ends in an etcd error writes
 * nothing and uses no revision (it still holds the lock: nobody saw the
 * number).  etcd errors are values (err columns), never raised, so that
 * they never abort the other writes of a group commit:
 *
 *   1 key not found   2 lease not found   3 compacted   4 future revision
 *   5 lease exists
 *
 * Key ranges are passed as a form and two keys, as the callers get them:
 * 0 one key, 1 every key >= key ("\0" range_end), 2 key <= k < end.
 */
#include <bl_core.h>
#include <bl_pg.h>


/* the schema this code understands */
#define BL_PG_SCHEMA_VERSION  1

/* pg_advisory_xact_lock key of migrations: "ballast\0" (compaction's,
 * in ballast_compact_step, is "ballast\1") */
#define BL_PG_MIGRATION_LOCK  "7089066501205095424"


/*
 * The meta table is created by the locked check itself (so that the
 * check can read schema_version whether or not the schema exists); its
 * definition here is frozen: later versions ALTER it.
 */
#define BL_PG_META_SQL                                                        \
    "CREATE TABLE IF NOT EXISTS ballast_meta ("                               \
    "  id               smallint PRIMARY KEY CHECK (id = 1),"                 \
    "  revision         bigint NOT NULL,"                                     \
    "  compact_revision bigint NOT NULL,"                                     \
    "  cluster_id       bigint NOT NULL,"                                     \
    "  schema_version   integer NOT NULL"                                     \
    ");"


/* version 1: the tables (all but meta itself) */
static const char  bl_pg_v1_tables[] =
    "INSERT INTO ballast_meta VALUES (1, 1, -1,"
    "  greatest(1, ('x' || substr(md5(gen_random_uuid()::text), 1, 16))"
    "              ::bit(64)::bigint & 9223372036854775807),"
    "  1);"

    /*
     * toast_tuple_target: values up to about 8 KB stay in the row, neither
     * compressed nor moved out of line (PostgreSQL's default, 2 KB, sends
     * a 4 KB value to the TOAST table, so reading it costs two or three
     * more index lookups; a list of 500 such values paid that 1,000 times).
     * The current rows are vacuumed sooner than PostgreSQL's default (a
     * fifth of the table changed): a range's count is an index-only scan
     * only over pages the visibility map knows to be all-visible.
     */
    "CREATE TABLE ballast_kv ("
    "  key         bytea PRIMARY KEY,"
    "  create_rev  bigint NOT NULL,"
    "  mod_rev     bigint NOT NULL,"
    "  version     bigint NOT NULL,"
    "  lease       bigint NOT NULL,"
    "  value       bytea NOT NULL"
    ") WITH (toast_tuple_target = 8160,"
    "        autovacuum_vacuum_scale_factor = 0.05,"
    "        autovacuum_vacuum_insert_scale_factor = 0.05,"
    "        autovacuum_analyze_scale_factor = 0.05);"
    "CREATE INDEX ballast_kv_lease ON ballast_kv (lease) WHERE lease <> 0;"

    "CREATE TABLE ballast_log ("
    "  rev         bigint NOT NULL,"
    "  sub         integer NOT NULL,"
    "  key         bytea NOT NULL,"
    "  kind        smallint NOT NULL,"
    "  create_rev  bigint NOT NULL,"
    "  version     bigint NOT NULL,"
    "  lease       bigint NOT NULL,"
    "  value       bytea NOT NULL,"
    "  prev_rev    bigint NOT NULL,"
    "  PRIMARY KEY (rev, sub)"
    ") WITH (toast_tuple_target = 8160);"
    /* DESC: "latest row per key at or below R" walks it forwards; also
     * compaction's lookup of (key, prev_rev) */
    "CREATE INDEX ballast_log_key_rev"
    "  ON ballast_log (key, rev DESC, sub DESC);"

    /*
     * Every keepalive rewrites expires_at: with no index on it and room in
     * each page (fillfactor), those updates are HOT and never pile dead
     * index entries up (an index on expires_at made keepalive throughput
     * decay from 20k/s to 3k/s within a minute).  Expiry scans the table,
     * which is small: leases, not keys.
     */
    "CREATE TABLE ballast_lease ("
    "  id          bigint PRIMARY KEY,"
    "  ttl         bigint NOT NULL,"
    "  expires_at  timestamptz NOT NULL"
    ") WITH (fillfactor = 50);"

    /* instance: the run of the node's watcher that wrote the row, so
     * that a leaving watcher removes its own row only (bl_pg_sql_maint.c) */
    "CREATE TABLE ballast_node ("
    "  id              bigint PRIMARY KEY,"
    "  name            text NOT NULL,"
    "  client_urls     text[] NOT NULL,"
    "  instance        bigint NOT NULL,"
    "  last_heartbeat  timestamptz NOT NULL"
    ");"

    /* etcd's alarms, cluster-wide: alarm is etcd's AlarmType (1 NOSPACE,
     * 2 CORRUPT), member_id the member that raised it */
    "CREATE TABLE ballast_alarm ("
    "  member_id       bigint NOT NULL,"
    "  alarm           integer NOT NULL,"
    "  PRIMARY KEY (member_id, alarm)"
    ");"

    /* finished: compaction is done up to this revision; cursor: the log
     * rows up to (cursor_rev, cursor_sub) have been gone through */
    "CREATE TABLE ballast_compaction ("
    "  id          smallint PRIMARY KEY CHECK (id = 1),"
    "  finished    bigint NOT NULL,"
    "  cursor_rev  bigint NOT NULL,"
    "  cursor_sub  integer NOT NULL"
    ");"
    "INSERT INTO ballast_compaction VALUES (1, -1, 0, 0);\n";


/* a migration: its SQL in pieces (the functions come from
 * bl_pg_sql_kv.c and bl_pg_sql_txn.c), NULL-terminated */
static const char  *const bl_pg_migration_1[] = {
    bl_pg_v1_tables,
    bl_pg_sql_kv,
    bl_pg_sql_compact,
    bl_pg_sql_txn_head,
    bl_pg_sql_txn_body,
    "$f$;\n",
    bl_pg_sql_txn_ro_head,
    bl_pg_sql_txn_body,
    "$f$;\n",
    bl_pg_sql_lease,
    bl_pg_sql_maint,
    NULL
};

/* index: the version a migration upgrades to */
static const char  *const *const bl_pg_migrations[BL_PG_SCHEMA_VERSION
                                                 + 1] = {
    NULL,
    bl_pg_migration_1,
};


/*
 * The check.  Fast path, every connection: read the version (one round
 * trip).  Slow path, when the schema is absent or older: under the
 * advisory lock, in one transaction, create or upgrade step by step.
 */

#define BL_PG_VERSION_SQL                                                     \
    "SELECT schema_version, cluster_id FROM ballast_meta WHERE id = 1"

enum {
    BL_PG_STEP_READ = 0,       /* fast path sent */
    BL_PG_STEP_LOCKED,         /* lock + meta + version sent */
    BL_PG_STEP_COMMIT,         /* COMMIT of a current schema sent */
    BL_PG_STEP_MIGRATE         /* migrations + COMMIT sent */
};

static char  *bl_pg_migrate_sql;


static bl_int_t
bl_pg_schema_version(PGresult *res, int64_t *version, int64_t *cluster_id)
{
    int32_t  v;

    if (PQntuples(res) == 0) {
        *version = 0;
        *cluster_id = 0;
        return BL_OK;
    }

    /* the simple protocol: text results */
    v = (int32_t) strtol(PQgetvalue(res, 0, 0), NULL, 10);
    *version = v;
    *cluster_id = strtoll(PQgetvalue(res, 0, 1), NULL, 10);

    if (v <= 0) {
        bl_log_error(BL_LOG_ERR, 0, "postgres: ballast_meta holds an "
                     "invalid schema_version %d", (int) v);
        return BL_ERROR;
    }

    return BL_OK;
}


/* logged once until the schema is accepted again: every connection of
 * every worker retries the check every few seconds meanwhile */
static int64_t  bl_pg_schema_refused;


static bl_int_t
bl_pg_schema_newer(int64_t version)
{
    if (bl_pg_schema_refused != version) {
        bl_log_error(BL_LOG_CRIT, 0, "postgres: the database has schema "
                     "version %" PRId64 ", newer than this ballast "
                     "understands (%d): refusing to use it until ballast is "
                     "upgraded", version, BL_PG_SCHEMA_VERSION);
        bl_pg_schema_refused = version;
    }

    return BL_DECLINED;
}


static bl_int_t
bl_pg_schema_ok(int64_t cluster_id, int64_t *out)
{
    if (bl_pg_schema_refused != 0) {
        bl_log_error(BL_LOG_NOTICE, 0, "postgres: the database schema is "
                     "version %d again", BL_PG_SCHEMA_VERSION);
        bl_pg_schema_refused = 0;
    }

    *out = cluster_id;
    return BL_OK;
}


static char *
bl_pg_schema_migrate_sql(int64_t from)
{
    int                 v;
    size_t              n;
    char               *sql, *p;
    const char *const  *piece;

    static const char  tail_fmt[] =
        "UPDATE ballast_meta SET schema_version = %d WHERE id = 1;"
        BL_PG_VERSION_SQL "; COMMIT";

    n = sizeof(tail_fmt) + 16;

    for (v = (int) from + 1; v <= BL_PG_SCHEMA_VERSION; v++) {
        for (piece = bl_pg_migrations[v]; *piece != NULL; piece++) {
            n += strlen(*piece) + 1;
        }
    }

    sql = bl_alloc(n);
    if (sql == NULL) {
        return NULL;
    }

    p = sql;

    for (v = (int) from + 1; v <= BL_PG_SCHEMA_VERSION; v++) {
        for (piece = bl_pg_migrations[v]; *piece != NULL; piece++) {
            n = strlen(*piece);
            memcpy(p, *piece, n);
            p += n;
            *p++ = '\n';
        }
    }

    sprintf(p, tail_fmt, BL_PG_SCHEMA_VERSION);

    return sql;
}


bl_int_t
bl_pg_schema_step(int *step, PGresult *res, const char **sql,
    int64_t *cluster_id)
{
    int64_t      version, id;
    const char  *state;

    if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR) {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (*step == BL_PG_STEP_READ && state != NULL
            && strcmp(state, "42P01") == 0)
        {
            /* undefined_table: a fresh database */
            goto locked;
        }

        bl_log_error(BL_LOG_ERR, 0, "postgres: %s while %s the schema",
                     bl_pg_result_error(res),
                     *step == BL_PG_STEP_MIGRATE ? "migrating"
                                                 : "checking");
        return BL_ERROR;
    }

    switch (*step) {

    case BL_PG_STEP_READ:
        if (res == NULL) {
            *sql = BL_PG_VERSION_SQL;
            return BL_AGAIN;
        }

        if (bl_pg_schema_version(res, &version, &id) != BL_OK) {
            return BL_ERROR;
        }

        if (version == BL_PG_SCHEMA_VERSION) {
            return bl_pg_schema_ok(id, cluster_id);
        }

        if (version > BL_PG_SCHEMA_VERSION) {
            return bl_pg_schema_newer(version);
        }

        goto locked;

    case BL_PG_STEP_LOCKED:
        if (bl_pg_schema_version(res, &version, &id) != BL_OK) {
            return BL_ERROR;
        }

        if (version > BL_PG_SCHEMA_VERSION) {
            /* closing the connection rolls the transaction back */
            return bl_pg_schema_newer(version);
        }

        if (version == BL_PG_SCHEMA_VERSION) {
            /* another connection or node did it meanwhile */
            *step = BL_PG_STEP_COMMIT;
            *sql = "COMMIT; " BL_PG_VERSION_SQL;
            return BL_AGAIN;
        }

        free(bl_pg_migrate_sql);
        bl_pg_migrate_sql = bl_pg_schema_migrate_sql(version);
        if (bl_pg_migrate_sql == NULL) {
            return BL_ERROR;
        }

        if (version == 0) {
            bl_log_error(BL_LOG_NOTICE, 0, "postgres: creating the ballast "
                         "schema, version %d", BL_PG_SCHEMA_VERSION);
        } else {
            bl_log_error(BL_LOG_NOTICE, 0, "postgres: upgrading the ballast "
                         "schema from version %" PRId64 " to %d", version,
                         BL_PG_SCHEMA_VERSION);
        }

        *step = BL_PG_STEP_MIGRATE;
        *sql = bl_pg_migrate_sql;
        return BL_AGAIN;

    case BL_PG_STEP_COMMIT:
    case BL_PG_STEP_MIGRATE:
        if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
            || bl_pg_schema_version(res, &version, &id) != BL_OK)
        {
            bl_log_error(BL_LOG_ERR, 0, "postgres: unexpected answer while "
                         "migrating the schema");
            return BL_ERROR;
        }

        if (version != BL_PG_SCHEMA_VERSION) {
            return bl_pg_schema_newer(version);
        }

        return bl_pg_schema_ok(id, cluster_id);
    }

    return BL_ERROR;

locked:

    /* one transaction until the COMMIT of the last step; an absent meta
     * table reads as version 0 */
    *step = BL_PG_STEP_LOCKED;
    *sql = "BEGIN;"
           "SELECT pg_advisory_xact_lock(" BL_PG_MIGRATION_LOCK ");"
           "SET LOCAL client_min_messages = warning;"
           BL_PG_META_SQL
           BL_PG_VERSION_SQL;
    return BL_AGAIN;
}


void
bl_pg_schema_free(void)
{
    free(bl_pg_migrate_sql);
    bl_pg_migrate_sql = NULL;
}


/*
 * Prepared statements.  Range, every form: $1 key, $2 range_end, $3 limit
 * (NULL: all), $4 keys_only, $5 revision (the _at forms); columns:
 *   0 revision  1 compact_revision  2 count (all matches)
 *   3 key  4 create_rev  5 mod_rev  6 version  7 lease  8 value
 * and at least one row: with no match, one row whose key is NULL.  One
 * statement is one snapshot: header revision, count and rows agree.
 */

#define BL_PG_RANGE_ONE_SQL                                                   \
    "SELECT m.revision, m.compact_revision, (k.key IS NOT NULL)::int::int8,"  \
    "  k.key, k.create_rev, k.mod_rev, k.version, k.lease,"                   \
    "  CASE WHEN $4 THEN NULL ELSE k.value END"                               \
    " FROM ballast_meta m LEFT JOIN ballast_kv k ON k.key = $1"               \
    " WHERE m.id = 1"

#define BL_PG_RANGE_SQL(cond)                                                 \
    "SELECT m.revision, m.compact_revision, c.n,"                             \
    "  k.key, k.create_rev, k.mod_rev, k.version, k.lease, k.value"           \
    " FROM ballast_meta m"                                                    \
    " CROSS JOIN LATERAL"                                                     \
    "  (SELECT count(*) AS n FROM ballast_kv WHERE " cond ") c"               \
    " LEFT JOIN LATERAL"                                                      \
    "  (SELECT key, create_rev, mod_rev, version, lease,"                     \
    "     CASE WHEN $4 THEN NULL ELSE value END AS value"                     \
    "   FROM ballast_kv WHERE " cond " ORDER BY key LIMIT $3) k ON true"      \
    " WHERE m.id = 1"

/* at revision $5: the latest log row of each key at or below it, deletes
 * filtered; no rows unless compact_revision <= $5 <= revision (the caller
 * tells FUTURE_REV and COMPACTED from columns 0 and 1) */

#define BL_PG_RANGE_ONE_AT_SQL                                                \
    "SELECT m.revision, m.compact_revision, (k.key IS NOT NULL)::int::int8,"  \
    "  k.key, k.create_rev, k.rev, k.version, k.lease,"                       \
    "  CASE WHEN $4 THEN NULL ELSE k.value END"                               \
    " FROM ballast_meta m LEFT JOIN LATERAL"                                  \
    "  (SELECT * FROM"                                                        \
    "    (SELECT * FROM ballast_log WHERE key = $1 AND rev <= $5"             \
    "     ORDER BY rev DESC, sub DESC LIMIT 1) x WHERE x.kind = 0) k"         \
    "  ON $5 <= m.revision AND $5 >= m.compact_revision"                      \
    " WHERE m.id = 1"

/*
 * A range at revision $5 (bl_pg_sql_kv.c has the reasoning) takes one of
 * three ways, each inline so that its rows stream out with no copy
 * through a function's result store:
 *   cur    nothing in the range changed after $5: the current rows
 *   delta  a few log rows came after $5 (up to BL_PG_DELTA_MAX): the
 *          current rows of the keys that did not change, merged with
 *          the version at $5 of each key that did (the row its first
 *          change after $5 replaced: prev_rev; the last at that revision,
 *          as a transaction may delete a key and put it again)
 *   log    many did: the log, key by key (ballast_at_rows)
 * OFFSET 0 keeps the count and the choice in their subqueries: pulled up
 * into the select list, the count ran once per row returned.  The
 * changed keys are ordered by c.key, which their grouping already sorts,
 * so that the LIMIT stops the probes (ordered by o.key, every changed
 * key's version was read and sorted, values and all, for every page).
 */
#define BL_PG_RANGE_AT_SQL(hi, cond)                                          \
    "SELECT m.revision, m.compact_revision, m.n,"                             \
    "  k.key, k.create_rev, k.mod_rev, k.version, k.lease, k.value"           \
    " FROM"                                                                   \
    "  (SELECT revision, compact_revision, ok AND fresh AS cur,"              \
    "     ok AND near AND NOT fresh AS delta, ok AND NOT near AS log,"        \
    "     CASE WHEN ok THEN ballast_range_count($1, " hi ", $5)"              \
    "     ELSE 0 END AS n"                                                    \
    "   FROM (SELECT revision, compact_revision, ok, near,"                   \
    "           near AND NOT EXISTS (SELECT FROM ballast_log"                 \
    "                                WHERE rev > $5 AND " cond ") AS fresh"   \
    "         FROM (SELECT revision, compact_revision,"                       \
    "                 $5 <= revision AND $5 >= compact_revision AS ok,"       \
    "                 ballast_changed_since($5) <= " BL_PG_DELTA_MAX          \
    "                 AS near"                                                \
    "               FROM ballast_meta WHERE id = 1) y OFFSET 0) x"            \
    "   OFFSET 0) m"                                                          \
    " LEFT JOIN LATERAL"                                                      \
    "  ((SELECT key, create_rev, mod_rev, version, lease,"                    \
    "      CASE WHEN $4 THEN NULL ELSE value END AS value"                    \
    "    FROM ballast_kv WHERE m.cur AND " cond " ORDER BY key LIMIT $3)"     \
    "   UNION ALL"                                                            \
    "   (SELECT * FROM"                                                       \
    "     ((SELECT key, create_rev, mod_rev, version, lease,"                 \
    "         CASE WHEN $4 THEN NULL ELSE value END AS value"                 \
    "       FROM ballast_kv WHERE m.delta AND " cond                          \
    "         AND key NOT IN (SELECT key FROM ballast_log"                    \
    "                         WHERE rev > $5 AND " cond ")"                   \
    "       ORDER BY key LIMIT $3)"                                           \
    "      UNION ALL"                                                         \
    "      (SELECT o.key, o.create_rev, o.rev, o.version, o.lease,"           \
    "         CASE WHEN $4 THEN NULL ELSE o.value END"                        \
    "       FROM (SELECT key, (min(ARRAY[rev, sub, prev_rev]))[3] AS prev"    \
    "             FROM ballast_log WHERE m.delta AND rev > $5 AND " cond      \
    "             GROUP BY key) c"                                            \
    "       CROSS JOIN LATERAL"                                               \
    "        (SELECT * FROM ballast_log l WHERE l.key = c.key"                 \
    "           AND l.rev = c.prev ORDER BY l.sub DESC LIMIT 1) o"            \
    "       WHERE c.prev > 0 AND o.kind = 0 ORDER BY c.key LIMIT $3)) d"      \
    "    ORDER BY d.key LIMIT $3)"                                            \
    "   UNION ALL"                                                            \
    "   (SELECT * FROM ballast_at_rows($1, " hi ", $5, $3, $4)"               \
    "    WHERE m.log)) k ON true"

#define BL_PG_FROM     "key >= $1"
#define BL_PG_BETWEEN  "key >= $1 AND key < $2"

/* put, a group of them (bl_storage.c): $1 keys, $2 values, $3 leases,
 * $4 flags; one row per put: columns 0 n (the put's place in the group,
 * from 1), 1 err, 2 rev, 3..7 prev create_rev, mod_rev, version, lease,
 * value (NULL unless prev_kv was asked and the key existed) */
#define BL_PG_PUT_SQL                                                         \
    "SELECT n, err, rev, prev_create_rev, prev_mod_rev, prev_version,"        \
    "  prev_lease, prev_value FROM ballast_put_many($1, $2, $3, $4)"


/* delete: $1 form, $2 key, $3 range_end, $4 prev_kv; ballast_delete's
 * rows */
#define BL_PG_DELETE_SQL                                                      \
    "SELECT r_rev, r_deleted, r_key, r_create_rev, r_mod_rev, r_version,"     \
    "  r_lease, r_value FROM ballast_delete($1, $2, $3, $4)"

/* txn: the flattened tree (bl_storage_txn.c) */
#define BL_PG_TXN_SQL(f)                                                      \
    "SELECT r_type, r_op, r_flag, r_rev, r_n, r_key, r_create_rev,"           \
    "  r_mod_rev, r_version, r_lease, r_value"                                \
    " FROM " f "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"

#define BL_PG_COMPACT_SQL                                                     \
    "SELECT err, rev, compact_rev FROM ballast_compact($1)"

#define BL_PG_COMPACT_STEP_SQL                                                \
    "SELECT busy, deleted, scheduled, finished"                               \
    " FROM ballast_compact_step($1)"

/*
 * The NOTIFY of a write batch (bl_pg_batch.c), in two parts.  The last
 * statement of the batch marks the session with the revision it reached,
 * if it wrote the meta row (the row's xmin is its own transaction id): a
 * batch whose writes all failed, or changed nothing, marks nothing, and
 * a batch that fails takes its mark back with it (set_config is
 * transactional).  Right behind it, a transaction of its own sends the
 * marked revision and clears the mark, so that PostgreSQL's notification
 * work at commit does not lengthen the hold of the revision lock.
 */
#define BL_PG_NOTIFY_MARK_SQL                                                 \
    "SELECT set_config('ballast.notify', revision::text, false)"              \
    " FROM ballast_meta"                                                      \
    " WHERE id = 1 AND xmin = xid(pg_current_xact_id_if_assigned())"

#define BL_PG_NOTIFY_SQL                                                      \
    "SELECT pg_notify('" BL_PG_CHANNEL "', v),"                                \
    "  set_config('ballast.notify', '', false)"                               \
    " FROM (SELECT current_setting('ballast.notify', true) AS v) m"           \
    " WHERE v <> ''"

/*
 * The log read (bl_storage_log.c): $1 after, $2 the last revision wanted
 * (after + max_revs, saturated), $3 key, $4 range end.  One statement, so
 * one snapshot; rows:
 *
 *   first the header: 0 revision, 1 compact_revision, 2 through
 *   then the events in (rev, sub) order, with 0..2 NULL:
 *     3 rev  4 sub  5 kind  6 key  7 create_rev  8 version  9 lease
 *     10 value  11 prev_rev, and the previous version of the key (the
 *     log row of the key at prev_rev; NULL: created, or compacted away):
 *     12 create_rev  13 version  14 lease  15 value
 *
 * No events if after is below the compact revision - 1 (COMPACTED; a
 * watch from the compact revision itself is fine, as in etcd).  The
 * events side is an ordered index scan feeding a nested loop, so the
 * order needs no sort: the meta values it needs come from InitPlans (one
 * evaluation each), not from a join with meta, which would lose the order.
 * (With few rows estimated, the planner may still prefer to sort: cheap
 * then.)  The bounds $1 and $2 stand apart from the current revision so
 * that the planner estimates the window from them.  UNION ALL returns its
 * branches in order; the reader checks it.
 */
#define BL_PG_LOG_SQL(cond)                                                   \
    "SELECT revision, compact_revision, least($2, revision),"                 \
    "  NULL::int8, NULL::int4, NULL::int4, NULL::bytea, NULL::int8,"          \
    "  NULL::int8, NULL::int8, NULL::bytea, NULL::int8,"                      \
    "  NULL::int8, NULL::int8, NULL::int8, NULL::bytea"                       \
    " FROM ballast_meta WHERE id = 1"                                         \
    " UNION ALL"                                                              \
    " (SELECT NULL, NULL, NULL,"                                              \
    "   e.rev, e.sub, e.kind::int4, e.key, e.create_rev, e.version,"          \
    "   e.lease, e.value, e.prev_rev,"                                        \
    "   p.create_rev, p.version, p.lease, p.value"                            \
    "  FROM ballast_log e LEFT JOIN LATERAL"                                  \
    "   (SELECT q.create_rev, q.version, q.lease, q.value"                    \
    "    FROM ballast_log q"                                                  \
    "    WHERE q.key = e.key AND q.rev = e.prev_rev AND e.prev_rev > 0"       \
    "    LIMIT 1) p ON true"                                                  \
    "  WHERE " cond " e.rev > $1 AND e.rev <= $2"                             \
    "    AND e.rev <= (SELECT revision FROM ballast_meta WHERE id = 1)"       \
    "    AND $1 >= (SELECT compact_revision FROM ballast_meta"                \
    "               WHERE id = 1) - 1"                                        \
    "  ORDER BY e.rev, e.sub)"

const char  bl_pg_log_from_sql[] = BL_PG_LOG_SQL("e.key >= $3 AND");
const char  bl_pg_log_range_sql[] =
    BL_PG_LOG_SQL("e.key >= $3 AND e.key < $4 AND");

/* leases (bl_pg_sql_lease.c, bl_storage_lease.c) */

#define BL_PG_LEASE_GRANT_SQL                                                 \
    "SELECT err, rev, id FROM ballast_lease_grant($1, $2)"

#define BL_PG_LEASE_REVOKE_SQL                                                \
    "SELECT err, rev FROM ballast_lease_revoke($1)"

/*
 * Keepalive, for every lease of $1 at once: a lease renews unless it has
 * expired (etcd's Renew waits for the revoke of an expired lease and then
 * says it is not found).  Rows: the revision, then each renewed lease in
 * id order (no row of its own: not found).
 */
/*
 * The rows are locked in id order first: two connections renewing
 * overlapping sets of leases would otherwise lock them in scan order and
 * could deadlock.
 */
#define BL_PG_LEASE_KEEPALIVE_SQL                                             \
    "WITH l AS (SELECT id FROM ballast_lease"                                 \
    "           WHERE id = ANY($1) AND expires_at > now()"                    \
    "           ORDER BY id FOR UPDATE),"                                     \
    " u AS (UPDATE ballast_lease b"                                           \
    "           SET expires_at = now() + make_interval(secs => b.ttl)"        \
    "           FROM l WHERE b.id = l.id"                                     \
    "           RETURNING b.id, b.ttl)"                                       \
    " SELECT m.revision, u.id, u.ttl"                                         \
    " FROM ballast_meta m LEFT JOIN u ON true"                                \
    " WHERE m.id = 1 ORDER BY u.id"

/*
 * TimeToLive: the revision, the lease (NULL: none), the seconds left
 * truncated toward zero as etcd's int64(Remaining().Seconds()), and its
 * keys in key order if $2 (one row per key; one row with NULL if none)
 */
#define BL_PG_LEASE_TTL_SQL                                                   \
    "SELECT m.revision, l.id, l.ttl,"                                         \
    "  trunc(extract(epoch FROM l.expires_at - now()))::int8, k.key"          \
    " FROM ballast_meta m"                                                    \
    " LEFT JOIN ballast_lease l ON l.id = $1"                                 \
    " LEFT JOIN LATERAL"                                                      \
    "  (SELECT x.key FROM ballast_kv x"                                       \
    "   WHERE $2 AND x.lease = l.id AND x.lease <> 0) k ON true"              \
    " WHERE m.id = 1 ORDER BY k.key"

/* etcd lists leases by expiry (lessor.Leases sorts leasesByExpiry) */
#define BL_PG_LEASE_LIST_SQL                                                  \
    "SELECT m.revision, l.id"                                                 \
    " FROM ballast_meta m LEFT JOIN ballast_lease l ON true"                  \
    " WHERE m.id = 1 ORDER BY l.expires_at, l.id"

#define BL_PG_LEASE_EXPIRE_SQL                                                \
    "SELECT revoked, more, rev FROM ballast_lease_expire($1)"

/* metrics: the revision, and the leases (the primary key's index) */
#define BL_PG_LEASE_COUNT_SQL                                                 \
    "SELECT m.revision, (SELECT count(*) FROM ballast_lease)"                 \
    " FROM ballast_meta m WHERE m.id = 1"


static const Oid  bl_pg_range_types[] = {
    BL_PG_BYTEAOID, BL_PG_BYTEAOID, BL_PG_INT8OID, BL_PG_BOOLOID,
    BL_PG_INT8OID
};

static const Oid  bl_pg_put_types[] = {
    BL_PG_BYTEAARRAYOID, BL_PG_BYTEAARRAYOID, BL_PG_INT8ARRAYOID,
    BL_PG_INT4ARRAYOID
};

static const Oid  bl_pg_delete_types[] = {
    BL_PG_INT4OID, BL_PG_BYTEAOID, BL_PG_BYTEAOID, BL_PG_BOOLOID
};

static const Oid  bl_pg_txn_types[] = {
    BL_PG_INT4ARRAYOID, BL_PG_INT4ARRAYOID, BL_PG_INT8ARRAYOID,
    BL_PG_BYTEAARRAYOID, BL_PG_BYTEAARRAYOID, BL_PG_BYTEAARRAYOID,
    BL_PG_INT4ARRAYOID, BL_PG_INT8ARRAYOID, BL_PG_BYTEAARRAYOID,
    BL_PG_BYTEAARRAYOID, BL_PG_BYTEAARRAYOID
};

static const Oid  bl_pg_compact_types[] = { BL_PG_INT8OID };

static const Oid  bl_pg_compact_step_types[] = { BL_PG_INT4OID };

static const Oid  bl_pg_log_types[] = {
    BL_PG_INT8OID, BL_PG_INT8OID, BL_PG_BYTEAOID, BL_PG_BYTEAOID
};

static const Oid  bl_pg_lease_grant_types[] = {
    BL_PG_INT8OID, BL_PG_INT8OID
};

static const Oid  bl_pg_lease_id_types[] = { BL_PG_INT8OID };

static const Oid  bl_pg_lease_ids_types[] = { BL_PG_INT8ARRAYOID };

static const Oid  bl_pg_lease_ttl_types[] = {
    BL_PG_INT8OID, BL_PG_BOOLOID
};

static const Oid  bl_pg_lease_expire_types[] = { BL_PG_INT4OID };


const bl_pg_stmt_t  bl_pg_stmts[] = {
    { BL_PG_STMT_RANGE_ONE, BL_PG_RANGE_ONE_SQL, 5, bl_pg_range_types },
    { BL_PG_STMT_RANGE_FROM, BL_PG_RANGE_SQL(BL_PG_FROM), 5,
      bl_pg_range_types },
    { BL_PG_STMT_RANGE_BETWEEN, BL_PG_RANGE_SQL(BL_PG_BETWEEN), 5,
      bl_pg_range_types },
    { BL_PG_STMT_RANGE_ONE_AT, BL_PG_RANGE_ONE_AT_SQL, 5,
      bl_pg_range_types },
    { BL_PG_STMT_RANGE_FROM_AT, BL_PG_RANGE_AT_SQL("NULL::bytea", BL_PG_FROM), 5,
      bl_pg_range_types },
    { BL_PG_STMT_RANGE_BETWEEN_AT, BL_PG_RANGE_AT_SQL("$2", BL_PG_BETWEEN), 5,
      bl_pg_range_types },
    { BL_PG_STMT_PUT, BL_PG_PUT_SQL, 4, bl_pg_put_types },
    { BL_PG_STMT_DELETE, BL_PG_DELETE_SQL, 4, bl_pg_delete_types },
    { BL_PG_STMT_TXN, BL_PG_TXN_SQL("ballast_txn"), 11, bl_pg_txn_types },
    { BL_PG_STMT_TXN_RO, BL_PG_TXN_SQL("ballast_txn_ro"), 11,
      bl_pg_txn_types },
    { BL_PG_STMT_COMPACT, BL_PG_COMPACT_SQL, 1, bl_pg_compact_types },
    { BL_PG_STMT_COMPACT_STEP, BL_PG_COMPACT_STEP_SQL, 1,
      bl_pg_compact_step_types },
    { BL_PG_STMT_NOTIFY_MARK, BL_PG_NOTIFY_MARK_SQL, 0, NULL },
    { BL_PG_STMT_NOTIFY, BL_PG_NOTIFY_SQL, 0, NULL },
    { BL_PG_STMT_LOG_ALL, BL_PG_LOG_SQL(""), 2, bl_pg_log_types },
    { BL_PG_STMT_LOG_KEY, BL_PG_LOG_SQL("e.key = $3 AND"), 3,
      bl_pg_log_types },
    { BL_PG_STMT_LEASE_GRANT, BL_PG_LEASE_GRANT_SQL, 2,
      bl_pg_lease_grant_types },
    { BL_PG_STMT_LEASE_REVOKE, BL_PG_LEASE_REVOKE_SQL, 1,
      bl_pg_lease_id_types },
    { BL_PG_STMT_LEASE_KEEPALIVE, BL_PG_LEASE_KEEPALIVE_SQL, 1,
      bl_pg_lease_ids_types },
    { BL_PG_STMT_LEASE_TTL, BL_PG_LEASE_TTL_SQL, 2, bl_pg_lease_ttl_types },
    { BL_PG_STMT_LEASE_LIST, BL_PG_LEASE_LIST_SQL, 0, NULL },
    { BL_PG_STMT_LEASE_EXPIRE, BL_PG_LEASE_EXPIRE_SQL, 1,
      bl_pg_lease_expire_types },
    { BL_PG_STMT_LEASE_COUNT, BL_PG_LEASE_COUNT_SQL, 0, NULL },
};

const size_t  bl_pg_nstmts = bl_nelems(bl_pg_stmts);

