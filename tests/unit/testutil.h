/* Small helpers shared by the unit tests. */
#ifndef USP_TESTUTIL_H
#define USP_TESTUTIL_H

#include <CUnit/CUnit.h>
#include <stdio.h>
#include <stdlib.h>

/* Adds a suite and its tests, aborting the run if CUnit cannot. */
#define USP_SUITE(name, ...)                                                                      \
    do {                                                                                          \
        CU_pSuite s_ = CU_add_suite(name, NULL, NULL);                                            \
        struct {                                                                                  \
            const char *n;                                                                        \
            CU_TestFunc f;                                                                        \
        } t_[] = {__VA_ARGS__};                                                                   \
        for (size_t i_ = 0; s_ && i_ < sizeof t_ / sizeof t_[0]; i_++)                            \
            if (!CU_add_test(s_, t_[i_].n, t_[i_].f))                                             \
                s_ = NULL;                                                                        \
        if (!s_) {                                                                                \
            fprintf(stderr, "cannot register suite %s\n", name);                                  \
            exit(2);                                                                              \
        }                                                                                         \
    } while (0)
#define USP_TEST(fn) {#fn, fn}

/* Path of a file in the source tree (tests run from anywhere). */
#ifndef USP_SOURCE_DIR
#define USP_SOURCE_DIR "."
#endif
#define USP_SRC(rel) USP_SOURCE_DIR "/" rel
/* The shared reference data sits beside the project; tests only. */
#define USP_REF(rel) USP_SOURCE_DIR "/../shared/reference/" rel

#endif
