/*
 * Txn in one statement: ballast_txn(...) for a transaction that may write,
 * ballast_txn_ro(...) for one whose every op is a Range.  One body for
 * both: the read-only one is STABLE, so that all its statements read one
 * snapshot, and never reaches a write.
 *
 * The tree comes flattened (bl_storage_txn.c), indexes 1-based:
 *
 *   p_nodes[n][1..6]   node n (a Txn; 1 the top one; a parent before its
 *                      children): first compare, compares, first success
 *                      op, success ops, first failure op, failure ops
 *   p_cmp[c][1..3]     compare c: target, result, form;
 *                      p_cmp_num/_key/_end/_value[c] its operands
 *   p_op[i][1..4]      op i: kind (0 range, 1 put, 2 delete, 3 txn),
 *                      form, flags (put: 1 prev_kv, 2 ignore_value,
 *                      4 ignore_lease; delete: 1 prev_kv; range:
 *                      8 keys_only, 16 count_only), child node (txn)
 *   p_op_num[i][1..3]  lease (put), limit (range, <= 0: none), revision
 *                      (range, <= 0: current)
 *   p_op_key/_end/_value[i]
 *
 * The ops of a node's branch are consecutive.  Rows, in this order:
 *
 *   r_type 0  a node on the path: r_op the node, r_flag 1 if its
 *             compares held (succeeded)
 *   r_type 2  a key-value of op r_op: a range's kvs, a put's prev_kv, a
 *             delete's prev_kvs, in key order
 *   r_type 1  op r_op ran: r_rev its header revision, r_n a range's
 *             count or the number deleted, r_flag a range's "more"
 *   r_type 3  the end: r_flag the error (nothing else came), r_rev the
 *             transaction's header revision, r_n the changes made
 *
 * As etcd 3.4 (etcdserver/apply.go Txn, mvcc/kvstore_txn.go): compares
 * of the whole tree first, against the state before the transaction;
 * then the checks; then the ops in order, later ones seeing the earlier
 * ones' writes; all changes share revision begin + 1, sub-revisions in op
 * order; a put's header is begin + 1, a range's and a delete's begin + 1
 * once something changed, else begin.  A failed check writes nothing.
 */
#include <bl_core.h>
#include <bl_pg.h>


const char  bl_pg_sql_txn_head[] =
    "CREATE FUNCTION ballast_txn(p_nodes integer[], p_cmp integer[],\n"
    "    p_cmp_num bigint[], p_cmp_key bytea[], p_cmp_end bytea[],\n"
    "    p_cmp_value bytea[], p_op integer[], p_op_num bigint[],\n"
    "    p_op_key bytea[], p_op_end bytea[], p_op_value bytea[])\n"
    "RETURNS TABLE (r_type integer, r_op integer, r_flag integer,\n"
    "    r_rev bigint, r_n bigint, r_key bytea, r_create_rev bigint,\n"
    "    r_mod_rev bigint, r_version bigint, r_lease bigint, r_value bytea)\n"
    "LANGUAGE plpgsql AS $f$\n"
    "DECLARE\n"
    "    v_write    constant boolean := true;\n";


const char  bl_pg_sql_txn_ro_head[] =
    "CREATE FUNCTION ballast_txn_ro(p_nodes integer[], p_cmp integer[],\n"
    "    p_cmp_num bigint[], p_cmp_key bytea[], p_cmp_end bytea[],\n"
    "    p_cmp_value bytea[], p_op integer[], p_op_num bigint[],\n"
    "    p_op_key bytea[], p_op_end bytea[], p_op_value bytea[])\n"
    "RETURNS TABLE (r_type integer, r_op integer, r_flag integer,\n"
    "    r_rev bigint, r_n bigint, r_key bytea, r_create_rev bigint,\n"
    "    r_mod_rev bigint, r_version bigint, r_lease bigint, r_value bytea)\n"
    "LANGUAGE plpgsql STABLE AS $f$\n"
    "DECLARE\n"
    "    v_write    constant boolean := false;\n";


