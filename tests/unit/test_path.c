/* USP path grammar: the parsed structure of every kind of path, exact error
 * positions for invalid ones, canonical text round trips, supported forms,
 * caller buffers, name checks. */
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"
#include "usp/errors.h"
#include "usp/path.h"

/* A growing text buffer for dumps; big enough for every case here. */
struct sb {
    char buf[2048];
    size_t len;
};

__attribute__((format(printf, 2, 3))) static void sb_add(struct sb *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->buf + b->len, sizeof b->buf - b->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        b->len += (size_t)k < sizeof b->buf - b->len ? (size_t)k : sizeof b->buf - b->len - 1;
}

static void dump_segs(struct sb *b, const struct usp_path_seg *seg, uint32_t n);

static void dump_value(struct sb *b, const struct usp_path_cmp *cm)
{
    sb_add(b, "%c\"", cm->quoted ? 'q' : 'l');
    /* The value's length must agree with its NUL. */
    if (strlen(cm->value) != cm->value_len)
        sb_add(b, "<len %u != strlen>", cm->value_len);
    for (uint32_t i = 0; i < cm->value_len; i++) {
        unsigned char c = (unsigned char)cm->value[i];
        if (c >= 0x20 && c < 0x7f)
            sb_add(b, "%c", c);
        else
            sb_add(b, "\\x%02x", c);
    }
    sb_add(b, "\"");
}

/* An independent rendering of the structure (not usp_path_format). */
static void dump_segs(struct sb *b, const struct usp_path_seg *seg, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) {
        const struct usp_path_seg *sg = &seg[i];
        if (i)
            sb_add(b, " ");
        switch (sg->kind) {
        case USP_PATH_SEG_NAME:
        case USP_PATH_SEG_COMMAND:
        case USP_PATH_SEG_EVENT:
            sb_add(b, "%c(%s)",
                   sg->kind == USP_PATH_SEG_NAME      ? 'N'
                   : sg->kind == USP_PATH_SEG_COMMAND ? 'C'
                                                      : 'E',
                   sg->name);
            if (strlen(sg->name) != sg->len)
                sb_add(b, "<len %u != strlen>", sg->len);
            break;
        case USP_PATH_SEG_INSTANCE:
            sb_add(b, "I(%u)", sg->inst);
            break;
        case USP_PATH_SEG_WILDCARD:
            sb_add(b, "*");
            break;
        case USP_PATH_SEG_SUPPORTED:
            sb_add(b, "{i}");
            break;
        case USP_PATH_SEG_REF:
            if (sg->ref.mode == USP_PATH_REF_ONE)
                sb_add(b, "R(+)");
            else if (sg->ref.mode == USP_PATH_REF_INDEX)
                sb_add(b, "R(#%u+)", sg->ref.index);
            else
                sb_add(b, "R(#*+)");
            break;
        case USP_PATH_SEG_SEARCH:
            sb_add(b, "S[");
            for (uint32_t k = 0; k < sg->search.ncmp; k++) {
                const struct usp_path_cmp *cm = &sg->search.cmp[k];
                if (k)
                    sb_add(b, " && ");
                dump_segs(b, cm->rel, cm->nrel);
                sb_add(b, " %s ", usp_path_op_str(cm->op));
                dump_value(b, cm);
            }
            sb_add(b, "]");
            break;
        default:
            sb_add(b, "?kind %d", (int)sg->kind);
        }
    }
}

static const char *dump(const struct usp_path *p, struct sb *b)
{
    static const struct {
        uint32_t flag;
        const char *name;
    } flags[] = {
        {USP_PATH_OBJECT, "OBJ"},        {USP_PATH_PARAM, "PARAM"},
        {USP_PATH_COMMAND, "CMD"},       {USP_PATH_EVENT, "EVT"},
        {USP_PATH_HAS_INSTANCE, "INST"}, {USP_PATH_HAS_WILDCARD, "WILD"},
        {USP_PATH_HAS_SEARCH, "SEARCH"}, {USP_PATH_HAS_SUPPORTED, "SUPP"},
        {USP_PATH_HAS_REF, "REF"},       {USP_PATH_NO_DOT, "NODOT"},
    };
    b->len = 0;
    b->buf[0] = '\0';
    dump_segs(b, p->seg, p->nseg);
    sb_add(b, " |");
    uint32_t rest = p->flags;
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (p->flags & flags[i].flag)
            sb_add(b, " %s", flags[i].name);
        rest &= ~flags[i].flag;
    }
    if (rest)
        sb_add(b, " ?%#x", rest);
    return b->buf;
}

static bool inside(const struct usp_path *p, const void *ptr, size_t n)
{
    const char *base = (const char *)p, *q = ptr;
    return q >= base && q + n <= base + p->size;
}

/* Every pointer of the parsed form points into its own block. */
static bool segs_contained(const struct usp_path *p, const struct usp_path_seg *seg, uint32_t n)
{
    if (!inside(p, seg, n * sizeof *seg))
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const struct usp_path_seg *sg = &seg[i];
        if ((sg->kind == USP_PATH_SEG_NAME || sg->kind == USP_PATH_SEG_COMMAND ||
             sg->kind == USP_PATH_SEG_EVENT) &&
            !inside(p, sg->name, sg->len + 1))
            return false;
        if (sg->kind != USP_PATH_SEG_SEARCH)
            continue;
        if (!inside(p, sg->search.cmp, sg->search.ncmp * sizeof *sg->search.cmp))
            return false;
        for (uint32_t k = 0; k < sg->search.ncmp; k++) {
            const struct usp_path_cmp *cm = &sg->search.cmp[k];
            if (!segs_contained(p, cm->rel, cm->nrel) || !inside(p, cm->value, cm->value_len + 1))
                return false;
        }
    }
    return true;
}

struct valid_case {
    const char *in;
    unsigned opts;
    const char *dump;
    const char *canon; /* NULL: the input itself */
};

