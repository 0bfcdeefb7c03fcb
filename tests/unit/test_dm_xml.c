/* The data-model loader (usp/dm_schema.h): the official TR-181 Device:2.19.1
 * files in both forms (same schema, counts of the file), a small modular set
 * of our own (imports, components, base= modifications), broken inputs and
 * their messages, lookups, iteration and value checks. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/dm_schema.h"
#include "usp/errors.h"

#define DM_DATA(rel) USP_SRC("tests/unit/data/dm/" rel)
#define TR181_FULL   USP_REF("tr-181/tr-181-2-19-1-usp-full.xml")
#define TR181_ROOT   USP_REF("tr-181/tr-181-2-19-1-usp.xml")
#define FIXTURE      DM_DATA("modular/tst-9-1-0-root.xml")

/* ---- helpers ---- */

static struct usp_dm_schema *load_file(const char *path, unsigned flags)
{
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error err;
    if (usp_dm_load_file(path, flags, &s, &err) != 0)
        fprintf(stderr, "\nload %s: %s\n", path, err.msg);
    return s;
}

/* The official files are loaded once and shared by the tests, as the
 * simulator shares one schema between its agents. */
static struct usp_dm_schema *full_schema, *modular_schema;

static void free_shared(void)
{
    usp_dm_schema_free(full_schema);
    usp_dm_schema_free(modular_schema);
}

static const struct usp_dm_schema *tr181_full(void)
{
    if (!full_schema) {
        full_schema = load_file(TR181_FULL, 0);
        atexit(free_shared);
    }
    return full_schema;
}

static const struct usp_dm_schema *tr181_modular(void)
{
    if (!modular_schema) {
        modular_schema = load_file(TR181_ROOT, 0);
        if (!full_schema)
            atexit(free_shared);
    }
    return modular_schema;
}

static const struct usp_dm_object *obj(const struct usp_dm_schema *s, const char *path)
{
    struct usp_dm_item it;
    if (usp_dm_lookup(s, path, &it) != 0 || it.kind != USP_DM_KIND_OBJECT)
        return NULL;
    return it.object;
}

static const struct usp_dm_param *param(const struct usp_dm_schema *s, const char *path)
{
    struct usp_dm_item it;
    if (usp_dm_lookup(s, path, &it) != 0 || it.kind != USP_DM_KIND_PARAM)
        return NULL;
    return it.param;
}

static int check(const struct usp_dm_param *p, const char *value)
{
    char why[160];
    int rc = usp_dm_type_check(p, value, why, sizeof why);
    if (rc)
        CU_ASSERT(why[0] != 0); /* every refusal says why */
    return rc;
}

/* Loads an in-memory document; returns NULL and fills err on failure. */
static struct usp_dm_schema *load_mem(const char *xml, struct usp_dm_error *err)
{
    struct usp_dm_schema *s = NULL;
    usp_dm_load_memory(xml, strlen(xml), "mem.xml", NULL, 0, &s, err);
    return s;
}

#define DOC_HEAD                                                                                   \
    "<?xml version=\"1.0\"?>\n"                                                                    \
    "<dm:document xmlns:dm=\"urn:broadband-forum-org:cwmp:datamodel-1-15\" spec=\"urn:x:t\">\n"
#define DOC_TAIL "</dm:document>\n"
#define ROOT_OPEN                                                                                  \
    "<model name=\"T:1.0\">\n"                                                                     \
    "<object name=\"Device.\" access=\"readOnly\" minEntries=\"1\" maxEntries=\"1\">\n"
#define ROOT_CLOSE "</object>\n</model>\n"
#define PARAM(name, syntax)                                                                        \
    "<parameter name=\"" name "\" access=\"readWrite\"><syntax>" syntax "</syntax></parameter>\n"

/* ---- the modular fixture ---- */

