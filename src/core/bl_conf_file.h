/*
 * The configuration language (nginx's): `directive arg ...;`, blocks
 * `name args { ... }`, `include GLOB;`, `#` comments, single or double
 * quoted strings with \" \' \\ \n \t \r escapes, sizes (`64m`) and times
 * (`10s`, `1h30m`).  Each module declares its directives in a table of
 * bl_command_t; the parser finds the row by name and context, checks the
 * argument count, and calls the row's setter with the module's conf.
 * Every error names file:line.
 */
#ifndef BL_CONF_FILE_H
#define BL_CONF_FILE_H

/* argument counts (any combination) */
#define BL_CONF_NOARGS     0x00000001
#define BL_CONF_TAKE1      0x00000002
#define BL_CONF_TAKE2      0x00000004
#define BL_CONF_TAKE3      0x00000008
#define BL_CONF_TAKE4      0x00000010
#define BL_CONF_TAKE12     (BL_CONF_TAKE1 | BL_CONF_TAKE2)
#define BL_CONF_TAKE123    (BL_CONF_TAKE1 | BL_CONF_TAKE2 | BL_CONF_TAKE3)
#define BL_CONF_TAKE1234   (BL_CONF_TAKE123 | BL_CONF_TAKE4)
#define BL_CONF_ARGS_MASK  0x000000ff
#define BL_CONF_1MORE      0x00000100
#define BL_CONF_2MORE      0x00000200
#define BL_CONF_BLOCK      0x00000400   /* directive opens a { } block */
#define BL_CONF_FLAG       0x00000800   /* exactly one arg: on | off */

/* contexts: where a directive may appear */
#define BL_MAIN_CONF       0x01000000
#define BL_STORAGE_CONF    0x02000000   /* inside storage ... { } */
#define BL_WATCH_CONF      0x04000000   /* inside watch { } */
#define BL_LIMITS_CONF     0x08000000   /* inside limits { } */
#define BL_COMPACT_CONF    0x10000000   /* inside compaction { } */
#define BL_CONF_CTX_MASK   0xff000000

#define BL_CONF_UNSET       -1
#define BL_CONF_UNSET_UINT  ((bl_uint_t) -1)
#define BL_CONF_UNSET_SIZE  ((size_t) -1)
#define BL_CONF_UNSET_MSEC  ((int64_t) -1)

#define BL_CONF_OK     NULL
#define BL_CONF_ERROR  ((char *) -1)

#define bl_conf_init_value(v, def)  if ((v) == BL_CONF_UNSET) { (v) = (def); }
#define bl_conf_init_uint_value(v, def)                                       \
    if ((v) == BL_CONF_UNSET_UINT) { (v) = (def); }
#define bl_conf_init_size_value(v, def)                                       \
    if ((v) == BL_CONF_UNSET_SIZE) { (v) = (def); }
#define bl_conf_init_msec_value(v, def)                                       \
    if ((v) == BL_CONF_UNSET_MSEC) { (v) = (def); }

typedef struct bl_command_s bl_command_t;

/*
 * A setter returns BL_CONF_OK, BL_CONF_ERROR (it already called
 * bl_conf_error), or a short message string ("is duplicate", "invalid
 * value") that the parser reports as `"name" directive MSG in file:line`.
 */
typedef char *(*bl_conf_set_pt)(bl_conf_t *cf, const bl_command_t *cmd,
    void *conf);

struct bl_command_s {
    const char      *name;
    bl_uint_t        type;       /* contexts | arg counts | flags */
    bl_conf_set_pt   set;
    size_t           offset;     /* field offset in the module's conf */
    const void      *post;       /* setter-specific: enum table, bounds */
};

#define bl_null_command  { NULL, 0, NULL, 0, NULL }

typedef struct {
    const char  *name;
    bl_uint_t    value;
} bl_conf_enum_t;

typedef struct {
    int64_t  low;
    int64_t  high;
} bl_conf_num_bounds_t;

typedef struct bl_conf_file_s bl_conf_file_t;

struct bl_conf_s {
    bl_array_t       *args;      /* bl_str_t; args[0] is the directive */
    bl_cycle_t       *cycle;
    bl_pool_t        *pool;      /* the cycle's pool */
    bl_uint_t         ctx;       /* BL_MAIN_CONF, BL_STORAGE_CONF, ... */
    void             *ctx_data;  /* a block's setter may pass state down */
    bl_conf_file_t   *conf_file; /* the file being read */
    bl_uint_t         depth;     /* include nesting, bounded */
};

/* parse a whole file (filename NULL: continue the current block) */
char *bl_conf_parse(bl_conf_t *cf, const bl_str_t *filename);
/* from a BLOCK directive's setter: parse its { } body in context ctx */
char *bl_conf_parse_block(bl_conf_t *cf, bl_uint_t ctx, void *ctx_data);
/* parse a string of directives (the -g command line option) */
char *bl_conf_parse_string(bl_conf_t *cf, const char *text,
    const char *name);

/* log "[emerg] MSG in FILE:LINE" and mark the parse failed */
void bl_conf_error(bl_conf_t *cf, bl_err_t err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* a warning at file:line (the parse goes on) */
void bl_conf_warn(bl_conf_t *cf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* "FILE:LINE" of the directive being handled, for messages kept later */
const char *bl_conf_where(bl_conf_t *cf);

/* value parsers, shared with the setters; BL_ERROR on a bad value */
bl_int_t bl_conf_parse_size(const bl_str_t *s, size_t *out);  /* 10k 64m 1g */
bl_int_t bl_conf_parse_msec(const bl_str_t *s, int64_t *out); /* 500ms 1h30m */
bl_int_t bl_conf_parse_flag(const bl_str_t *s, int *out);

/* generic setters: the field at cmd->offset of conf */
char *bl_conf_set_flag(bl_conf_t *cf, const bl_command_t *cmd, void *conf);
char *bl_conf_set_str(bl_conf_t *cf, const bl_command_t *cmd, void *conf);
char *bl_conf_set_num(bl_conf_t *cf, const bl_command_t *cmd, void *conf);
char *bl_conf_set_size(bl_conf_t *cf, const bl_command_t *cmd, void *conf);
char *bl_conf_set_msec(bl_conf_t *cf, const bl_command_t *cmd, void *conf);
char *bl_conf_set_enum(bl_conf_t *cf, const bl_command_t *cmd, void *conf);
/* a path relative to the prefix becomes absolute */
char *bl_conf_set_path(bl_conf_t *cf, const bl_command_t *cmd, void *conf);

/*
 * Field types those setters write: flag -> int (BL_CONF_UNSET initially),
 * str/path -> bl_str_t (data NULL when unset; NUL-terminated), num ->
 * int64_t (BL_CONF_UNSET), size -> size_t (BL_CONF_UNSET_SIZE), msec ->
 * int64_t milliseconds (BL_CONF_UNSET_MSEC), enum -> bl_uint_t
 * (BL_CONF_UNSET_UINT).  num's post may be a bl_conf_num_bounds_t.
 */

/*
 * A built-in default path (BL_PID_PATH, ...): configure made it absolute
 * under BL_PREFIX; with another prefix (-p) it moves along, as in nginx.
 */
bl_int_t bl_conf_default_path(bl_cycle_t *cycle, const char *path,
    bl_str_t *out);

/* make a path absolute against the cycle's prefix (in the cycle pool) */
bl_int_t bl_conf_full_name(bl_cycle_t *cycle, bl_str_t *name);

#endif /* BL_CONF_FILE_H */