static const struct valid_case valid[] = {
    /* Object and parameter paths. */
    {"Device.", 0, "N(Device) | OBJ", NULL},
    {"Device.IP.Interface.", 0, "N(Device) N(IP) N(Interface) | OBJ", NULL},
    {"Device.IP.Interface.1.", 0, "N(Device) N(IP) N(Interface) I(1) | OBJ INST", NULL},
    {"Device.IP.Interface.1.Name", 0, "N(Device) N(IP) N(Interface) I(1) N(Name) | PARAM INST",
     NULL},
    {"Device.DeviceInfo.SoftwareVersion", 0, "N(Device) N(DeviceInfo) N(SoftwareVersion) | PARAM",
     NULL},
    {"Device.IP.Interface.4294967295.IPv4Address.27.IPAddress", 0,
     "N(Device) N(IP) N(Interface) I(4294967295) N(IPv4Address) I(27) N(IPAddress) | PARAM INST",
     NULL},
    {"Device.IPv6rd.InterfaceSetting.10.", 0,
     "N(Device) N(IPv6rd) N(InterfaceSetting) I(10) | OBJ INST", NULL},
    {"Device.X_EXAMPLE-COM_Thing.Param_1-b", 0,
     "N(Device) N(X_EXAMPLE-COM_Thing) N(Param_1-b) | PARAM", NULL},
    {"_Root.x.", 0, "N(_Root) N(x) | OBJ", NULL},
    /* Supported paths. */
    {"Device.WiFi.AccessPoint.{i}.AssociatedDevice.{i}.", 0,
     "N(Device) N(WiFi) N(AccessPoint) {i} N(AssociatedDevice) {i} | OBJ SUPP", NULL},
    {"Device.WiFi.AccessPoint.{i}.AssociatedDevice.", 0,
     "N(Device) N(WiFi) N(AccessPoint) {i} N(AssociatedDevice) | OBJ SUPP", NULL},
    {"Device.IP.Interface.{i}.Name", 0, "N(Device) N(IP) N(Interface) {i} N(Name) | PARAM SUPP",
     NULL},
    {"Device.IP.Interface.1.IPv4Address.{i}.", 0,
     "N(Device) N(IP) N(Interface) I(1) N(IPv4Address) {i} | OBJ INST SUPP", NULL},
    {"Device.LocalAgent.Threshold.{i}.Triggered!", 0,
     "N(Device) N(LocalAgent) N(Threshold) {i} E(Triggered!) | EVT SUPP", NULL},
    {"Device.IP.Interface.{i}.Reset()", 0, "N(Device) N(IP) N(Interface) {i} C(Reset()) | CMD SUPP",
     NULL},
    /* Wildcards. */
    {"Device.IP.Interface.*.", 0, "N(Device) N(IP) N(Interface) * | OBJ WILD", NULL},
    {"Device.IP.Interface.*.Type", 0, "N(Device) N(IP) N(Interface) * N(Type) | PARAM WILD", NULL},
    {"Device.IP.Interface.*.IPv4Address.*.IPAddress", 0,
     "N(Device) N(IP) N(Interface) * N(IPv4Address) * N(IPAddress) | PARAM WILD", NULL},
    {"Device.IP.Interface.2.IPv4Address.*.", 0,
     "N(Device) N(IP) N(Interface) I(2) N(IPv4Address) * | OBJ INST WILD", NULL},
    /* Search expressions and unique-key addresses (TR-369 examples). */
    {"Device.WiFi.SSID.[Enable==true].", 0,
     "N(Device) N(WiFi) N(SSID) S[N(Enable) == l\"true\"] | OBJ SEARCH", NULL},
    {"Device.IP.Interface.[Type==\"Normal\"].Status", 0,
     "N(Device) N(IP) N(Interface) S[N(Type) == q\"Normal\"] N(Status) | PARAM SEARCH", NULL},
    {"Device.IP.Interface.[Type==\"Normal\"&&Stats.ErrorsSent>0].IPv4Address.[AddressingType=="
     "\"Static\"].IPAddress",
     0,
     "N(Device) N(IP) N(Interface) S[N(Type) == q\"Normal\" && N(Stats) N(ErrorsSent) > l\"0\"] "
     "N(IPv4Address) S[N(AddressingType) == q\"Static\"] N(IPAddress) | PARAM SEARCH",
     NULL},
    {"Device.NAT.PortMapping.[RemoteHost==\"\"&&ExternalPort==0&&Protocol==\"TCP\"].", 0,
     "N(Device) N(NAT) N(PortMapping) S[N(RemoteHost) == q\"\" && N(ExternalPort) == l\"0\" && "
     "N(Protocol) == q\"TCP\"] | OBJ SEARCH",
     NULL},
    {"Device.IP.Interface.[Name==\"eth0\"].IPv4Address.[Status==\"Enabled\"].IPAddress", 0,
     "N(Device) N(IP) N(Interface) S[N(Name) == q\"eth0\"] N(IPv4Address) S[N(Status) == "
     "q\"Enabled\"] N(IPAddress) | PARAM SEARCH",
     NULL},
    {"Device.IP.Interface.[Alias==\"WAN\"].", 0,
     "N(Device) N(IP) N(Interface) S[N(Alias) == q\"WAN\"] | OBJ SEARCH", NULL},
    {"Device.DSL.Line.[Enable==1].CurrentProfile", 0,
     "N(Device) N(DSL) N(Line) S[N(Enable) == l\"1\"] N(CurrentProfile) | PARAM SEARCH", NULL},
    {"Device.IP.Interface.*.IPv6Address.[ValidLifetime<2021-06-06T08:00:00Z].IPAddress", 0,
     "N(Device) N(IP) N(Interface) * N(IPv6Address) S[N(ValidLifetime) < "
     "l\"2021-06-06T08:00:00Z\"] N(IPAddress) | PARAM WILD SEARCH",
     NULL},
    {"Device.USB.USBHosts.Host.*.Device.[DeviceClass==08].", 0,
     "N(Device) N(USB) N(USBHosts) N(Host) * N(Device) S[N(DeviceClass) == l\"08\"] | OBJ WILD "
     "SEARCH",
     NULL},
    {"Device.PCP.Client.*.Server.[Capabilities~=\"IPv6Firewall\"].", 0,
     "N(Device) N(PCP) N(Client) * N(Server) S[N(Capabilities) ~= q\"IPv6Firewall\"] | OBJ WILD "
     "SEARCH",
     NULL},
    {"Device.PeriodicStatistics.SampleSet.[SampleSeconds~=5].", 0,
     "N(Device) N(PeriodicStatistics) N(SampleSet) S[N(SampleSeconds) ~= l\"5\"] | OBJ SEARCH",
     NULL},
    {"Device.X.[A!=1&&B<2&&C>3&&D<=4&&E>=5&&F~=6&&G==7].", 0,
     "N(Device) N(X) S[N(A) != l\"1\" && N(B) < l\"2\" && N(C) > l\"3\" && N(D) <= l\"4\" && N(E) "
     ">= l\"5\" && N(F) ~= l\"6\" && N(G) == l\"7\"] | OBJ SEARCH",
     NULL},
    {"Device.X.[Temp>-5&&Ratio<=1.5&&N>=+123&&T==0001-01-01T00:00:00Z&&H==0a_F].", 0,
     "N(Device) N(X) S[N(Temp) > l\"-5\" && N(Ratio) <= l\"1.5\" && N(N) >= l\"+123\" && N(T) == "
     "l\"0001-01-01T00:00:00Z\" && N(H) == l\"0a_F\"] | OBJ SEARCH",
     NULL},
    {"Device.X.[A==\"\"].", 0, "N(Device) N(X) S[N(A) == q\"\"] | OBJ SEARCH", NULL},
    /* Whitespace inside brackets, dropped by the canonical form. */
    {"Device.IP.Interface.[Type == \"Normal\"].Status", 0,
     "N(Device) N(IP) N(Interface) S[N(Type) == q\"Normal\"] N(Status) | PARAM SEARCH",
     "Device.IP.Interface.[Type==\"Normal\"].Status"},
    {"Device.IP.Interface.[ Type==\"Normal\"  &&  Stats.ErrorsSent >0 ].Name", 0,
     "N(Device) N(IP) N(Interface) S[N(Type) == q\"Normal\" && N(Stats) N(ErrorsSent) > l\"0\"] "
     "N(Name) | PARAM SEARCH",
     "Device.IP.Interface.[Type==\"Normal\"&&Stats.ErrorsSent>0].Name"},
    {"Device.X.[\tA\t<=\t1\t&&B!= \"x y\" ].", 0,
     "N(Device) N(X) S[N(A) <= l\"1\" && N(B) != q\"x y\"] | OBJ SEARCH",
     "Device.X.[A<=1&&B!=\"x y\"]."},
    /* %22 and %25 in strings, decoded; other text kept as it is. */
    {"Device.X.[Name==\"a%22b%25c\"].", 0, "N(Device) N(X) S[N(Name) == q\"a\"b%c\"] | OBJ SEARCH",
     NULL},
    {"Device.X.[Name==\"%25%22\"].", 0, "N(Device) N(X) S[N(Name) == q\"%\"\"] | OBJ SEARCH", NULL},
    {"Device.X.[Name==\"]&&[ ==\"&&B==1].", 0,
     "N(Device) N(X) S[N(Name) == q\"]&&[ ==\" && N(B) == l\"1\"] | OBJ SEARCH", NULL},
    {"Device.X.[Name==\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"].", 0,
     "N(Device) N(X) S[N(Name) == q\"caf\\xc3\\xa9 \\xe2\\x82\\xac \\xf0\\x9f\\x98\\x80\"] | OBJ "
     "SEARCH",
     NULL},
    {"Device.X.[Url==\"http://h/a?b=c&d=e#f\"].", 0,
     "N(Device) N(X) S[N(Url) == q\"http://h/a?b=c&d=e#f\"] | OBJ SEARCH", NULL},
    /* Reference following. */
    {"Device.NAT.PortMapping.1.Interface+.Name", 0,
     "N(Device) N(NAT) N(PortMapping) I(1) N(Interface) R(+) N(Name) | PARAM INST REF", NULL},
    {"Device.X.1.Refs#2+.Name", 0, "N(Device) N(X) I(1) N(Refs) R(#2+) N(Name) | PARAM INST REF",
     NULL},
    {"Device.X.1.Refs#*+.Name", 0, "N(Device) N(X) I(1) N(Refs) R(#*+) N(Name) | PARAM INST REF",
     NULL},
    {"Device.WiFi.SSID.*.LowerLayers#*+.Stats.BytesSent", 0,
     "N(Device) N(WiFi) N(SSID) * N(LowerLayers) R(#*+) N(Stats) N(BytesSent) | PARAM WILD REF",
     NULL},
    {"Device.A.1.Ref+.Table.2.Param", 0,
     "N(Device) N(A) I(1) N(Ref) R(+) N(Table) I(2) N(Param) | PARAM INST REF", NULL},
    {"Device.A.1.Ref+.Child.", 0, "N(Device) N(A) I(1) N(Ref) R(+) N(Child) | OBJ INST REF", NULL},
    {"Device.A.1.Ref+.Reset()", 0, "N(Device) N(A) I(1) N(Ref) R(+) C(Reset()) | CMD INST REF",
     NULL},
    {"Device.A.Ref+.B+.C", 0, "N(Device) N(A) N(Ref) R(+) N(B) R(+) N(C) | PARAM REF", NULL},
    {"Device.NAT.PortMapping.[Interface+.Name==\"eth0\"].Enable", 0,
     "N(Device) N(NAT) N(PortMapping) S[N(Interface) R(+) N(Name) == q\"eth0\"] N(Enable) | PARAM "
     "SEARCH",
     NULL},
    {"Device.X.[Refs#3+.Type==\"a\"&&Refs#*+.Up==true].", 0,
     "N(Device) N(X) S[N(Refs) R(#3+) N(Type) == q\"a\" && N(Refs) R(#*+) N(Up) == l\"true\"] | "
     "OBJ "
     "SEARCH",
     NULL},
    {"Device.IP.Interface.[Name==\"eth0\"].LowerLayers+.Name", 0,
     "N(Device) N(IP) N(Interface) S[N(Name) == q\"eth0\"] N(LowerLayers) R(+) N(Name) | PARAM "
     "SEARCH REF",
     NULL},
    /* Commands and events. */
    {"Device.Reboot()", 0, "N(Device) C(Reboot()) | CMD", NULL},
    {"Device.IP.Interface.[Name==\"eth0\"].Reset()", 0,
     "N(Device) N(IP) N(Interface) S[N(Name) == q\"eth0\"] C(Reset()) | CMD SEARCH", NULL},
    {"Device.LocalAgent.Request.3.Cancel()", 0,
     "N(Device) N(LocalAgent) N(Request) I(3) C(Cancel()) | CMD INST", NULL},
    {"Device.Boot!", 0, "N(Device) E(Boot!) | EVT", NULL},
    {"Device.LocalAgent.Periodic!", 0, "N(Device) N(LocalAgent) E(Periodic!) | EVT", NULL},
    {"Device.LocalAgent.Threshold.*.Triggered!", 0,
     "N(Device) N(LocalAgent) N(Threshold) * E(Triggered!) | EVT WILD", NULL},
    /* Reference values: object paths without the final '.'. */
    {"Device.IP.Interface.1", USP_PATH_OPT_REFERENCE,
     "N(Device) N(IP) N(Interface) I(1) | OBJ INST NODOT", NULL},
    {"Device.IP.Interface.[Name==\"eth0\"]", USP_PATH_OPT_REFERENCE,
     "N(Device) N(IP) N(Interface) S[N(Name) == q\"eth0\"] | OBJ SEARCH NODOT", NULL},
    {"Device.IP.Interface.1.", USP_PATH_OPT_REFERENCE,
     "N(Device) N(IP) N(Interface) I(1) | OBJ INST", NULL},
    {"Device.DeviceInfo", USP_PATH_OPT_REFERENCE, "N(Device) N(DeviceInfo) | PARAM", NULL},
};