static void test_dm_fixture_loads(void)
{
    struct usp_dm_schema *s = load_file(FIXTURE, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(usp_dm_schema_model(s), "Box:1.1");
    const struct usp_dm_counts *c = usp_dm_schema_counts(s);
    CU_ASSERT_EQUAL(c->objects, 3);
    CU_ASSERT_EQUAL(c->multi_objects, 2);
    CU_ASSERT_EQUAL(c->writable_objects, 2);
    /* Device: 3 (WidgetNumberOfEntries, Uptime, GadgetNumberOfEntries);
     * Widget: Alias Enable Level Color Address Secret Note Mask (Gone is
     * deleted); Gadget: Alias Peer */
    CU_ASSERT_EQUAL(c->params, 13);
    CU_ASSERT_EQUAL(c->commands, 1);
    CU_ASSERT_EQUAL(c->async_commands, 1);
    CU_ASSERT_EQUAL(c->events, 1);
    CU_ASSERT_EQUAL(c->arg_params, 4); /* Delay Reason Code When */
    CU_ASSERT_EQUAL(c->arg_objects, 1);
    CU_ASSERT_EQUAL(c->unique_keys, 3);
    CU_ASSERT_EQUAL(c->deprecated_params, 1);
    CU_ASSERT_EQUAL(c->deleted_objects, 2); /* Device.Old. and, with it, its child */
    CU_ASSERT_EQUAL(c->deleted_params, 1);
    CU_ASSERT_EQUAL(c->params_in_deleted, 2);
    CU_ASSERT_PTR_NULL(obj(s, "Device.Old."));
    CU_ASSERT_PTR_NULL(obj(s, "Device.Old.Child."));
    CU_ASSERT_PTR_NULL(param(s, "Device.Widget.{i}.Gone"));
    usp_dm_schema_free(s);
}

static void test_dm_fixture_definitions(void)
{
    struct usp_dm_schema *s = load_file(FIXTURE, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    const struct usp_dm_object *w = obj(s, "Device.Widget.{i}.");
    CU_ASSERT_PTR_NOT_NULL_FATAL(w);
    /* base= made the table writable; the rest came from Box:1.0 */
    CU_ASSERT_EQUAL(w->access, USP_DM_READ_WRITE);
    CU_ASSERT(w->flags & USP_DM_OBJ_MULTI);
    CU_ASSERT_EQUAL(w->min_entries, 0);
    CU_ASSERT_EQUAL(w->max_entries, USP_DM_UNBOUNDED);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w->num_entries_param);
    CU_ASSERT_STRING_EQUAL(w->num_entries_param->name, "WidgetNumberOfEntries");
    CU_ASSERT_PTR_EQUAL(w->num_entries_param->parent, w->parent);
    CU_ASSERT_PTR_NOT_NULL_FATAL(w->enable_param);
    CU_ASSERT_STRING_EQUAL(w->enable_param->name, "Enable");
    CU_ASSERT_EQUAL_FATAL(w->nkeys, 2);
    CU_ASSERT_FALSE(w->keys[0].functional);
    CU_ASSERT_EQUAL_FATAL(w->keys[0].nparams, 1);
    CU_ASSERT_STRING_EQUAL(w->params[w->keys[0].params[0]].name, "Alias");
    CU_ASSERT_TRUE(w->keys[1].functional);
    CU_ASSERT_EQUAL_FATAL(w->keys[1].nparams, 2);
    CU_ASSERT_STRING_EQUAL(w->params[w->keys[1].params[0]].name, "Address");
    CU_ASSERT_STRING_EQUAL(w->params[w->keys[1].params[1]].name, "Level");

    /* The virtual Alias component is replaced by the root's binding. */
    const struct usp_dm_param *p = param(s, "Device.Widget.{i}.Alias");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->access, USP_DM_READ_WRITE);
    CU_ASSERT_STRING_EQUAL(p->type->name, "_Name64");

    /* base= changed the base type and range, kept the units */
    p = param(s, "Device.Widget.{i}.Level");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->access, USP_DM_READ_WRITE);
    CU_ASSERT_EQUAL(p->notify, USP_DM_NOTIFY_CAN_DENY);
    CU_ASSERT_EQUAL(p->type->base, USP_DM_UNSIGNED_INT);
    CU_ASSERT_EQUAL_FATAL(p->type->nranges, 1);
    CU_ASSERT_EQUAL(p->type->ranges[0].min.u, 0);
    CU_ASSERT_EQUAL(p->type->ranges[0].max.u, 50);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->type->units);
    CU_ASSERT_STRING_EQUAL(p->type->units, "percent");

    /* enumerations merged by value: Red deleted, Blue added */
    p = param(s, "Device.Widget.{i}.Color");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL_FATAL(p->type->nenums, 2);
    CU_ASSERT_STRING_EQUAL(p->type->enums[0].value, "Green");
    CU_ASSERT_STRING_EQUAL(p->type->enums[1].value, "Blue");

    /* dataType imported under another name */
    p = param(s, "Device.Widget.{i}.Note");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_STRING_EQUAL(p->type->name, "_Name64");
    CU_ASSERT_EQUAL_FATAL(p->type->nsizes, 1);
    CU_ASSERT_EQUAL(p->type->sizes[0].max, 64);

    /* derived dataType: size overridden, patterns (with an entity) kept */
    p = param(s, "Device.Widget.{i}.Mask");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->status, USP_DM_DEPRECATED);
    CU_ASSERT_STRING_EQUAL(p->type->name, "ShortAddress");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->type->parent);
    CU_ASSERT_STRING_EQUAL(p->type->parent->name, "Address");
    CU_ASSERT_EQUAL(p->type->sizes[0].max, 11);
    CU_ASSERT_EQUAL_FATAL(p->type->npatterns, 2);
    CU_ASSERT_STRING_EQUAL(p->type->patterns[1].value,
                           "((25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])\\.){3}"
                           "(25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])");
    CU_ASSERT_EQUAL(check(p, "10.0.0.1"), 0);
    CU_ASSERT_EQUAL(check(p, "192.168.100.100"), USP_ERR_INVALID_VALUE); /* 15 > 11 */

    p = param(s, "Device.Widget.{i}.Secret");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT(p->flags & USP_DM_PARAM_SECURED);
    p = param(s, "Device.Widget.{i}.Enable");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->default_type, USP_DM_DEFAULT_OBJECT);
    CU_ASSERT_STRING_EQUAL(p->default_value, "false");

    /* command arguments, one made mandatory by base= */
    struct usp_dm_item it;
    CU_ASSERT_EQUAL_FATAL(usp_dm_lookup(s, "Device.Widget.{i}.Reset()", &it), 0);
    CU_ASSERT_EQUAL_FATAL(it.kind, USP_DM_KIND_COMMAND);
    const struct usp_dm_command *cmd = it.command;
    CU_ASSERT_TRUE(cmd->async);
    CU_ASSERT_PTR_EQUAL(cmd->parent, w);
    const struct usp_dm_param *delay = usp_dm_object_param(cmd->input, "Delay", 5);
    const struct usp_dm_param *reason = usp_dm_object_param(cmd->input, "Reason", 6);
    CU_ASSERT_PTR_NOT_NULL_FATAL(delay);
    CU_ASSERT_PTR_NOT_NULL_FATAL(reason);
    CU_ASSERT(delay->flags & USP_DM_PARAM_MANDATORY);
    CU_ASSERT_FALSE(reason->flags & USP_DM_PARAM_MANDATORY);
    CU_ASSERT_STRING_EQUAL(delay->type->units, "seconds");
    CU_ASSERT(cmd->input->flags & USP_DM_OBJ_ARGS);
    const struct usp_dm_object *res = usp_dm_object_child(cmd->output, "Result", 6);
    CU_ASSERT_PTR_NOT_NULL_FATAL(res);
    CU_ASSERT_STRING_EQUAL(res->path, "Result.{i}.");
    CU_ASSERT(res->flags & USP_DM_OBJ_ARG_OBJECT);
    CU_ASSERT(res->flags & USP_DM_OBJ_MULTI);
    CU_ASSERT_PTR_NOT_NULL(usp_dm_object_param(res, "Code", 4));
    CU_ASSERT_EQUAL_FATAL(usp_dm_lookup(s, "Device.Widget.{i}.Done!", &it), 0);
    CU_ASSERT_EQUAL_FATAL(it.kind, USP_DM_KIND_EVENT);
    const struct usp_dm_param *when = usp_dm_object_param(it.event->args, "When", 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(when);
    CU_ASSERT_EQUAL(when->type->base, USP_DM_DATETIME);

    /* a component expanded under path="Device." */
    const struct usp_dm_object *g = obj(s, "Device.Gadget.{i}.");
    CU_ASSERT_PTR_NOT_NULL_FATAL(g);
    CU_ASSERT_EQUAL(g->max_entries, 8);
    CU_ASSERT_PTR_NOT_NULL_FATAL(g->num_entries_param);
    CU_ASSERT_STRING_EQUAL(g->num_entries_param->name, "GadgetNumberOfEntries");
    p = param(s, "Device.Gadget.{i}.Peer");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->type->item);
    CU_ASSERT_EQUAL(p->type->max_items, 4);
    CU_ASSERT_EQUAL(p->type->sizes[0].max, 256);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p->type->item->pathref);
    CU_ASSERT_EQUAL(p->type->item->pathref->ref_type, USP_DM_REF_WEAK);
    CU_ASSERT_EQUAL(p->type->item->pathref->target_type, USP_DM_TARGET_ROW);
    CU_ASSERT_STRING_EQUAL(p->type->item->pathref->target_parent, ".Widget. .Gadget.");
    p = param(s, "Device.Uptime");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->notify, USP_DM_NOTIFY_CAN_DENY);
    usp_dm_schema_free(s);
}

/* The loader takes the highest corrigendum present; the older one in the
 * folder would not even load. */
static void test_dm_fixture_corrigendum(void)
{
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error err;
    CU_ASSERT_EQUAL(usp_dm_load_file(DM_DATA("modular/tst-9-1-0-base.xml"), 0, &s, &err),
                    USP_EINVAL);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "unknown dataType \"ThisTypeDoesNotExist\""));
    s = load_file(DM_DATA("modular/tst-9-1-1-base.xml"), 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(usp_dm_schema_model(s), "Box:1.0");
    usp_dm_schema_free(s);
    s = load_file(FIXTURE, 0);
    CU_ASSERT_PTR_NOT_NULL(s);
    usp_dm_schema_free(s);
}

/* From memory, imports come from the folder given (and only from there). */
static void test_dm_memory_imports(void)
{
    FILE *f = fopen(FIXTURE, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    static char buf[16384];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CU_ASSERT_FATAL(n > 0 && n < sizeof buf);
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error err;
    CU_ASSERT_EQUAL(usp_dm_load_memory(buf, n, "root.xml", DM_DATA("modular"), 0, &s, &err), 0);
    CU_ASSERT_PTR_NOT_NULL(s);
    if (s)
        CU_ASSERT_EQUAL(usp_dm_schema_counts(s)->objects, 3);
    usp_dm_schema_free(s);
    s = NULL;
    CU_ASSERT_EQUAL(usp_dm_load_memory(buf, n, "root.xml", DM_DATA("."), 0, &s, &err), USP_EINVAL);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "root.xml:10: <import file=\"tst-types.xml\">: cannot "
                                           "find the imported file"));
}

