/*
 * The transport's method table: lookup by exact path in any order of
 * registration, the last registration of a path wins, and grpc-go's
 * words for paths no method has.
 */
#include <bl_core.h>
#include <bl_event.h>
#include <bl_grpc.h>
#include <bl_h2.h>

#include "tap.h"


static void
on_message(bl_grpc_call_t *call, const u_char *msg, size_t len)
{
    BL_UNUSED(call);
    BL_UNUSED(msg);
    BL_UNUSED(len);
}


static const bl_grpc_method_t  kv[] = {
    { "/etcdserverpb.KV/Range", BL_GRPC_UNARY, on_message, NULL, NULL },
    { "/etcdserverpb.KV/Put", BL_GRPC_UNARY, on_message, NULL, NULL },
    { "/etcdserverpb.KV/DeleteRange", BL_GRPC_UNARY, on_message, NULL,
      NULL },
    { "/etcdserverpb.KV/Txn", BL_GRPC_UNARY, on_message, NULL, NULL },
    { "/etcdserverpb.KV/Compact", BL_GRPC_UNARY, on_message, NULL, NULL },
};

static const bl_grpc_method_t  watch[] = {
    { "/etcdserverpb.Watch/Watch", BL_GRPC_BIDI, on_message, NULL, NULL },
    { "/etcdserverpb.KV/Put", BL_GRPC_UNARY, on_message, NULL, NULL },
    { "/a", BL_GRPC_UNARY, on_message, NULL, NULL },
    { "/etcdserverpb.KV", BL_GRPC_UNARY, on_message, NULL, NULL },
};

static const bl_grpc_method_t  bad[] = {
    { "no/slash", BL_GRPC_UNARY, on_message, NULL, NULL },
};


static const bl_grpc_method_t *
find(const char *path)
{
    bl_str_t  s;

    s.data = (u_char *) path;
    s.len = strlen(path);

    return bl_grpc_find_method(&s);
}


static void
unknown(const char *path, const char *want)
{
    char      text[256];
    bl_str_t  s;

    s.data = (u_char *) path;
    s.len = strlen(path);

    bl_grpc_unknown_method_text(&s, text, sizeof(text));
    is_str(text, want, "unknown %s", path);
}


int
main(void)
{
    size_t  i;
    int     good;

    ok(bl_grpc_register(kv, bl_nelems(kv)) == BL_OK, "register KV");

    good = 1;
    for (i = 0; i < bl_nelems(kv); i++) {
        good = good && find(kv[i].path) == &kv[i];
    }
    ok(good, "each KV method is found");

    ok(bl_grpc_register(watch, bl_nelems(watch)) == BL_OK,
       "register more, Put again");
    ok(find("/etcdserverpb.KV/Put") == &watch[1],
       "the last registration wins");
    ok(find("/etcdserverpb.KV/Range") == &kv[0], "the others stay");
    ok(find("/etcdserverpb.Watch/Watch") == &watch[0], "Watch found");
    ok(find("/a") == &watch[2], "a short path");
    ok(find("/etcdserverpb.KV") == &watch[3], "a prefix of other paths");

    ok(find("/etcdserverpb.KV/Rang") == NULL, "a prefix is not a match");
    ok(find("/etcdserverpb.KV/RangeX") == NULL, "a longer path is not");
    ok(find("") == NULL, "the empty path");
    ok(find("/etcdserverpb.kv/Range") == NULL, "case matters");

    ok(bl_grpc_register(bad, 1) == BL_ERROR, "a path without '/' first");

    unknown("/etcdserverpb.KV/RangeStream",
            "unknown method RangeStream for service etcdserverpb.KV");
    unknown("/etcdserverpb.Lease/LeaseGrant",
            "unknown service etcdserverpb.Lease");
    unknown("/etcdserverpb.Watch/", "unknown method  for service "
            "etcdserverpb.Watch");
    unknown("/nosuch", "malformed method name: \"/nosuch\"");
    unknown("", "malformed method name: \"\"");
    unknown("x.Y/Z", "unknown service x.Y");
    unknown("/a/b/c", "unknown service a/b");

    return tap_done();
}