static void test_valid(void)
{
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        const struct valid_case *c = &valid[i];
        struct usp_path *p = NULL;
        struct usp_path_err err;
        struct sb b;
        int rc = usp_path_parse_n(c->in, strlen(c->in), c->opts, &p, &err);
        if (rc) {
            printf("\n  %s: rc %d: %s\n", c->in, rc, err.msg);
            CU_FAIL("valid path rejected");
            continue;
        }
        CU_ASSERT_EQUAL(err.usp_code, 0);
        const char *got = dump(p, &b);
        if (strcmp(got, c->dump) != 0) {
            printf("\n  %s\n  got  %s\n  want %s\n", c->in, got, c->dump);
            CU_FAIL("parsed structure differs");
        }
        CU_ASSERT_TRUE(segs_contained(p, p->seg, p->nseg));
        CU_ASSERT_EQUAL(p->seg[0].kind, USP_PATH_SEG_NAME);
        usp_path_free(p);
    }
}

/* The form without options agrees with usp_path_parse. */
static void test_parse_nul_terminated(void)
{
    struct usp_path *p = NULL;
    struct usp_path_err err;
    struct sb b;
    CU_ASSERT_EQUAL_FATAL(usp_path_parse("Device.IP.Interface.*.Name", &p, &err), 0);
    CU_ASSERT_STRING_EQUAL(dump(p, &b), "N(Device) N(IP) N(Interface) * N(Name) | PARAM WILD");
    usp_path_free(p);
    /* err may be NULL. */
    CU_ASSERT_EQUAL(usp_path_parse("Device..", &p, NULL), USP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(usp_path_parse(NULL, &p, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.usp_code, USP_ERR_INVALID_PATH_SYNTAX);
    CU_ASSERT_PTR_NULL(p);
    usp_path_free(NULL);
}

struct invalid_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    unsigned opts;
    size_t pos;
    const char *msg; /* a part of the message */
};

static const struct invalid_case invalid[] = {
    {"", 0, 0, 0, "empty path"},
    {".", 0, 0, 0, "expected name at start of path"},
    {".Device.", 0, 0, 0, "expected name at start of path"},
    {"1.Device.", 0, 0, 0, "expected name at start of path"},
    {"*.X", 0, 0, 0, "expected name at start of path"},
    {" Device.", 0, 0, 0, "expected name at start of path"},
    {"Device", 0, 0, 6, "expected '.' after the first name"},
    {"Reboot()", 0, 0, 6, "expected '.' after the first name"},
    {"Device.1.", 0, 0, 7, "expected name after '.'"},
    {"Device..X", 0, 0, 7, "expected name after '.'"},
    {"Device. IP.", 0, 0, 7, "expected name after '.'"},
    {"Device.-X.", 0, 0, 7, "expected name after '.'"},
    {"Device.IP..", 0, 0, 10, "expected name, '*', instance number, '[' or '{i}' after '.'"},
    {"Device.X.-1.", 0, 0, 9, "expected name, '*', instance number, '[' or '{i}' after '.'"},
    {"Device.IP.Interface.1.2.", 0, 0, 22, "expected name after '.'"},
    {"Device.IP.Interface.*.*.", 0, 0, 22, "expected name after '.'"},
    {"Device.IP.Interface.0.", 0, 0, 20, "instance number 0"},
    {"Device.IP.Interface.01.", 0, 0, 20, "instance number with a leading zero"},
    {"Device.IP.Interface.00.", 0, 0, 20, "leading zero"},
    {"Device.IP.Interface.4294967296.", 0, 0, 20, "instance number larger than 4294967295"},
    {"Device.IP.Interface.99999999999999999999999.", 0, 0, 20, "larger than"},
    {"Device.IP.Interface.1", 0, 0, 21, "expected '.' after instance number"},
    {"Device.IP.Interface.1x.", 0, 0, 21, "expected '.' after instance number"},
    {"Device.IP.Interface.*", 0, 0, 21, "expected '.' after '*'"},
    {"Device.IP.Interface.**.", 0, 0, 21, "expected '.' after '*'"},
    {"Device.IP.Interface.[Name==\"eth0\"]", 0, 0, 34, "expected '.' after search expression"},
    {"Device.IP.Interface.[Name==\"eth0\"] .", 0, 0, 34, "expected '.' after search expression"},
    {"Device.X.[A==1]].", 0, 0, 15, "expected '.' after search expression"},
    {"Device.X.{i}", 0, 0, 12, "expected '.' after '{i}'"},
    /* Search expressions. */
    {"Device.IP.Interface.[Name==\"eth0\"", 0, 0, 33, "expected '&&' or ']'"},
    {"Device.IP.Interface.[Name==eth0.", 0, 0, 32, "expected '&&' or ']'"},
    {"Device.IP.Interface.[", 0, 0, 21, "expected parameter name in search expression"},
    {"Device.IP.Interface.[].", 0, 0, 21, "empty search expression"},
    {"Device.IP.Interface.[  ].", 0, 0, 23, "empty search expression"},
    {"Device.IP.Interface.[Name=\"eth0\"].", 0, 0, 25,
     "expected operator ==, !=, ~=, <, >, <= or >="},
    {"Device.X.[A=<1].", 0, 0, 11, "expected operator"},
    {"Device.X.[A=!1].", 0, 0, 11, "expected operator"},
    {"Device.X.[A 1].", 0, 0, 12, "expected operator"},
    {"Device.X.[A<>1].", 0, 0, 12, "expected value"},
    {"Device.X.[A===1].", 0, 0, 13, "expected value"},
    {"Device.X.[A==].", 0, 0, 13, "expected value"},
    {"Device.X.[A==", 0, 0, 13, "expected value"},
    {"Device.X.[A==\"a\"||B==\"b\"].", 0, 0, 16, "expected '&&' or ']'"},
    {"Device.X.[A==1||B==2].", 0, 0, 14, "expected '&&' or ']'"},
    {"Device.X.[A==1&B==2].", 0, 0, 14, "expected '&&' or ']'"},
    {"Device.X.[A==\"a\",B==\"b\"].", 0, 0, 16, "expected '&&' or ']'"},
    {"Device.X.[A==1 B==2].", 0, 0, 15, "expected '&&' or ']'"},
    {"Device.X.[A==\"a\"b\"].", 0, 0, 16, "expected '&&' or ']'"},
    {"Device.X.[A==x%41].", 0, 0, 14, "expected '&&' or ']'"},
    {"Device.X.[A==1&&].", 0, 0, 16, "expected parameter name in search expression"},
    {"Device.X.[&&A==1].", 0, 0, 10, "expected parameter name in search expression"},
    {"Device.X.[==1].", 0, 0, 10, "expected parameter name in search expression"},
    {"Device.X.[[A==1]].", 0, 0, 10, "expected parameter name in search expression"},
    {"Device.X.[1==1].", 0, 0, 10, "expected parameter name in search expression"},
    {"Device.X.[A.*.B==1].", 0, 0, 12, "expected parameter name after '.' in search expression"},
    {"Device.X.[A.1.B==1].", 0, 0, 12, "cannot descend into a child table"},
    {"Device.X.[A.==1].", 0, 0, 12, "expected parameter name after '.'"},
    {"Device.X.[A+==1].", 0, 0, 12, "expected '.' after reference following '+'"},
    {"Device.X.[A#0+.B==1].", 0, 0, 12, "reference index 0"},
    {"Device.X.[A+.==1].", 0, 0, 13, "expected name after reference following '+.'"},
    {"Device.X.[A()==1].", 0, 0, 11, "expected operator"},
    {"Device.X.[A==\"%2\"].", 0, 0, 14, "invalid escape in string value"},
    {"Device.X.[A==\"%2", 0, 0, 14, "invalid escape in string value"},
    {"Device.X.[A==\"%41\"].", 0, 0, 14, "only %22 and %25 are allowed"},
    {"Device.X.[A==\"ab%\"].", 0, 0, 16, "invalid escape"},
    {"Device.X.[A==\"abc", 0, 0, 17, "expected '\"' closing the string opened at position 13"},
    {"Device.X.[A==\"abc]", 0, 0, 18, "closing the string"},
    {"Device.X.[A==\"a\x01\"].", 0, 0, 15, "control character in string value"},
    {"Device.X.[A==\"a\tb\"].", 0, 0, 15, "control character in string value"},
    {"Device.X.[A==\"\xff\"].", 0, 0, 14, "invalid UTF-8 in string value"},
    {"Device.X.[A==\"\xc0\x80\"].", 0, 0, 14, "invalid UTF-8"},
    {"Device.X.[A==\"\xed\xa0\x80\"].", 0, 0, 14, "invalid UTF-8"},
    {"Device.X.[A==\"\xe2\x82\"].", 0, 0, 14, "invalid UTF-8"},
    {"Device.X.{Type==\"x\"}.", 0, 0, 9, "expected '{i}' (search expressions use '[...]')"},
    {"Device.X.{j}.", 0, 0, 9, "expected '{i}'"},
    {"Device.X.{i.", 0, 0, 9, "expected '{i}'"},
    /* Commands and events only last. */
    {"Device.Reboot().X", 0, 0, 15, "expected end of path after command '()'"},
    {"Device.X.Reboot().", 0, 0, 17, "expected end of path after command '()'"},
    {"Device.Reboot(", 0, 0, 14, "expected ')' after '('"},
    {"Device.Reboot(x)", 0, 0, 14, "expected ')' after '('"},
    {"Device.X.1()", 0, 0, 10, "expected '.' after instance number"},
    {"Device.Boot!.X", 0, 0, 12, "expected end of path after event '!'"},
    {"Device.Bo!ot", 0, 0, 10, "expected end of path after event '!'"},
    {"Device.Boot!!", 0, 0, 12, "expected end of path after event '!'"},
    /* Reference following. */
    {"Device.X.1.Ref#0+.Name", 0, 0, 15, "reference index 0"},
    {"Device.X.1.Ref#01+.Name", 0, 0, 15, "reference index with a leading zero"},
    {"Device.X.1.Ref#4294967296+.Name", 0, 0, 15, "reference index larger than 4294967295"},
    {"Device.X.1.Ref#+.Name", 0, 0, 15, "expected index number or '*' after '#'"},
    {"Device.X.1.Ref#.Name", 0, 0, 15, "expected index number or '*' after '#'"},
    {"Device.X.1.Ref#2.Name", 0, 0, 16, "expected '+' after the reference index"},
    {"Device.X.1.Ref#*.Name", 0, 0, 16, "expected '+' after the reference index"},
    {"Device.X.1.Ref+Name", 0, 0, 15, "expected '.' after reference following '+'"},
    {"Device.X.1.Ref+", 0, 0, 15, "expected '.' after reference following '+'"},
    {"Device.X.1.Ref++.Name", 0, 0, 15, "expected '.' after reference following '+'"},
    {"Device.X.1.Ref+.", 0, 0, 16, "expected name after reference following '+.'"},
    {"Device.X.1.Ref+.1.", 0, 0, 16, "expected name after reference following '+.'"},
    {"Device.X.1.Ref+.*.", 0, 0, 16, "expected name after reference following '+.'"},
    {"Device+.X", 0, 0, 6, "expected '.' after the first name"},
    /* '{i}' does not mix with searches. */
    {"Device.X.{i}.Ref+.Name", 0, 0, 16, "'{i}' cannot be combined"},
    {"Device.X.*.Y.{i}.", 0, 0, 13, "'{i}' cannot be combined"},
    {"Device.X.{i}.Y.*.", 0, 0, 15, "'{i}' cannot be combined"},
    {"Device.X.{i}.Y.[A==1].", 0, 0, 15, "'{i}' cannot be combined"},
    {"Device.X.[A==1].Y.{i}.", 0, 0, 18, "'{i}' cannot be combined"},
    {"Device.X.Ref+.Y.{i}.", 0, 0, 16, "'{i}' cannot be combined"},
    /* Stray characters. */
    {"Device.IP .X", 0, 0, 9, "expected '.', '()', '!', '+', '#' or end of path after name"},
    {"Device.IP.Interface.1.Name extra", 0, 0, 26, "or end of path after name"},
    {"Device.IP.Interface.1.Name\n", 0, 0, 26, "or end of path after name"},
    {"Device.IP$.X", 0, 0, 9, "or end of path after name"},
    {"Device.Caf\xc3\xa9.", 0, 0, 10, "or end of path after name"},
    {"Device.X/Y", 0, 0, 8, "or end of path after name"},
    {"Device.A\0B", 10, 0, 8, "or end of path after name"},
    {"Device.\0", 8, 0, 7, "expected name after '.'"},
    /* The reference option does not relax anything else. */
    {"Device.IP.Interface.1x", 0, USP_PATH_OPT_REFERENCE, 21, "expected '.' after instance number"},
    {"Device.IP.Interface.1.2", 0, USP_PATH_OPT_REFERENCE, 22, "expected name after '.'"},
    {"Device.IP.Interface.{i}", 0, 0, 23, "expected '.' after '{i}'"},
};

static struct usp_path sentinel;

static void test_invalid(void)
{
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        const struct invalid_case *c = &invalid[i];
        size_t len = c->len ? c->len : strlen(c->in);
        struct usp_path *p = &sentinel; /* must come back NULL */
        struct usp_path_err err;
        int rc = usp_path_parse_n(c->in, len, c->opts, &p, &err);
        if (rc != USP_EINVAL) {
            printf("\n  %s: rc %d, expected USP_EINVAL\n", c->in, rc);
            CU_FAIL("invalid path accepted");
            if (!rc)
                usp_path_free(p);
            continue;
        }
        CU_ASSERT_PTR_NULL(p);
        CU_ASSERT_EQUAL(err.usp_code, USP_ERR_INVALID_PATH_SYNTAX);
        char tail[40];
        snprintf(tail, sizeof tail, " at position %zu", c->pos);
        size_t ml = strlen(err.msg), tl = strlen(tail);
        if (err.pos != c->pos || !strstr(err.msg, c->msg) || ml < tl ||
            strcmp(err.msg + ml - tl, tail) != 0) {
            printf("\n  %s\n  got  pos %zu: %s\n  want pos %zu: ...%s...\n", c->in, err.pos,
                   err.msg, c->pos, c->msg);
            CU_FAIL("wrong error position or message");
        }
    }
}