static void test_dm_descriptions_flag(void)
{
    struct usp_dm_schema *s = load_file(FIXTURE, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_PTR_NULL(obj(s, "Device.Widget.{i}.")->description);
    usp_dm_schema_free(s);
    s = load_file(FIXTURE, USP_DM_LOAD_DESCRIPTIONS);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    const char *d = obj(s, "Device.Widget.{i}.")->description;
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_STRING_EQUAL(d, "A widget.");
    usp_dm_schema_free(s);
}

/* ---- broken inputs ---- */

static void expect_file_error(const char *path, int line, const char *text)
{
    struct usp_dm_schema *s = NULL;
    struct usp_dm_error err;
    int rc = usp_dm_load_file(path, 0, &s, &err);
    CU_ASSERT(rc < 0);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(err.line, line);
    if (!strstr(err.msg, text)) {
        fprintf(stderr, "\n%s: got \"%s\", want \"%s\"\n", path, err.msg, text);
        CU_FAIL("error message");
    }
}

static void test_dm_broken_files(void)
{
    expect_file_error(DM_DATA("bad-unknown-datatype.xml"), 8,
                      "bad-unknown-datatype.xml:8: <parameter name=\"X\">: unknown dataType "
                      "\"Foo\"");
    expect_file_error(DM_DATA("bad-unknown-type.xml"), 8,
                      "bad-unknown-type.xml:8: <parameter name=\"Count\">: unknown type "
                      "<integer>");
    expect_file_error(DM_DATA("bad-range-minmax.xml"), 9,
                      "bad-range-minmax.xml:9: <parameter name=\"Port\">: range "
                      "minInclusive=\"100\" is above maxInclusive=\"10\"");
    expect_file_error(DM_DATA("bad-range-nonnumeric.xml"), 9,
                      "bad-range-nonnumeric.xml:9: <parameter name=\"Level\">: "
                      "minInclusive=\"low\" is not a valid int");
    expect_file_error(DM_DATA("bad-missing-import.xml"), 4,
                      "bad-missing-import.xml:4: <import file=\"tst-nothere.xml\">: cannot find "
                      "the imported file");
    expect_file_error(DM_DATA("bad-truncated.xml"), 17, "bad-truncated.xml:17: XML error:");
    expect_file_error(DM_DATA("no-such-file.xml"), 0, "no-such-file.xml: No such file");
}

static const struct {
    const char *xml;
    const char *text;
} bad_docs[] = {
    {"", "empty document"},
    {"<?xml version=\"1.0\"?><foo/>", "not a Broadband Forum data-model document"},
    {DOC_HEAD DOC_TAIL, "no <model>"},
    {DOC_HEAD "<model name=\"T:1.0\"><component ref=\"Nope\"/></model>" DOC_TAIL,
     "<component ref=\"Nope\">: unknown component \"Nope\""},
    {DOC_HEAD "<model name=\"T:1.0\"><object base=\"Device.\"/></model>" DOC_TAIL,
     "object \"Device.\" is not defined (base= modifies"},
    {DOC_HEAD ROOT_OPEN ROOT_CLOSE "<model name=\"T:1.1\" base=\"T:0\"/>" DOC_TAIL,
     "unknown base model \"T:0\""},
    {DOC_HEAD ROOT_OPEN "</object><object name=\"Device.A.B.\">" ROOT_CLOSE DOC_TAIL,
     "<object name=\"Device.A.B.\">: parent object \"Device.A.\" is not defined"},
    {DOC_HEAD ROOT_OPEN "</object><object name=\"Other.\">" ROOT_CLOSE DOC_TAIL,
     "a second root object"},
    {DOC_HEAD "<model name=\"T:1.0\"/>" DOC_TAIL, "defines no (supported) object"},
    {DOC_HEAD ROOT_OPEN PARAM(
         "P", "<string/>") "<parameter base=\"P\" status=\"gone\"/>" ROOT_CLOSE DOC_TAIL,
     "<parameter base=\"P\">: bad status \"gone\""},
    {DOC_HEAD ROOT_OPEN
     "<parameter name=\"P\" access=\"all\"><syntax><string/></syntax></parameter>" ROOT_CLOSE
         DOC_TAIL,
     "<parameter name=\"P\">: bad access \"all\""},
    {DOC_HEAD ROOT_OPEN
     "</object><object name=\"Device.T.{i}.\" maxEntries=\"unbounded\" minEntries=\"0\">"
     "<uniqueKey><parameter ref=\"Nope\"/></uniqueKey>" ROOT_CLOSE DOC_TAIL,
     "uniqueKey parameter \"Nope\""},
    {DOC_HEAD ROOT_OPEN
     "</object><object name=\"Device.T.{i}.\" numEntriesParameter=\"TNumberOfEntries\" "
     "maxEntries=\"unbounded\" minEntries=\"0\">" ROOT_CLOSE DOC_TAIL,
     "numEntriesParameter \"TNumberOfEntries\" is not a (supported) parameter of the parent"},
    {DOC_HEAD ROOT_OPEN
     "</object><object name=\"Device.T.\" enableParameter=\"Enable\">" ROOT_CLOSE DOC_TAIL,
     "enableParameter \"Enable\""},
    {DOC_HEAD ROOT_OPEN
     "</object><object name=\"Device.T.{i}.\" maxEntries=\"-1\">" ROOT_CLOSE DOC_TAIL,
     "bad maxEntries \"-1\""},
    {DOC_HEAD ROOT_OPEN "</object><object name=\"Device..T.\">" ROOT_CLOSE DOC_TAIL,
     "bad object name \"Device..T.\""},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string><pattern value=\"(ab\"/></string>") ROOT_CLOSE DOC_TAIL,
     "<parameter name=\"P\">: bad pattern \"(ab\""},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string><pattern value=\"\\p{L}\"/></string>")
         ROOT_CLOSE DOC_TAIL,
     "unsupported escape"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string><pattern value=\"((a{999}){999}){999}\"/></string>")
         ROOT_CLOSE DOC_TAIL,
     "pattern too complex"},
    {DOC_HEAD "<import file=\"x.xml\"/>" ROOT_OPEN ROOT_CLOSE DOC_TAIL, "no folder to import from"},
    {DOC_HEAD "<import file=\"../x.xml\"/>" ROOT_OPEN ROOT_CLOSE DOC_TAIL, "plain file name"},
    {DOC_HEAD "<dataType name=\"A\" base=\"B\"/><dataType name=\"B\" base=\"A\"/>" ROOT_OPEN PARAM(
         "P", "<dataType ref=\"A\"/>") ROOT_CLOSE DOC_TAIL,
     "is derived from itself"},
    {DOC_HEAD "<component name=\"C\"><component ref=\"C\"/></component>"
              "<model name=\"T:1.0\"><component ref=\"C\"/></model>" DOC_TAIL,
     "nested deeper than"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string><range minInclusive=\"1\"/></string>")
         ROOT_CLOSE DOC_TAIL,
     "range on a non-numeric type (string)"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<unsignedInt><range minInclusive=\"-1\"/></unsignedInt>")
         ROOT_CLOSE DOC_TAIL,
     "minInclusive=\"-1\" is not a valid unsignedInt"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<int><range maxInclusive=\"2147483648\"/></int>")
         ROOT_CLOSE DOC_TAIL,
     "maxInclusive=\"2147483648\" is not a valid int"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<int><range step=\"0\"/></int>") ROOT_CLOSE DOC_TAIL,
     "bad step \"0\""},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string><size minLength=\"9\" maxLength=\"2\"/></string>")
         ROOT_CLOSE DOC_TAIL,
     "minLength 9 is above maxLength 2"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<list minItems=\"5\" maxItems=\"2\"/><string/>")
         ROOT_CLOSE DOC_TAIL,
     "minItems 5 is above maxItems 2"},
    {DOC_HEAD ROOT_OPEN "<command name=\"Go\" async=\"true\"/>" ROOT_CLOSE DOC_TAIL,
     "bad command name \"Go\" (must end with \"()\")"},
    {DOC_HEAD ROOT_OPEN "<event name=\"Went()\"/>" ROOT_CLOSE DOC_TAIL, "must end with \"!\""},
    {DOC_HEAD ROOT_OPEN "<parameter name=\"P\" access=\"readOnly\"/>" ROOT_CLOSE DOC_TAIL,
     "<parameter name=\"P\">: parameter without <syntax>"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string/><default type=\"sometimes\" value=\"x\"/>")
         ROOT_CLOSE DOC_TAIL,
     "bad default type \"sometimes\""},
    {DOC_HEAD ROOT_OPEN "<parameter access=\"readOnly\"/>" ROOT_CLOSE DOC_TAIL,
     "without name= or base="},
    {DOC_HEAD "<model name=\"T:1.0\"><parameter name=\"P\"><syntax><int/></syntax></parameter>"
              "</model>" DOC_TAIL,
     "not inside an object"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<string/><int/>") ROOT_CLOSE DOC_TAIL,
     "a second base type in one syntax"},
    {DOC_HEAD ROOT_OPEN PARAM("P", "<dataType/>") ROOT_CLOSE DOC_TAIL, "needs ref= or base="},
};