const char  bl_pg_sql_txn_body[] =
    /* the revision lock first (a write), then everything reads the state
     * it protects; a read-only one reads its one snapshot */
    "    v_begin    bigint;\n"
    "    v_compact  bigint;\n"
    "    v_rev      bigint;\n"
    "    v_sub      integer := 0;\n"
    "    v_err      integer := 0;\n"
    "    v_nnodes   integer;\n"
    "    v_on       boolean[];\n"
    "    v_succ     boolean[];\n"
    "    v_seq      integer[] := '{}';\n"
    "    v_next     integer[] := '{}';\n"
    "    v_end      integer[] := '{}';\n"
    "    v_sp       integer;\n"
    "    v_ok       boolean;\n"
    "    v_first    integer;\n"
    "    v_b        integer;\n"
    "    v_flags    integer;\n"
    "    v_lo       bytea;\n"
    "    v_hi       bytea;\n"
    "    v_lim      bigint;\n"
    "    v_cnt      bigint;\n"
    "    v_value    bytea;\n"
    "    v_lease    bigint;\n"
    "    n          integer;\n"
    "    i          integer;\n"
    "    j          integer;\n"
    "    c          integer;\n"
    "    o          ballast_kv%ROWTYPE;\n"
    "BEGIN\n"
    "    IF v_write THEN\n"
    "        SELECT revision, compact_revision INTO v_begin, v_compact\n"
    "            FROM ballast_meta WHERE id = 1 FOR UPDATE;\n"
    "    ELSE\n"
    "        SELECT revision, compact_revision INTO v_begin, v_compact\n"
    "            FROM ballast_meta WHERE id = 1;\n"
    "    END IF;\n"
    "    v_rev := v_begin + 1;\n"

    /*
     * 1. The path: the compares of each node on it, against the state
     * before the transaction.  Nodes are numbered breadth first (a parent
     * before its children), so one pass finds every node on the path.
     * One key, the usual compare, is done here; ranges by ballast_compare.
     */
    "    v_nnodes := array_length(p_nodes, 1);\n"
    "    v_on := array_fill(false, ARRAY[v_nnodes]);\n"
    "    v_succ := array_fill(false, ARRAY[v_nnodes]);\n"
    "    v_on[1] := true;\n"
    "    FOR n IN 1 .. v_nnodes LOOP\n"
    "        CONTINUE WHEN NOT v_on[n];\n"
    "        v_ok := true;\n"
    "        FOR c IN p_nodes[n][1] .. p_nodes[n][1] + p_nodes[n][2] - 1 LOOP\n"
    "            IF p_cmp[c][3] = 0 THEN\n"
    "                SELECT * INTO o FROM ballast_kv\n"
    "                    WHERE key = p_cmp_key[c];\n"
    "                IF NOT FOUND THEN\n"
    "                    o := ROW(p_cmp_key[c], 0, 0, 0, 0, NULL);\n"
    "                END IF;\n"
    "                v_ok := (FOUND OR p_cmp[c][1] <> 3)\n"
    "                        AND ballast_cmp(p_cmp[c][1], p_cmp[c][2], o,\n"
    "                                        p_cmp_num[c], p_cmp_value[c]);\n"
    "            ELSE\n"
    "                v_ok := ballast_compare(p_cmp[c][1], p_cmp[c][2],\n"
    "                    p_cmp[c][3], p_cmp_key[c], p_cmp_end[c],\n"
    "                    p_cmp_num[c], p_cmp_value[c]);\n"
    "            END IF;\n"
    "            EXIT WHEN NOT v_ok;\n"
    "        END LOOP;\n"
    "        v_succ[n] := v_ok;\n"
    "        v_b := CASE WHEN v_ok THEN 3 ELSE 5 END;\n"
    "        v_first := p_nodes[n][v_b];\n"
    "        FOR i IN v_first .. v_first + p_nodes[n][v_b + 1] - 1 LOOP\n"
    "            IF p_op[i][1] = 3 THEN\n"
    "                v_on[p_op[i][4]] := true;\n"
    "            END IF;\n"
    "        END LOOP;\n"
    "    END LOOP;\n"

    /* the ops to run, in order: depth first through the taken branches
     * (a stack of [next op, last op] of each node entered) */
    "    v_sp := 0;\n"
    "    n := 1;\n"
    "    LOOP\n"
    "        IF n > 0 THEN\n"
    "            v_sp := v_sp + 1;\n"
    "            v_b := CASE WHEN v_succ[n] THEN 3 ELSE 5 END;\n"
    "            v_next[v_sp] := p_nodes[n][v_b];\n"
    "            v_end[v_sp] := p_nodes[n][v_b] + p_nodes[n][v_b + 1] - 1;\n"
    "            n := 0;\n"
    "        END IF;\n"
    "        EXIT WHEN v_sp = 0;\n"
    "        i := v_next[v_sp];\n"
    "        IF i > v_end[v_sp] THEN\n"
    "            v_sp := v_sp - 1;\n"
    "            CONTINUE;\n"
    "        END IF;\n"
    "        v_next[v_sp] := i + 1;\n"
    "        IF p_op[i][1] = 3 THEN\n"
    "            n := p_op[i][4];\n"
    "        ELSE\n"
    "            v_seq := v_seq || i;\n"
    "        END IF;\n"
    "    END LOOP;\n"

    /*
     * 2. What etcd checks before anything changes, in its order: each put
     * (ignore_* needs the key as it was before the transaction -- and,
     * where etcd would fail midway, still there when the put runs; the
     * lease must exist), then each range's revision.
     */
    "    FOR j IN 1 .. coalesce(array_length(v_seq, 1), 0) LOOP\n"
    "        i := v_seq[j];\n"
    "        CONTINUE WHEN NOT v_write OR p_op[i][1] <> 1;\n"
    "        IF p_op[i][3] & 6 <> 0 THEN\n"
    "            PERFORM FROM ballast_kv WHERE key = p_op_key[i];\n"
    "            IF NOT FOUND THEN\n"
    "                v_err := 1;\n"
    "                EXIT;\n"
    "            END IF;\n"
    "            v_ok := true;\n"
    "            FOR c IN 1 .. j - 1 LOOP\n"
    "                n := v_seq[c];\n"
    "                IF p_op[n][1] = 1 AND p_op_key[n] = p_op_key[i] THEN\n"
    "                    v_ok := true;\n"
    "                ELSIF p_op[n][1] = 2 AND p_op_key[i] >= p_op_key[n]\n"
    "                    AND (CASE p_op[n][2]\n"
    "                         WHEN 0 THEN p_op_key[i] = p_op_key[n]\n"
    "                         WHEN 1 THEN true\n"
    "                         ELSE p_op_key[i] < p_op_end[n] END)\n"
    "                THEN\n"
    "                    v_ok := false;\n"
    "                END IF;\n"
    "            END LOOP;\n"
    "            IF NOT v_ok THEN\n"
    "                v_err := 1;\n"
    "                EXIT;\n"
    "            END IF;\n"
    "        END IF;\n"
    "        IF p_op_num[i][1] <> 0 THEN\n"
    "            PERFORM FROM ballast_lease WHERE id = p_op_num[i][1];\n"
    "            IF NOT FOUND THEN\n"
    "                v_err := 2;\n"
    "                EXIT;\n"
    "            END IF;\n"
    "        END IF;\n"
    "    END LOOP;\n"
    "    FOREACH i IN ARRAY v_seq LOOP\n"
    "        EXIT WHEN v_err <> 0;\n"
    "        CONTINUE WHEN p_op[i][1] <> 0 OR p_op_num[i][3] = 0;\n"
    "        IF p_op_num[i][3] > v_begin THEN\n"
    "            v_err := 4;\n"
    "        ELSIF p_op_num[i][3] < v_compact THEN\n"
    "            v_err := 3;\n"
    "        END IF;\n"
    "    END LOOP;\n"
    "    IF v_err <> 0 THEN\n"
    "        r_type := 3;\n"
    "        r_op := 0;\n"
    "        r_flag := v_err;\n"
    "        r_rev := v_begin;\n"
    "        r_n := 0;\n"
    "        RETURN NEXT;\n"
    "        RETURN;\n"
    "    END IF;\n"

    /* 3. Run them: first the node rows, then the ops' rows */
    "    FOR n IN 1 .. v_nnodes LOOP\n"
    "        IF v_on[n] THEN\n"
    "            r_type := 0;\n"
    "            r_op := n;\n"
    "            r_flag := v_succ[n]::integer;\n"
    "            RETURN NEXT;\n"
    "        END IF;\n"
    "    END LOOP;\n"

    "    FOREACH i IN ARRAY v_seq LOOP\n"
    "        v_flags := p_op[i][3];\n"
    "        v_lo := p_op_key[i];\n"
    "        v_hi := CASE p_op[i][2] WHEN 0 THEN v_lo || '\\x00'::bytea\n"
    "                                WHEN 1 THEN NULL ELSE p_op_end[i] END;\n"
    "        r_op := i;\n"
    "        r_flag := 0;\n"
    "        r_n := 0;\n"

        /* range: one key (the usual Get) directly, others with count
         * and rows from the helpers; count ignores the limit */
    "        IF p_op[i][1] = 0 AND p_op[i][2] = 0 THEN\n"
    "            v_lim := NULL;\n"
    "            IF p_op_num[i][3] <= 0 THEN\n"
    "                SELECT * INTO o FROM ballast_kv WHERE key = v_lo;\n"
    "            ELSE\n"
    "                SELECT l.key, l.create_rev, l.rev, l.version, l.lease,\n"
    "                       l.value INTO o\n"
    "                    FROM (SELECT * FROM ballast_log\n"
    "                          WHERE key = v_lo AND rev <= p_op_num[i][3]\n"
    "                          ORDER BY rev DESC, sub DESC LIMIT 1) l\n"
    "                    WHERE l.kind = 0;\n"
    "            END IF;\n"
    "            v_cnt := FOUND::integer;\n"
    "            IF FOUND AND v_flags & 16 = 0 THEN\n"
    "                r_type := 2;\n"
    "                r_key := o.key;\n"
    "                r_create_rev := o.create_rev;\n"
    "                r_mod_rev := o.mod_rev;\n"
    "                r_version := o.version;\n"
    "                r_lease := o.lease;\n"
    "                r_value := CASE WHEN v_flags & 8 = 0 THEN o.value END;\n"
    "                RETURN NEXT;\n"
    "            END IF;\n"
    "        ELSIF p_op[i][1] = 0 THEN\n"
    "            v_lim := CASE WHEN p_op_num[i][2] > 0\n"
    "                          THEN p_op_num[i][2] END;\n"
    "            v_cnt := ballast_range_count(v_lo, v_hi, p_op_num[i][3]);\n"
    "            IF v_flags & 16 = 0 AND v_cnt > 0 THEN\n"
    "                RETURN QUERY SELECT 2, i, 0, 0::bigint, 0::bigint, x.*\n"
    "                    FROM ballast_range_rows(v_lo, v_hi, p_op_num[i][3],\n"
    "                                            v_lim, v_flags & 8 <> 0) x;\n"
    "            END IF;\n"
    "        END IF;\n"

        /* a range's header revision as etcd's txn: the new one once
         * something changed */
    "        IF p_op[i][1] = 0 THEN\n"
    "            r_type := 1;\n"
    "            r_op := i;\n"
    "            r_flag := (v_flags & 16 = 0 AND v_lim IS NOT NULL\n"
    "                       AND v_cnt > v_lim)::integer;\n"
    "            r_rev := CASE WHEN v_sub > 0 THEN v_rev ELSE v_begin END;\n"
    "            r_n := v_cnt;\n"
    "            RETURN NEXT;\n"

        /* put */
    "        ELSIF p_op[i][1] = 1 THEN\n"
    "            SELECT * INTO o FROM ballast_kv WHERE key = v_lo;\n"
    "            v_value := CASE WHEN v_flags & 2 <> 0 THEN o.value\n"
    "                            ELSE p_op_value[i] END;\n"
    "            v_lease := CASE WHEN v_flags & 4 <> 0 THEN o.lease\n"
    "                            ELSE p_op_num[i][1] END;\n"
    "            PERFORM ballast_write_put(v_rev, v_sub, v_lo, v_value,\n"
    "                                      v_lease, o);\n"
    "            v_sub := v_sub + 1;\n"
    "            IF v_flags & 1 <> 0 AND o.key IS NOT NULL THEN\n"
    "                r_type := 2;\n"
    "                r_key := o.key;\n"
    "                r_create_rev := o.create_rev;\n"
    "                r_mod_rev := o.mod_rev;\n"
    "                r_version := o.version;\n"
    "                r_lease := o.lease;\n"
    "                r_value := o.value;\n"
    "                RETURN NEXT;\n"
    "            END IF;\n"
    "            r_type := 1;\n"
    "            r_rev := v_rev;\n"
    "            RETURN NEXT;\n"

        /* delete */
    "        ELSE\n"
    "            v_cnt := 0;\n"
    "            FOR o IN SELECT * FROM\n"
    "                ballast_write_delete(v_rev, v_sub, v_lo, v_hi)\n"
    "            LOOP\n"
    "                v_cnt := v_cnt + 1;\n"
    "                IF v_flags & 1 <> 0 THEN\n"
    "                    r_type := 2;\n"
    "                    r_key := o.key;\n"
    "                    r_create_rev := o.create_rev;\n"
    "                    r_mod_rev := o.mod_rev;\n"
    "                    r_version := o.version;\n"
    "                    r_lease := o.lease;\n"
    "                    r_value := o.value;\n"
    "                    RETURN NEXT;\n"
    "                END IF;\n"
    "            END LOOP;\n"
    "            v_sub := v_sub + v_cnt::integer;\n"
    "            r_type := 1;\n"
    "            r_rev := CASE WHEN v_sub > 0 THEN v_rev ELSE v_begin END;\n"
    "            r_n := v_cnt;\n"
    "            RETURN NEXT;\n"
    "        END IF;\n"
    "    END LOOP;\n"

    /* one revision for all the changes, if any */
    "    IF v_sub > 0 THEN\n"
    "        UPDATE ballast_meta SET revision = v_rev WHERE id = 1;\n"
    "    END IF;\n"
    "    r_type := 3;\n"
    "    r_op := 0;\n"
    "    r_flag := 0;\n"
    "    r_rev := CASE WHEN v_sub > 0 THEN v_rev ELSE v_begin END;\n"
    "    r_n := v_sub;\n"
    "    RETURN NEXT;\n"
    "END\n";