/* The canonical text parses back to the same structure and text. */
static void test_format_round_trip(void)
{
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        const struct valid_case *c = &valid[i];
        struct usp_path *p = NULL, *q = NULL;
        struct sb b1, b2;
        char text[1024], again[1024];
        size_t len = 0;
        if (usp_path_parse_n(c->in, strlen(c->in), c->opts, &p, NULL)) {
            CU_FAIL("valid path rejected");
            continue;
        }
        CU_ASSERT_EQUAL(usp_path_format(p, text, sizeof text, &len), 0);
        CU_ASSERT_EQUAL(len, strlen(text));
        const char *want = c->canon ? c->canon : c->in;
        if (strcmp(text, want) != 0) {
            printf("\n  %s\n  got  %s\n  want %s\n", c->in, text, want);
            CU_FAIL("canonical text differs");
        }
        CU_ASSERT_EQUAL_FATAL(usp_path_parse_n(text, len, c->opts, &q, NULL), 0);
        CU_ASSERT_STRING_EQUAL(dump(q, &b2), dump(p, &b1));
        CU_ASSERT_EQUAL(usp_path_format(q, again, sizeof again, NULL), 0);
        CU_ASSERT_STRING_EQUAL(again, text);
        CU_ASSERT_EQUAL(q->size, p->size);
        usp_path_free(q);
        usp_path_free(p);
    }
}