static void test_dm_broken_memory(void)
{
    for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
        struct usp_dm_error err;
        struct usp_dm_schema *s = load_mem(bad_docs[i].xml, &err);
        CU_ASSERT_PTR_NULL(s);
        if (s) {
            fprintf(stderr, "\nbad_docs[%zu] loaded\n", i);
            usp_dm_schema_free(s);
            continue;
        }
        if (!strstr(err.msg, bad_docs[i].text) || strncmp(err.msg, "mem.xml", 7) != 0) {
            fprintf(stderr, "\nbad_docs[%zu]: got \"%s\", want \"%s\"\n", i, err.msg,
                    bad_docs[i].text);
            CU_FAIL("error message");
        }
    }
}

/* XML entities: internal ones are expanded, external ones never loaded. */
static void test_dm_entities(void)
{
    struct usp_dm_error err;
    struct usp_dm_schema *s = load_mem(
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE x [<!ENTITY d \"[0-9]\">]>\n"
        "<dm:document xmlns:dm=\"urn:broadband-forum-org:cwmp:datamodel-1-15\">\n" ROOT_OPEN PARAM(
            "P", "<string><pattern value=\"&d;+\"/></string>") ROOT_CLOSE DOC_TAIL,
        &err);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    const struct usp_dm_param *p = param(s, "Device.P");
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_STRING_EQUAL(p->type->patterns[0].value, "[0-9]+");
    CU_ASSERT_EQUAL(check(p, "123"), 0);
    CU_ASSERT_EQUAL(check(p, "12a"), USP_ERR_INVALID_VALUE);
    usp_dm_schema_free(s);
    s = load_mem(
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE x [<!ENTITY e SYSTEM \"/etc/hostname\">]>\n"
        "<dm:document xmlns:dm=\"urn:broadband-forum-org:cwmp:datamodel-1-15\">\n" ROOT_OPEN PARAM(
            "P", "<string><pattern value=\"&e;\"/></string>") ROOT_CLOSE DOC_TAIL,
        &err);
    CU_ASSERT_PTR_NULL(s);
    usp_dm_schema_free(s);
}

/* ---- lookups and iteration ---- */

static void test_dm_lookup(void)
{
    const struct usp_dm_schema *s = tr181_full();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    struct usp_dm_item it;
    const struct usp_dm_object *root = usp_dm_schema_root(s);
    CU_ASSERT_STRING_EQUAL(root->path, "Device.");
    CU_ASSERT_PTR_EQUAL(obj(s, "Device."), root);
    CU_ASSERT_PTR_EQUAL(obj(s, "Device"), root);
    const struct usp_dm_object *ap = obj(s, "Device.WiFi.AccessPoint.{i}.");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ap);
    CU_ASSERT_STRING_EQUAL(ap->name, "AccessPoint");
    CU_ASSERT_PTR_EQUAL(obj(s, "Device.WiFi.AccessPoint."), ap);   /* the table */
    CU_ASSERT_PTR_EQUAL(obj(s, "Device.WiFi.AccessPoint.3."), ap); /* an instance */
    CU_ASSERT_PTR_EQUAL(obj(s, "Device.WiFi.AccessPoint.*.Security."),
                        usp_dm_object_child(ap, "Security", 8));
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.WiFi.AccessPoint.1.Enable", &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_PARAM);
    CU_ASSERT_PTR_EQUAL(it.object, ap);
    CU_ASSERT_STRING_EQUAL(it.param->name, "Enable");
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.Reboot()", &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_COMMAND);
    CU_ASSERT_FALSE(it.command->async);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.Boot!", &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_EVENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.IP.Interface.{i}.IPv4Address.{i}.", &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_OBJECT);
    CU_ASSERT_STRING_EQUAL(it.object->path, "Device.IP.Interface.{i}.IPv4Address.{i}.");

    CU_ASSERT_EQUAL(usp_dm_lookup(s, "", &it), USP_EINVAL);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.Nope", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.Nope.", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Foo.", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device..WiFi.", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.DeviceInfo.1.Manufacturer", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.WiFi.AccessPoint.1.2.Enable", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.Reboot", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.Nope()", &it), USP_ENOENT);
    CU_ASSERT_EQUAL(usp_dm_lookup(s, "Device.WiFi.AccessPoint.{i}.Enable.", &it), USP_ENOENT);

    /* by name segments, instance segments skipped wherever they are */
    const char *n1[] = {"Device", "WiFi", "AccessPoint", "{i}", "Security", "ModeEnabled"};
    size_t l1[] = {6, 4, 11, 3, 8, 11};
    CU_ASSERT_EQUAL(usp_dm_lookup_names(s, n1, l1, 6, &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_PARAM);
    CU_ASSERT_STRING_EQUAL(it.object->path, "Device.WiFi.AccessPoint.{i}.Security.");
    /* not NUL-terminated: lengths rule */
    const char *n2[] = {"DeviceX", "WiFiX", "AccessPointX", "12", "[Enable==true]"};
    size_t l2[] = {6, 4, 11, 2, 14};
    CU_ASSERT_EQUAL(usp_dm_lookup_names(s, n2, l2, 5, &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_OBJECT);
    CU_ASSERT_PTR_EQUAL(it.object, ap);
    const char *n3[] = {"Device", "WiFi", "Nope"};
    size_t l3[] = {6, 4, 4};
    CU_ASSERT_EQUAL(usp_dm_lookup_names(s, n3, l3, 3, &it), USP_ENOENT);
    const char *n4[] = {"Device", "Reboot()"};
    size_t l4[] = {6, 8};
    CU_ASSERT_EQUAL(usp_dm_lookup_names(s, n4, l4, 2, &it), 0);
    CU_ASSERT_EQUAL(it.kind, USP_DM_KIND_COMMAND);
    CU_ASSERT_EQUAL(usp_dm_lookup_names(s, n4, l4, 0, &it), USP_EINVAL);
}

/* Every object is where iteration and lookups say, in depth-first order,
 * with sorted children, parameters, commands and events. */
static void test_dm_iteration(void)
{
    const struct usp_dm_schema *s = tr181_full();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    size_t n = usp_dm_schema_nobjects(s);
    CU_ASSERT_EQUAL(n, usp_dm_schema_counts(s)->objects);
    CU_ASSERT_PTR_NULL(usp_dm_schema_object(s, n));
    size_t bad = 0, visited = 0;
    for (size_t i = 0; i < n; i++) {
        const struct usp_dm_object *o = usp_dm_schema_object(s, i);
        if (o->index != i || (i == 0) != (o->parent == NULL))
            bad++;
        if (o->parent && (o->parent->index >= i ||
                          strncmp(o->path, o->parent->path, strlen(o->parent->path)) != 0))
            bad++;
        if (obj(s, o->path) != o)
            bad++;
        if (((o->flags & USP_DM_OBJ_MULTI) != 0) !=
            (strlen(o->path) > 4 && !strcmp(o->path + strlen(o->path) - 4, "{i}.")))
            bad++;
        for (uint32_t j = 0; j < o->nchildren; j++) {
            const struct usp_dm_object *c = o->children[j];
            if (c->parent != o || usp_dm_object_child(o, c->name, strlen(c->name)) != c)
                bad++;
            if (j && strcmp(o->children[j - 1]->name, c->name) >= 0)
                bad++;
            /* depth-first: the first child follows its parent */
            if (j == 0 && c->index != i + 1)
                bad++;
        }
        for (uint32_t j = 0; j < o->nparams; j++) {
            const struct usp_dm_param *p = &o->params[j];
            if (p->parent != o || usp_dm_param_index(p) != j ||
                usp_dm_object_param(o, p->name, strlen(p->name)) != p)
                bad++;
            if (j && strcmp(o->params[j - 1].name, p->name) >= 0)
                bad++;
        }
        for (uint32_t j = 0; j < o->ncommands; j++)
            if (usp_dm_object_command(o, o->commands[j].name, strlen(o->commands[j].name)) !=
                &o->commands[j])
                bad++;
        for (uint32_t j = 0; j < o->nevents; j++)
            if (usp_dm_object_event(o, o->events[j].name, strlen(o->events[j].name)) !=
                &o->events[j])
                bad++;
        for (uint32_t k = 0; k < o->nkeys; k++)
            for (uint32_t j = 0; j < o->keys[k].nparams; j++)
                if (o->keys[k].params[j] >= o->nparams)
                    bad++;
        if (o->num_entries_param && o->num_entries_param->parent != o->parent)
            bad++;
        if (o->enable_param && o->enable_param->parent != o)
            bad++;
        visited++;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(visited, 809);
}

/* One schema shared read-only by several threads. */
struct thread_job {
    const struct usp_dm_schema *s;
    size_t failures;
};

static void *thread_run(void *arg)
{
    struct thread_job *j = arg;
    const struct usp_dm_param *mac = param(j->s, "Device.Ethernet.Interface.{i}.MACAddress");
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < usp_dm_schema_nobjects(j->s); i++) {
            const struct usp_dm_object *o = usp_dm_schema_object(j->s, i);
            if (obj(j->s, o->path) != o)
                j->failures++;
        }
        if (!mac || usp_dm_type_check(mac, "00:11:22:aa:BB:cc", NULL, 0) != 0 ||
            usp_dm_type_check(mac, "00:11:22:aa:BB:c", NULL, 0) != USP_ERR_INVALID_VALUE)
            j->failures++;
    }
    return NULL;
}

