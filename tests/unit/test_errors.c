/* USP error names against the tables of the shared USP notes, the
 * data-model and vendor ranges, and the C error texts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "usp/errors.h"

#define NOTES USP_SOURCE_DIR "/../shared/usp-notes.md"

/* Every "| 7xxx | Name |" row of the notes' error tables (section (e)),
 * ranges and unassigned rows aside, must match usp_err_name. */
static void test_names_match_notes(void)
{
    FILE *f = fopen(NOTES, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char line[512];
    int rows = 0, in_e = 0;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "## (e)", 6))
            in_e = 1;
        else if (!strncmp(line, "## ", 3))
            in_e = 0;
        unsigned code;
        char name[200];
        int used = 0;
        if (!in_e || sscanf(line, "| %u | %199[^|]|%n", &code, name, &used) != 2 || used == 0)
            continue;
        if (code < 7000 || code > 7199 || name[0] == '(')
            continue;
        size_t n = strlen(name);
        while (n && name[n - 1] == ' ')
            name[--n] = '\0';
        const char *got = usp_err_name(code);
        CU_ASSERT_PTR_NOT_NULL(got);
        if (got) {
            CU_ASSERT_STRING_EQUAL(got, name);
            if (strcmp(got, name))
                fprintf(stderr, "\n  %u: got \"%s\", notes say \"%s\"\n", code, got, name);
        }
        CU_ASSERT_TRUE(usp_err_known(code));
        rows++;
    }
    fclose(f);
    CU_ASSERT_EQUAL(rows, 32 + 7); /* 7000-7031 and 7100-7106 */
}

static void test_names_direct(void)
{
    CU_ASSERT_STRING_EQUAL(usp_err_name(USP_ERR_INVALID_PATH_SYNTAX), "Invalid path syntax");
    CU_ASSERT_STRING_EQUAL(usp_err_name(USP_ERR_RECORD_FIELD_INVALID), "Invalid Record value");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7000), "Message failed");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7031), "Path already registered");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7106), "Session Context not allowed");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7200), "Data model defined error");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7299), "Data model defined error");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7800), "Vendor defined error");
    CU_ASSERT_STRING_EQUAL(usp_err_name(7999), "Vendor defined error");
    static const uint32_t unknown[] = {0,    6999, 7032, 7099, 7107,
                                       7199, 7300, 7799, 8000, 4294967295u};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        CU_ASSERT_PTR_NULL(usp_err_name(unknown[i]));
        CU_ASSERT_FALSE(usp_err_known(unknown[i]));
    }
    int known = 0;
    for (uint32_t c = 7000; c < 8000; c++)
        known += usp_err_known(c);
    CU_ASSERT_EQUAL(known, 32 + 7 + 100 + 200);
}

static void test_strerror(void)
{
    const int codes[] = {USP_OK,     USP_ENOMEM, USP_EINVAL, USP_EDECODE, USP_EPROTO,
                         USP_ERANGE, USP_ENOENT, USP_EIO,    USP_EEXIST,  USP_EPERM};
    const size_t n = sizeof codes / sizeof codes[0];
    const char *unk = usp_strerror(-1000);
    CU_ASSERT_STRING_EQUAL(unk, "unknown error");
    CU_ASSERT_STRING_EQUAL(usp_strerror(USP_ENOMEM), "out of memory");
    for (size_t i = 0; i < n; i++) {
        const char *s = usp_strerror(codes[i]);
        CU_ASSERT_PTR_NOT_NULL_FATAL(s);
        CU_ASSERT(s[0] != '\0');
        CU_ASSERT_STRING_NOT_EQUAL(s, unk);
        for (size_t j = 0; j < i; j++)
            CU_ASSERT_STRING_NOT_EQUAL(s, usp_strerror(codes[j]));
    }
}

void suite_errors(void)
{
    USP_SUITE("errors", USP_TEST(test_names_match_notes), USP_TEST(test_names_direct),
              USP_TEST(test_strerror));
}