static void test_format_buffers(void)
{
    const char *in = "Device.X.[A==\"q%22p\"].Y";
    struct usp_path *p = NULL;
    char buf[64];
    size_t len = 0;
    CU_ASSERT_EQUAL_FATAL(usp_path_parse(in, &p, NULL), 0);
    size_t n = strlen(in);
    /* Measuring with no buffer. */
    CU_ASSERT_EQUAL(usp_path_format(p, NULL, 0, &len), USP_ERANGE);
    CU_ASSERT_EQUAL(len, n);
    /* Exactly enough, one short, tiny. */
    CU_ASSERT_EQUAL(usp_path_format(p, buf, n + 1, &len), 0);
    CU_ASSERT_STRING_EQUAL(buf, in);
    memset(buf, 'x', sizeof buf);
    CU_ASSERT_EQUAL(usp_path_format(p, buf, n, &len), USP_ERANGE);
    CU_ASSERT_EQUAL(len, n);
    CU_ASSERT_EQUAL(strlen(buf), n - 1);
    CU_ASSERT_EQUAL(strncmp(buf, in, n - 1), 0);
    CU_ASSERT_EQUAL(usp_path_format(p, buf, 1, NULL), USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(buf, "");
    /* Truncation inside an escape still leaves a terminated prefix. */
    CU_ASSERT_EQUAL(usp_path_format(p, buf, 17, NULL), USP_ERANGE);
    CU_ASSERT_STRING_EQUAL(buf, "Device.X.[A==\"q%");
    usp_path_free(p);
}

static void test_supported_form(void)
{
    static const struct {
        const char *in;
        unsigned opts;
        const char *want;
    } cases[] = {
        {"Device.IP.Interface.1.Name", 0, "Device.IP.Interface.{i}.Name"},
        {"Device.IP.Interface.[Type==\"Normal\"].Name", 0, "Device.IP.Interface.{i}.Name"},
        {"Device.IP.Interface.*.IPv4Address.[A==1&&B==\"x\"].Reset()", 0,
         "Device.IP.Interface.{i}.IPv4Address.{i}.Reset()"},
        {"Device.IP.Interface.", 0, "Device.IP.Interface."},
        {"Device.IP.Interface.7.", 0, "Device.IP.Interface.{i}."},
        {"Device.WiFi.AccessPoint.{i}.AssociatedDevice.", 0,
         "Device.WiFi.AccessPoint.{i}.AssociatedDevice."},
        {"Device.IP.Interface.2.IPv4Address.{i}.", 0, "Device.IP.Interface.{i}.IPv4Address.{i}."},
        {"Device.LocalAgent.Threshold.3.Triggered!", 0,
         "Device.LocalAgent.Threshold.{i}.Triggered!"},
        {"Device.Boot!", 0, "Device.Boot!"},
        {"Device.IP.Interface.1", USP_PATH_OPT_REFERENCE, "Device.IP.Interface.{i}."},
        {"Device.IP.Interface.[Name==\"a\"]", USP_PATH_OPT_REFERENCE, "Device.IP.Interface.{i}."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct usp_path *p = NULL;
        char buf[256];
        size_t len = 0;
        if (usp_path_parse_n(cases[i].in, strlen(cases[i].in), cases[i].opts, &p, NULL)) {
            CU_FAIL("valid path rejected");
            continue;
        }
        CU_ASSERT_EQUAL(usp_path_supported_form(p, buf, sizeof buf, &len), 0);
        CU_ASSERT_STRING_EQUAL(buf, cases[i].want);
        CU_ASSERT_EQUAL(len, strlen(cases[i].want));
        /* Too small: USP_ERANGE with the length needed. */
        CU_ASSERT_EQUAL(usp_path_supported_form(p, buf, len, &len), USP_ERANGE);
        CU_ASSERT_EQUAL(len, strlen(cases[i].want));
        usp_path_free(p);
    }
    /* Reference following has no static supported form. */
    struct usp_path *p = NULL;
    char buf[64] = "junk";
    size_t len = 99;
    CU_ASSERT_EQUAL_FATAL(usp_path_parse("Device.NAT.PortMapping.1.Interface+.Name", &p, NULL), 0);
    CU_ASSERT_EQUAL(usp_path_supported_form(p, buf, sizeof buf, &len), USP_EINVAL);
    CU_ASSERT_STRING_EQUAL(buf, "");
    CU_ASSERT_EQUAL(len, 0);
    usp_path_free(p);
    /* A reference inside a search expression is only a condition. */
    CU_ASSERT_EQUAL_FATAL(
        usp_path_parse("Device.NAT.PortMapping.[Interface+.Name==\"x\"].", &p, NULL), 0);
    CU_ASSERT_EQUAL(usp_path_supported_form(p, buf, sizeof buf, NULL), 0);
    CU_ASSERT_STRING_EQUAL(buf, "Device.NAT.PortMapping.{i}.");
    usp_path_free(p);
}

static void test_parse_buf(void)
{
    const char *in = "Device.IP.Interface.[Type==\"Normal\"&&Stats.ErrorsSent>0].IPv4Address.1.";
    size_t n = strlen(in), need = 0;
    struct usp_path *p = NULL, *heap = NULL;
    struct usp_path_err err;
    struct sb b1, b2;
    alignas(max_align_t) unsigned char buf[1024];

    /* Measure, then parse into the caller's memory. */
    CU_ASSERT_EQUAL(usp_path_parse_buf(in, n, 0, NULL, 0, &need, &p, &err), USP_ERANGE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_TRUE_FATAL(need > 0 && need <= sizeof buf);
    CU_ASSERT_EQUAL(usp_path_parse_buf(in, n, 0, buf, need - 1, &need, &p, &err), USP_ERANGE);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(usp_path_parse_buf(in, n, 0, buf, need, NULL, &p, &err), 0);
    CU_ASSERT_PTR_EQUAL(p, (void *)buf);
    CU_ASSERT_EQUAL(p->size, need);
    CU_ASSERT_TRUE(segs_contained(p, p->seg, p->nseg));
    /* The same structure as the malloc'd form, of the same size. */
    CU_ASSERT_EQUAL_FATAL(usp_path_parse(in, &heap, NULL), 0);
    CU_ASSERT_EQUAL(heap->size, need);
    CU_ASSERT_STRING_EQUAL(dump(p, &b1), dump(heap, &b2));
    usp_path_free(heap);

    /* A buffer not aligned for the struct is refused. */
    CU_ASSERT_EQUAL(usp_path_parse_buf(in, n, 0, buf + 1, sizeof buf - 1, NULL, &p, &err),
                    USP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
    /* Syntax errors come first, whatever the buffer. */
    need = 12345;
    CU_ASSERT_EQUAL(usp_path_parse_buf("Device..", 8, 0, NULL, 0, &need, &p, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.usp_code, USP_ERR_INVALID_PATH_SYNTAX);
    CU_ASSERT_EQUAL(err.pos, 7);
    CU_ASSERT_EQUAL(need, 12345);
}

/* One block of exactly the bytes needed: header, segments, strings. */
static void test_compact(void)
{
    struct usp_path *p = NULL;
    CU_ASSERT_EQUAL_FATAL(usp_path_parse("Device.IP.Interface.1.Name", &p, NULL), 0);
    size_t strings = sizeof "Device" + sizeof "IP" + sizeof "Interface" + sizeof "Name";
    CU_ASSERT_EQUAL(p->size,
                    offsetof(struct usp_path, seg) + 5 * sizeof(struct usp_path_seg) + strings);
    usp_path_free(p);
}

static void test_search_fields(void)
{
    struct usp_path *p = NULL;
    CU_ASSERT_EQUAL_FATAL(
        usp_path_parse("Device.X.[Ref#2+.Name==\"x%22y%25\" && N >= -7].Z", &p, NULL), 0);
    CU_ASSERT_EQUAL_FATAL(p->nseg, 4);
    const struct usp_path_seg *s = &p->seg[2];
    CU_ASSERT_EQUAL_FATAL(s->kind, USP_PATH_SEG_SEARCH);
    CU_ASSERT_EQUAL_FATAL(s->search.ncmp, 2);
    const struct usp_path_cmp *c = &s->search.cmp[0];
    CU_ASSERT_EQUAL_FATAL(c->nrel, 3);
    CU_ASSERT_EQUAL(c->rel[0].kind, USP_PATH_SEG_NAME);
    CU_ASSERT_STRING_EQUAL(c->rel[0].name, "Ref");
    CU_ASSERT_EQUAL(c->rel[0].len, 3);
    CU_ASSERT_EQUAL(c->rel[1].kind, USP_PATH_SEG_REF);
    CU_ASSERT_EQUAL(c->rel[1].ref.mode, USP_PATH_REF_INDEX);
    CU_ASSERT_EQUAL(c->rel[1].ref.index, 2);
    CU_ASSERT_STRING_EQUAL(c->rel[2].name, "Name");
    CU_ASSERT_EQUAL(c->op, USP_PATH_OP_EQ);
    CU_ASSERT_TRUE(c->quoted);
    CU_ASSERT_EQUAL(c->value_len, 4);
    CU_ASSERT_STRING_EQUAL(c->value, "x\"y%");
    c = &s->search.cmp[1];
    CU_ASSERT_EQUAL(c->nrel, 1);
    CU_ASSERT_STRING_EQUAL(c->rel[0].name, "N");
    CU_ASSERT_EQUAL(c->op, USP_PATH_OP_GE);
    CU_ASSERT_FALSE(c->quoted);
    CU_ASSERT_STRING_EQUAL(c->value, "-7");
    CU_ASSERT_EQUAL(p->seg[3].kind, USP_PATH_SEG_NAME);
    CU_ASSERT_STRING_EQUAL(p->seg[3].name, "Z");
    /* Separate comparisons do not share relative-path segments. */
    CU_ASSERT_TRUE(s->search.cmp[1].rel >= s->search.cmp[0].rel + 3);
    usp_path_free(p);
}

static void test_limits(void)
{
    static char buf[USP_PATH_MAX_LEN + 2];
    struct usp_path *p = NULL;
    struct usp_path_err err;

    /* Names: 256 characters pass, 257 do not, in a path or an expression. */
    memcpy(buf, "Device.", 7);
    memset(buf + 7, 'a', USP_PATH_NAME_MAX);
    CU_ASSERT_EQUAL(usp_path_parse_n(buf, 7 + USP_PATH_NAME_MAX, 0, &p, &err), 0);
    CU_ASSERT_EQUAL_FATAL(p ? p->seg[1].len : 0, USP_PATH_NAME_MAX);
    usp_path_free(p);
    buf[7 + USP_PATH_NAME_MAX] = 'a';
    CU_ASSERT_EQUAL(usp_path_parse_n(buf, 8 + USP_PATH_NAME_MAX, 0, &p, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.pos, 7);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "name longer than 256 characters"));
    memcpy(buf, "Device.X.[", 10);
    memset(buf + 10, 'b', USP_PATH_NAME_MAX + 1);
    memcpy(buf + 11 + USP_PATH_NAME_MAX, "==1].", 5);
    CU_ASSERT_EQUAL(usp_path_parse_n(buf, 16 + USP_PATH_NAME_MAX, 0, &p, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.pos, 10);

    /* The whole path: USP_PATH_MAX_LEN bytes pass, one more does not. */
    memcpy(buf, "Device.", 7);
    size_t n = 7;
    while (n + 2 <= USP_PATH_MAX_LEN) {
        memcpy(buf + n, "A.", 2);
        n += 2;
    }
    CU_ASSERT_EQUAL_FATAL(n, USP_PATH_MAX_LEN);
    CU_ASSERT_EQUAL(usp_path_parse_n(buf, n, 0, &p, &err), 0);
    CU_ASSERT_EQUAL(p ? p->nseg : 0, 1 + (USP_PATH_MAX_LEN - 7) / 2);
    usp_path_free(p);
    buf[n] = 'B';
    CU_ASSERT_EQUAL(usp_path_parse_n(buf, n + 1, 0, &p, &err), USP_EINVAL);
    CU_ASSERT_EQUAL(err.pos, USP_PATH_MAX_LEN);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "path longer than 65535 bytes"));
}

static void test_name_valid(void)
{
    static const char *good[] = {"Device", "_x", "a-b", "A1", "X_ACME-COM_Foo", "z"};
    static const char *bad[] = {"",    "1a", "-a",          "a.b", "a b", "Boot!",
                                "R()", "a+", "caf\xc3\xa9", "{i}", "*"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        CU_ASSERT_TRUE(usp_path_name_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CU_ASSERT_FALSE(usp_path_name_valid(bad[i], strlen(bad[i])));
    char name[USP_PATH_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    CU_ASSERT_TRUE(usp_path_name_valid(name, USP_PATH_NAME_MAX));
    CU_ASSERT_FALSE(usp_path_name_valid(name, USP_PATH_NAME_MAX + 1));
    CU_ASSERT_FALSE(usp_path_name_valid(NULL, 3));
    /* Only `len` bytes count. */
    CU_ASSERT_TRUE(usp_path_name_valid("Name.Other", 4));
}

static void test_predicates(void)
{
    static const struct {
        const char *in;
        bool search, instantiated, exact, supported;
    } cases[] = {
        {"Device.IP.Interface.1.Name", false, true, true, true},
        {"Device.IP.Interface.", false, true, true, true},
        {"Device.IP.Interface.*.", true, true, false, false},
        {"Device.IP.Interface.[Name==\"a\"].", true, true, false, false},
        {"Device.IP.Interface.{i}.", false, false, false, true},
        {"Device.A.1.Ref+.B", false, true, false, false},
        {"Device.Reboot()", false, true, true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct usp_path *p = NULL;
        if (usp_path_parse(cases[i].in, &p, NULL)) {
            CU_FAIL("valid path rejected");
            continue;
        }
        CU_ASSERT_EQUAL(usp_path_is_search(p), cases[i].search);
        CU_ASSERT_EQUAL(usp_path_is_instantiated(p), cases[i].instantiated);
        CU_ASSERT_EQUAL(usp_path_is_exact(p), cases[i].exact);
        CU_ASSERT_EQUAL(usp_path_is_supported(p), cases[i].supported);
        usp_path_free(p);
    }
    CU_ASSERT_STRING_EQUAL(usp_path_op_str(USP_PATH_OP_CONTAINS), "~=");
    CU_ASSERT_STRING_EQUAL(usp_path_op_str(USP_PATH_OP_LE), "<=");
    CU_ASSERT_PTR_NULL(usp_path_op_str((enum usp_path_op)99));
}

/* Every prefix and every one-byte change of the valid paths: a clean
 * result either way, errors inside the input, and accepted ones round-trip.
 * (A small deterministic relative of tests/fuzz/fuzz_path.c.) */
static void check_any(const char *s, size_t n, unsigned opts)
{
    struct usp_path *p = NULL, *q = NULL;
    struct usp_path_err err;
    char text[1024], again[1024];
    size_t len = 0;
    int rc = usp_path_parse_n(s, n, opts, &p, &err);
    if (rc) {
        CU_ASSERT_EQUAL(rc, USP_EINVAL);
        CU_ASSERT_EQUAL(err.usp_code, USP_ERR_INVALID_PATH_SYNTAX);
        CU_ASSERT_TRUE(err.pos <= n);
        CU_ASSERT_TRUE(err.msg[0] != '\0');
        return;
    }
    CU_ASSERT_TRUE(segs_contained(p, p->seg, p->nseg));
    CU_ASSERT_EQUAL_FATAL(usp_path_format(p, text, sizeof text, &len), 0);
    CU_ASSERT_EQUAL(usp_path_parse_n(text, len, opts, &q, &err), 0);
    if (q) {
        CU_ASSERT_EQUAL(usp_path_format(q, again, sizeof again, NULL), 0);
        CU_ASSERT_STRING_EQUAL(again, text);
        usp_path_free(q);
    }
    usp_path_free(p);
}

static void test_mutations(void)
{
    static const char subst[] = ".[]{}()!+#*&=<>~\"% \t0159aZ_-:\x80\xff";
    char buf[512];
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++) {
        const char *in = valid[i].in;
        size_t n = strlen(in);
        if (n >= sizeof buf)
            continue;
        for (size_t k = 0; k <= n; k++)
            check_any(in, k, valid[i].opts);
        for (size_t k = 0; k < n; k++) {
            for (size_t j = 0; j < sizeof subst - 1; j++) {
                memcpy(buf, in, n);
                buf[k] = subst[j];
                check_any(buf, n, valid[i].opts);
            }
        }
    }
}

void suite_path(void)
{
    USP_SUITE("path", USP_TEST(test_valid), USP_TEST(test_parse_nul_terminated),
              USP_TEST(test_invalid), USP_TEST(test_format_round_trip),
              USP_TEST(test_format_buffers), USP_TEST(test_supported_form),
              USP_TEST(test_parse_buf), USP_TEST(test_compact), USP_TEST(test_search_fields),
              USP_TEST(test_limits), USP_TEST(test_name_valid), USP_TEST(test_predicates),
              USP_TEST(test_mutations));
}