static void test_dm_threads(void)
{
    const struct usp_dm_schema *s = tr181_full();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    pthread_t th[4];
    struct thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct thread_job){s, 0};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[i], NULL, thread_run, &jobs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(jobs[i].failures, 0);
    }
}

/* ---- value checks ---- */

/* clang-format off */
static const char types_doc[] =
    DOC_HEAD
    "<dataType name=\"Pair\"><list minItems=\"2\" maxItems=\"2\"/><int/></dataType>\n"
    ROOT_OPEN
    PARAM("B", "<boolean/>")
    PARAM("B2", "<boolean/>")
    PARAM("I", "<int/>")
    PARAM("U", "<unsignedInt/>")
    PARAM("L", "<long/>")
    PARAM("UL", "<unsignedLong/>")
    PARAM("D", "<decimal/>")
    PARAM("RD", "<decimal><range minInclusive=\"-90\" maxInclusive=\"90\"/></decimal>")
    PARAM("T", "<dateTime/>")
    PARAM("H", "<hexBinary><size minLength=\"2\" maxLength=\"2\"/></hexBinary>")
    PARAM("B64", "<base64><size maxLength=\"3\"/></base64>")
    PARAM("S", "<string><size maxLength=\"5\"/></string>")
    PARAM("S2", "<string><size minLength=\"0\" maxLength=\"0\"/>"
                "<size minLength=\"3\" maxLength=\"4\"/></string>")
    PARAM("E", "<string><enumeration value=\"Up\"/><enumeration value=\"Down\"/>"
               "<enumeration value=\"Gone\" status=\"deleted\"/></string>")
    PARAM("R", "<unsignedInt><range minInclusive=\"1\" maxInclusive=\"10\" step=\"3\"/>"
               "</unsignedInt>")
    PARAM("R2", "<int><range minInclusive=\"-1\" maxInclusive=\"-1\"/>"
                "<range minInclusive=\"1\" maxInclusive=\"100\"/></int>")
    PARAM("V", "<string><pattern value=\"2\\.\\d+\"/></string>")
    PARAM("M", "<string><pattern value=\"\"/>"
               "<pattern value=\"[0-9A-F]{2}(:[0-9A-F]{2})*\"/></string>")
    PARAM("LU", "<list maxItems=\"3\"><size maxLength=\"8\"/></list>"
                "<unsignedInt><range maxInclusive=\"10\"/></unsignedInt>")
    PARAM("LL", "<list nestedBrackets=\"required\"/><dataType ref=\"Pair\"/>")
    ROOT_CLOSE
    DOC_TAIL;
/* clang-format on */

static const struct {
    const char *param, *value;
    int want;
} type_cases[] = {
    {"B", "true", 0},
    {"B", "false", 0},
    {"B", "0", 0},
    {"B", "1", 0},
    {"B", "TRUE", USP_ERR_INVALID_TYPE},
    {"B", "yes", USP_ERR_INVALID_TYPE},
    {"B", "", USP_ERR_INVALID_TYPE},
    {"I", "-2147483648", 0},
    {"I", "+2147483647", 0},
    {"I", "2147483648", USP_ERR_INVALID_TYPE},
    {"I", "1.5", USP_ERR_INVALID_TYPE},
    {"I", "", USP_ERR_INVALID_TYPE},
    {"I", " 1", USP_ERR_INVALID_TYPE},
    {"U", "4294967295", 0},
    {"U", "4294967296", USP_ERR_INVALID_TYPE},
    {"U", "-1", USP_ERR_INVALID_TYPE},
    {"L", "-9223372036854775808", 0},
    {"L", "9223372036854775808", USP_ERR_INVALID_TYPE},
    {"UL", "18446744073709551615", 0},
    {"UL", "18446744073709551616", USP_ERR_INVALID_TYPE},
    {"D", "1.5", 0},
    {"D", "-0.25", 0},
    {"D", ".5", 0},
    {"D", "5.", 0},
    {"D", "1e5", USP_ERR_INVALID_TYPE},
    {"D", ".", USP_ERR_INVALID_TYPE},
    {"RD", "-90.0", 0},
    {"RD", "90.5", USP_ERR_INVALID_VALUE},
    {"T", "2024-02-29T12:00:00Z", 0},
    {"T", "0001-01-01T00:00:00Z", 0},
    {"T", "2024-01-01T00:00:00.123456+02:00", 0},
    {"T", "2024-01-01T00:00:00", 0},
    {"T", "2023-02-29T12:00:00Z", USP_ERR_INVALID_TYPE},
    {"T", "2024-13-01T00:00:00Z", USP_ERR_INVALID_TYPE},
    {"T", "2024-01-01 00:00:00Z", USP_ERR_INVALID_TYPE},
    {"T", "2024-01-01T24:00:00Z", USP_ERR_INVALID_TYPE},
    {"H", "0a1B", 0},
    {"H", "0a1", USP_ERR_INVALID_TYPE},
    {"H", "zz00", USP_ERR_INVALID_TYPE},
    {"H", "0a1b2c", USP_ERR_INVALID_VALUE}, /* 3 octets, size is in octets */
    {"B64", "AAEC", 0},
    {"B64", "AAE=", 0},
    {"B64", "AAECAw==", USP_ERR_INVALID_VALUE},
    {"B64", "A", USP_ERR_INVALID_TYPE},
    {"B64", "AA=A", USP_ERR_INVALID_TYPE},
    {"S", "abcde", 0},
    {"S", "h\xc3\xa9llo", 0}, /* 5 characters, 6 bytes */
    {"S", "abcdef", USP_ERR_INVALID_VALUE},
    {"S2", "", 0},
    {"S2", "abc", 0},
    {"S2", "ab", USP_ERR_INVALID_VALUE},
    {"E", "Up", 0},
    {"E", "Down", 0},
    {"E", "Gone", USP_ERR_INVALID_VALUE},
    {"E", "up", USP_ERR_INVALID_VALUE},
    {"R", "1", 0},
    {"R", "4", 0},
    {"R", "10", 0},
    {"R", "2", USP_ERR_INVALID_VALUE},
    {"R", "0", USP_ERR_INVALID_VALUE},
    {"R", "13", USP_ERR_INVALID_VALUE},
    {"R2", "-1", 0},
    {"R2", "50", 0},
    {"R2", "0", USP_ERR_INVALID_VALUE},
    {"V", "2.19", 0},
    {"V", "2.x", USP_ERR_INVALID_VALUE},
    {"V", "12.19", USP_ERR_INVALID_VALUE}, /* whole-value match */
    {"M", "", 0},
    {"M", "0A:FF", 0},
    {"M", "0a:ff", USP_ERR_INVALID_VALUE},
    {"LU", "", 0},
    {"LU", "1,2,3", 0},
    {"LU", "1, 2", 0},
    {"LU", "1,2,3,4", USP_ERR_INVALID_VALUE},
    {"LU", "1,11", USP_ERR_INVALID_VALUE},
    {"LU", "1,x", USP_ERR_INVALID_TYPE},
    {"LU", "1,,2", USP_ERR_INVALID_TYPE},
    {"LU", "10,10,10", 0},
    {"LU", "10, 10, 1", USP_ERR_INVALID_VALUE}, /* 8 characters at most */
    {"LL", "[1,2],[3,-4]", 0},
    {"LL", "[1,2,3]", USP_ERR_INVALID_VALUE},
    {"LL", "1,2", USP_ERR_INVALID_TYPE},
    {"LL", "[1,a]", USP_ERR_INVALID_TYPE},
};

static void test_dm_type_check(void)
{
    struct usp_dm_error err;
    struct usp_dm_schema *s = load_mem(types_doc, &err);
    if (!s)
        fprintf(stderr, "\n%s\n", err.msg);
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    for (size_t i = 0; i < sizeof type_cases / sizeof type_cases[0]; i++) {
        char path[32];
        snprintf(path, sizeof path, "Device.%s", type_cases[i].param);
        const struct usp_dm_param *p = param(s, path);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        char why[160] = "";
        int rc = usp_dm_type_check(p, type_cases[i].value, why, sizeof why);
        if (rc != type_cases[i].want) {
            fprintf(stderr, "\n%s = \"%s\": got %d (%s), want %d\n", path, type_cases[i].value, rc,
                    why, type_cases[i].want);
            CU_FAIL("type check");
        }
        CU_ASSERT_EQUAL(rc == 0, why[0] == 0);
    }
    const struct usp_dm_param *r = param(s, "Device.R");
    char why[160];
    CU_ASSERT_EQUAL(usp_dm_type_check(r, "13", why, sizeof why), USP_ERR_INVALID_VALUE);
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "[1:10] step 3"));
    CU_ASSERT_EQUAL(usp_dm_type_check(r, NULL, why, sizeof why), USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL(usp_dm_type_check(r, "4", NULL, 0), 0);
    /* identical syntaxes share one type record */
    CU_ASSERT_EQUAL(param(s, "Device.B")->type->base, USP_DM_BOOLEAN);
    CU_ASSERT_PTR_EQUAL(param(s, "Device.B")->type, param(s, "Device.B2")->type);
    usp_dm_schema_free(s);
}

/* ---- the official TR-181 Device:2.19.1 files ---- */

/* The numbers come from the full file (see ../shared/usp-notes.md (i)):
 * 822 objects of which 13 deleted (5 of them tables); 6,722 parameters of
 * which 78 deleted and 63 more inside deleted objects; 179 commands (1
 * deleted), 53 events (1 deleted); 589 unique keys, 5 on deleted objects. */
static void expect_tr181_counts(const struct usp_dm_schema *s)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    CU_ASSERT_STRING_EQUAL(usp_dm_schema_model(s), "Device:2.19");
    const struct usp_dm_counts *c = usp_dm_schema_counts(s);
    CU_ASSERT_EQUAL(c->objects, 822 - 13);
    CU_ASSERT_EQUAL(c->multi_objects, 422 - 5);
    CU_ASSERT_EQUAL(c->deleted_objects, 13);
    CU_ASSERT_EQUAL(c->params, 6722 - 78 - 63);
    CU_ASSERT_EQUAL(c->deleted_params, 78);
    CU_ASSERT_EQUAL(c->params_in_deleted, 63);
    CU_ASSERT_EQUAL(c->commands, 179 - 1);
    CU_ASSERT_EQUAL(c->async_commands, 83);
    CU_ASSERT_EQUAL(c->deleted_commands, 1);
    CU_ASSERT_EQUAL(c->events, 53 - 1);
    CU_ASSERT_EQUAL(c->deleted_events, 1);
    CU_ASSERT_EQUAL(c->deprecated_objects, 10);
    CU_ASSERT_EQUAL(c->obsoleted_objects, 4);
    CU_ASSERT_EQUAL(c->deprecated_params, 56);
    CU_ASSERT_EQUAL(c->obsoleted_params, 9);
    CU_ASSERT_EQUAL(c->deprecated_commands, 4);
    CU_ASSERT_EQUAL(c->unique_keys, 589 - 5);
    CU_ASSERT_EQUAL(c->writable_objects, 186);
    /* readWrite 2,072 + writeOnceReadOnly 279 among the supported ones */
    CU_ASSERT_EQUAL(c->writable_params, 2072 + 279);
    /* arguments of the supported commands and events, deleted ones out:
     * 930 + 139 parameters, 63 + 6 objects */
    CU_ASSERT_EQUAL(c->arg_params, 1069);
    CU_ASSERT_EQUAL(c->arg_objects, 69);
    /* a whole model in well under 2 MiB, shared by every agent */
    CU_ASSERT(c->bytes > 0 && c->bytes < 2u * 1024 * 1024);
}

static void test_dm_tr181_full_counts(void)
{
    expect_tr181_counts(tr181_full());
}

static void test_dm_tr181_modular_counts(void)
{
    expect_tr181_counts(tr181_modular());
}

/* Facets over every supported parameter, against the file's figures. */
static void test_dm_tr181_facets(void)
{
    const struct usp_dm_schema *s = tr181_full();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    unsigned ro = 0, rw = 0, wo = 0, can_deny = 0, secured = 0, lists = 0, defaults = 0;
    unsigned enable = 0, num_entries = 0, tables_without_keys = 0, strong = 0;
    for (size_t i = 0; i < usp_dm_schema_nobjects(s); i++) {
        const struct usp_dm_object *o = usp_dm_schema_object(s, i);
        enable += o->enable_param != NULL;
        num_entries += o->num_entries_param != NULL;
        tables_without_keys += (o->flags & USP_DM_OBJ_MULTI) && !o->nkeys;
        for (uint32_t j = 0; j < o->nparams; j++) {
            const struct usp_dm_param *p = &o->params[j];
            ro += p->access == USP_DM_READ_ONLY;
            rw += p->access == USP_DM_READ_WRITE;
            wo += p->access == USP_DM_WRITE_ONCE_READ_ONLY;
            can_deny += p->notify == USP_DM_NOTIFY_CAN_DENY;
            secured += (p->flags & USP_DM_PARAM_SECURED) != 0;
            lists += p->type->item != NULL;
            defaults += p->default_value != NULL;
            const struct usp_dm_type *t = p->type->item ? p->type->item : p->type;
            strong += t->pathref && t->pathref->ref_type == USP_DM_REF_STRONG;
        }
    }
    CU_ASSERT_EQUAL(ro, 4230); /* 3,493 readOnly + 737 without access */
    CU_ASSERT_EQUAL(rw, 2072);
    CU_ASSERT_EQUAL(wo, 279);
    CU_ASSERT_EQUAL(can_deny, 899);
    CU_ASSERT_EQUAL(secured, 42);
    CU_ASSERT_EQUAL(lists, 409 + 2); /* 409 <list> syntaxes, 2 of a list dataType (MocaBand) */
    CU_ASSERT_EQUAL(defaults, 1169);
    CU_ASSERT_EQUAL(enable, 147);
    CU_ASSERT_EQUAL(num_entries, 415);
    CU_ASSERT_EQUAL(tables_without_keys, 20);
    CU_ASSERT(strong > 0);
}

/* Spot checks of well-known definitions, and values against them. */
static void test_dm_tr181_definitions(void)
{
    const struct usp_dm_schema *s = tr181_full();
    CU_ASSERT_PTR_NOT_NULL_FATAL(s);
    const struct usp_dm_object *ap = obj(s, "Device.WiFi.AccessPoint.{i}.");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ap);
    CU_ASSERT_EQUAL(ap->access, USP_DM_READ_WRITE);
    CU_ASSERT_STRING_EQUAL(ap->num_entries_param->name, "AccessPointNumberOfEntries");
    CU_ASSERT_EQUAL_FATAL(ap->nkeys, 2);
    CU_ASSERT_STRING_EQUAL(ap->params[ap->keys[0].params[0]].name, "Alias");
    CU_ASSERT_FALSE(ap->keys[0].functional);
    CU_ASSERT_STRING_EQUAL(ap->params[ap->keys[1].params[0]].name, "SSIDReference");
    CU_ASSERT_TRUE(ap->keys[1].functional);

    const struct usp_dm_param *alias = param(s, "Device.WiFi.AccessPoint.{i}.Alias");
    CU_ASSERT_PTR_NOT_NULL_FATAL(alias);
    CU_ASSERT_EQUAL(alias->access, USP_DM_WRITE_ONCE_READ_ONLY);
    CU_ASSERT_EQUAL(check(alias, "cpe-1"), 0);
    char long_alias[80];
    memset(long_alias, 'a', 65);
    long_alias[65] = 0;
    CU_ASSERT_EQUAL(check(alias, long_alias), USP_ERR_INVALID_VALUE);

    const struct usp_dm_param *mac = param(s, "Device.Ethernet.Interface.{i}.MACAddress");
    CU_ASSERT_PTR_NOT_NULL_FATAL(mac);
    CU_ASSERT_STRING_EQUAL(mac->type->name, "MACAddress");
    CU_ASSERT_EQUAL(check(mac, "00:11:22:aa:bb:cc"), 0);
    CU_ASSERT_EQUAL(check(mac, ""), 0);
    CU_ASSERT_EQUAL(check(mac, "00-11-22-aa-bb-cc"), USP_ERR_INVALID_VALUE);

    const struct usp_dm_param *ip = param(s, "Device.IP.Interface.{i}.IPv4Address.{i}.IPAddress");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ip);
    CU_ASSERT_EQUAL(check(ip, "192.168.1.1"), 0);
    CU_ASSERT_EQUAL(check(ip, "256.1.1.1"), USP_ERR_INVALID_VALUE);

    const struct usp_dm_param *ver = param(s, "Device.RootDataModelVersion");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ver);
    CU_ASSERT_EQUAL(check(ver, "2.19"), 0);
    CU_ASSERT_EQUAL(check(ver, "v2"), USP_ERR_INVALID_VALUE);

    const struct usp_dm_param *en = param(s, "Device.WiFi.Radio.{i}.Enable");
    CU_ASSERT_PTR_NOT_NULL_FATAL(en);
    CU_ASSERT_EQUAL(check(en, "maybe"), USP_ERR_INVALID_TYPE);

    const struct usp_dm_param *ll = param(s, "Device.IP.Interface.{i}.LowerLayers");
    CU_ASSERT_PTR_NOT_NULL_FATAL(ll);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ll->type->item);
    CU_ASSERT_PTR_NOT_NULL_FATAL(ll->type->item->pathref);
    CU_ASSERT_EQUAL(ll->type->item->pathref->ref_type, USP_DM_REF_STRONG);

    struct usp_dm_item it;
    CU_ASSERT_EQUAL_FATAL(usp_dm_lookup(s, "Device.Reboot()", &it), 0);
    const struct usp_dm_param *cause = usp_dm_object_param(it.command->input, "Cause", 5);
    CU_ASSERT_PTR_NOT_NULL_FATAL(cause);
    CU_ASSERT_EQUAL(check(cause, "RemoteReboot"), 0);
    CU_ASSERT_EQUAL(check(cause, "Reboot"), USP_ERR_INVALID_VALUE);
    CU_ASSERT_EQUAL_FATAL(usp_dm_lookup(s, "Device.IP.Diagnostics.IPPing()", &it), 0);
    CU_ASSERT_TRUE(it.command->async);
    const struct usp_dm_param *host = usp_dm_object_param(it.command->input, "Host", 4);
    CU_ASSERT_PTR_NOT_NULL_FATAL(host);
    CU_ASSERT(host->flags & USP_DM_PARAM_MANDATORY);
    CU_ASSERT_EQUAL_FATAL(usp_dm_lookup(s, "Device.Boot!", &it), 0);
    CU_ASSERT_PTR_NOT_NULL(usp_dm_object_param(it.event->args, "FirmwareUpdated", 15));
    CU_ASSERT_PTR_NOT_NULL(usp_dm_schema_datatype(s, "StatsCounter64"));
    CU_ASSERT_PTR_NULL(usp_dm_schema_datatype(s, "NoSuchType"));
}

/* ---- full and modular: one schema ---- */

static char diff[512];

#define DIFF(...) (snprintf(diff, sizeof diff, __VA_ARGS__), 1)

static int cmp_type(const char *where, const struct usp_dm_type *a, const struct usp_dm_type *b)
{
    if (a->base != b->base || !a->item != !b->item || a->nested != b->nested ||
        a->min_items != b->min_items || a->max_items != b->max_items)
        return DIFF("%s: base type or list differs", where);
    if (a->nsizes != b->nsizes || a->nranges != b->nranges || a->nenums != b->nenums ||
        a->npatterns != b->npatterns)
        return DIFF("%s: number of facets differs", where);
    for (uint16_t i = 0; i < a->nsizes; i++)
        if (a->sizes[i].min != b->sizes[i].min || a->sizes[i].max != b->sizes[i].max)
            return DIFF("%s: size %u differs", where, i);
    for (uint16_t i = 0; i < a->nranges; i++)
        if (a->ranges[i].min.u != b->ranges[i].min.u || a->ranges[i].max.u != b->ranges[i].max.u ||
            a->ranges[i].step != b->ranges[i].step ||
            a->ranges[i].has_min != b->ranges[i].has_min ||
            a->ranges[i].has_max != b->ranges[i].has_max)
            return DIFF("%s: range %u differs", where, i);
    for (uint16_t i = 0; i < a->nenums; i++)
        if (strcmp(a->enums[i].value, b->enums[i].value) ||
            a->enums[i].status != b->enums[i].status || a->enums[i].flags != b->enums[i].flags)
            return DIFF("%s: enumeration %s differs", where, a->enums[i].value);
    for (uint16_t i = 0; i < a->npatterns; i++)
        if (strcmp(a->patterns[i].value, b->patterns[i].value))
            return DIFF("%s: pattern %u differs", where, i);
    if (!a->units != !b->units || (a->units && strcmp(a->units, b->units)))
        return DIFF("%s: units differ", where);
    if (!a->pathref != !b->pathref ||
        (a->pathref && (a->pathref->ref_type != b->pathref->ref_type ||
                        a->pathref->target_type != b->pathref->target_type ||
                        strcmp(a->pathref->target_parent, b->pathref->target_parent))))
        return DIFF("%s: pathRef differs", where);
    if (!a->enumref != !b->enumref ||
        (a->enumref && strcmp(a->enumref->target_param, b->enumref->target_param)))
        return DIFF("%s: enumerationRef differs", where);
    return a->item ? cmp_type(where, a->item, b->item) : 0;
}

static int cmp_object(const struct usp_dm_object *a, const struct usp_dm_object *b);

static int cmp_params(const struct usp_dm_object *a, const struct usp_dm_object *b)
{
    if (a->nparams != b->nparams)
        return DIFF("%s: %u parameters vs %u", a->path, a->nparams, b->nparams);
    for (uint32_t i = 0; i < a->nparams; i++) {
        const struct usp_dm_param *p = &a->params[i], *q = &b->params[i];
        char where[300];
        snprintf(where, sizeof where, "%s%s", a->path, p->name);
        if (strcmp(p->name, q->name))
            return DIFF("%s: parameter %s vs %s", a->path, p->name, q->name);
        if (p->access != q->access || p->status != q->status || p->notify != q->notify ||
            p->flags != q->flags || p->default_type != q->default_type)
            return DIFF("%s: attributes differ", where);
        if (!p->default_value != !q->default_value ||
            (p->default_value && strcmp(p->default_value, q->default_value)))
            return DIFF("%s: default differs", where);
        if (cmp_type(where, p->type, q->type))
            return 1;
    }
    return 0;
}

static int cmp_tree(const struct usp_dm_object *a, const struct usp_dm_object *b)
{
    if (cmp_object(a, b))
        return 1;
    for (uint32_t i = 0; i < a->nchildren; i++)
        if (cmp_tree(a->children[i], b->children[i]))
            return 1;
    return 0;
}

static int cmp_object(const struct usp_dm_object *a, const struct usp_dm_object *b)
{
    if (strcmp(a->path, b->path) || strcmp(a->name, b->name))
        return DIFF("object %s vs %s", a->path, b->path);
    if (a->access != b->access || a->status != b->status || a->flags != b->flags ||
        a->min_entries != b->min_entries || a->max_entries != b->max_entries)
        return DIFF("%s: attributes differ", a->path);
    if (a->nchildren != b->nchildren || a->ncommands != b->ncommands || a->nevents != b->nevents ||
        a->nkeys != b->nkeys)
        return DIFF("%s: children, commands, events or keys differ", a->path);
    for (uint32_t i = 0; i < a->nchildren; i++)
        if (strcmp(a->children[i]->path, b->children[i]->path))
            return DIFF("%s: child %s vs %s", a->path, a->children[i]->path, b->children[i]->path);
    if (!a->num_entries_param != !b->num_entries_param ||
        (a->num_entries_param && strcmp(a->num_entries_param->name, b->num_entries_param->name)) ||
        !a->enable_param != !b->enable_param ||
        (a->enable_param && strcmp(a->enable_param->name, b->enable_param->name)))
        return DIFF("%s: numEntries or enable parameter differs", a->path);
    for (uint32_t k = 0; k < a->nkeys; k++) {
        if (a->keys[k].functional != b->keys[k].functional ||
            a->keys[k].nparams != b->keys[k].nparams)
            return DIFF("%s: unique key %u differs", a->path, k);
        for (uint32_t j = 0; j < a->keys[k].nparams; j++)
            if (a->keys[k].params[j] != b->keys[k].params[j])
                return DIFF("%s: unique key %u differs", a->path, k);
    }
    if (cmp_params(a, b))
        return 1;
    for (uint32_t i = 0; i < a->ncommands; i++) {
        const struct usp_dm_command *c = &a->commands[i], *d = &b->commands[i];
        if (strcmp(c->name, d->name) || c->async != d->async || c->status != d->status)
            return DIFF("%s: command %s vs %s", a->path, c->name, d->name);
        if (cmp_tree(c->input, d->input) || cmp_tree(c->output, d->output))
            return 1; /* diff names the argument */
    }
    for (uint32_t i = 0; i < a->nevents; i++) {
        const struct usp_dm_event *e = &a->events[i], *f = &b->events[i];
        if (strcmp(e->name, f->name) || e->status != f->status)
            return DIFF("%s: event %s vs %s", a->path, e->name, f->name);
        if (cmp_tree(e->args, f->args))
            return 1;
    }
    return 0;
}

static void test_dm_tr181_full_equals_modular(void)
{
    const struct usp_dm_schema *a = tr181_full(), *b = tr181_modular();
    CU_ASSERT_PTR_NOT_NULL_FATAL(a);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    CU_ASSERT_EQUAL_FATAL(usp_dm_schema_nobjects(a), usp_dm_schema_nobjects(b));
    size_t differ = 0;
    for (size_t i = 0; i < usp_dm_schema_nobjects(a); i++) {
        if (cmp_object(usp_dm_schema_object(a, i), usp_dm_schema_object(b, i))) {
            if (!differ++)
                fprintf(stderr, "\nfull vs modular: %s\n", diff);
        }
    }
    CU_ASSERT_EQUAL(differ, 0);
    /* and the comparison itself notices a difference */
    CU_ASSERT_NOT_EQUAL(cmp_object(usp_dm_schema_object(a, 0), usp_dm_schema_object(a, 1)), 0);
}

void suite_dm_xml(void)
{
    USP_SUITE("dm_xml", USP_TEST(test_dm_fixture_loads), USP_TEST(test_dm_fixture_definitions),
              USP_TEST(test_dm_fixture_corrigendum), USP_TEST(test_dm_memory_imports),
              USP_TEST(test_dm_descriptions_flag), USP_TEST(test_dm_broken_files),
              USP_TEST(test_dm_broken_memory), USP_TEST(test_dm_entities),
              USP_TEST(test_dm_type_check));
    USP_SUITE("dm_tr181", USP_TEST(test_dm_tr181_full_counts),
              USP_TEST(test_dm_tr181_modular_counts), USP_TEST(test_dm_tr181_facets),
              USP_TEST(test_dm_tr181_definitions), USP_TEST(test_dm_tr181_full_equals_modular),
              USP_TEST(test_dm_lookup), USP_TEST(test_dm_iteration), USP_TEST(test_dm_threads));
}
