# uspsim build. `make` builds build/uspsim and build/libusp.a; `make test` runs
# every test; `make demo` shows the main job. See README.md.

CC       ?= cc
CLANG    ?= clang
PKGS     := libprotobuf-c libxml-2.0 libuv openssl libmosquitto libedit libwebsockets libcoap-3-openssl
TEST_PKGS:= cunit

# Sanitizer builds go to their own folder so objects never mix.
ifneq ($(SANITIZE),)
SANFLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
BUILD    ?= build/san
endif
BUILD    ?= build

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wstrict-prototypes
CSTD     := -std=c11 -D_GNU_SOURCE
OPT      ?= -O2 -g
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TEST_CFLAGS:= $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS  := $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)
CPPFLAGS += -Ilib/include -Ilib -I$(BUILD)/gen -DUSPSIM_VERSION='"$(VERSION)"'
CFLAGS   += $(CSTD) $(WARN) $(OPT) $(SANFLAGS) $(PKG_CFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   += $(PKG_LIBS) -lm -lpthread

PROTOS    := $(wildcard proto/*.proto)
GEN_SRCS  := $(patsubst proto/%.proto,$(BUILD)/gen/%.pb-c.c,$(PROTOS))
GEN_HDRS  := $(GEN_SRCS:.c=.h)
LIB_SRCS  ?= $(wildcard lib/*.c)
SIM_SRCS  ?= $(wildcard sim/*.c)
UNIT_SRCS ?= $(wildcard tests/unit/test_*.c)
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)

LIB_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRCS)) $(patsubst $(BUILD)/gen/%.c,$(BUILD)/obj/gen/%.o,$(GEN_SRCS))
SIM_OBJS  := $(patsubst %.c,$(BUILD)/obj/%.o,$(SIM_SRCS))
UNIT_OBJS := $(patsubst %.c,$(BUILD)/obj/%.o,$(UNIT_SRCS) tests/unit/runner.c)

.PHONY: all deps test unit integration fuzz fuzz-short wire demo clean format datamodels bench certs
.DEFAULT_GOAL := all
# Keep generated sources and headers: other tools include them from build/.
.SECONDARY:

all: deps $(BUILD)/libusp.a $(BUILD)/uspsim

# Installs missing Debian packages (idempotent; quick when all are present).
# NO_DEPS=1 skips the check, e.g. inside a build that already ran it.
deps:
ifeq ($(NO_DEPS),)
	@sh .ci/install-deps
endif

$(BUILD)/gen/%.pb-c.c $(BUILD)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(BUILD)/gen
	protoc-c --proto_path=proto --c_out=$(BUILD)/gen $<

# Every object may include generated headers: make sure they exist first.
$(BUILD)/obj/%.o: %.c | $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# Generated code is not ours to lint: relax the warnings that protoc-c trips.
$(BUILD)/obj/gen/%.o: $(BUILD)/gen/%.c | $(GEN_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-shadow -c -o $@ $<

$(BUILD)/libusp.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/uspsim: $(SIM_OBJS) $(BUILD)/libusp.a
	$(CC) $(LDFLAGS) -o $@ $(SIM_OBJS) $(BUILD)/libusp.a $(LDLIBS)

# The unit-test runner calls every `void suite_NAME(void)` found in the test
# sources, so adding a test file needs no edit anywhere else.
$(BUILD)/gen/suites.h: $(UNIT_SRCS)
	@mkdir -p $(dir $@)
	@sed -n 's/^void \(suite_[A-Za-z0-9_]*\)(void)$$/\1/p' $(UNIT_SRCS) | sort -u | \
	  awk '{d = d "void " $$1 "(void);\n"; c = c "    " $$1 "();\n"} \
	       END {printf "%s#define USP_CALL_SUITES() do { \\\n", d; \
	            n = split(c, L, "\n"); for (i = 1; i < n; i++) printf "%s \\\n", L[i]; \
	            printf "} while (0)\n"}' > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/tests/unit/%.o: CFLAGS += $(TEST_CFLAGS) -DUSP_SOURCE_DIR='"$(CURDIR)"'
$(BUILD)/obj/tests/unit/runner.o: $(BUILD)/gen/suites.h

$(BUILD)/unit_tests: $(UNIT_OBJS) $(BUILD)/libusp.a
	$(CC) $(LDFLAGS) -o $@ $(UNIT_OBJS) $(BUILD)/libusp.a $(LDLIBS) $(TEST_LIBS)

unit: deps $(BUILD)/unit_tests
	$(BUILD)/unit_tests

integration: all
	@sh tests/integration/run-all $(BUILD)

wire: all
	@sh tests/wire/run $(BUILD)

# libFuzzer targets, built with clang into their own folder: the library is
# compiled once with coverage instrumentation, each target links against it.
FUZZ_DIR    := build/fuzz
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := $(CSTD) -g -O1 $(FUZZ_SAN) -Ilib/include -Ilib -I$(FUZZ_DIR)/gen $(PKG_CFLAGS) -MMD -MP
FUZZ_GEN    := $(patsubst proto/%.proto,$(FUZZ_DIR)/gen/%.pb-c.c,$(PROTOS))
FUZZ_OBJS   := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(LIB_SRCS)) $(patsubst $(FUZZ_DIR)/gen/%.c,$(FUZZ_DIR)/obj/gen/%.o,$(FUZZ_GEN))
FUZZ_BINS   := $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(FUZZ_SRCS))
FUZZ_TIME   ?= 60

$(FUZZ_DIR)/gen/%.pb-c.c $(FUZZ_DIR)/gen/%.pb-c.h: proto/%.proto
	@mkdir -p $(FUZZ_DIR)/gen
	protoc-c --proto_path=proto --c_out=$(FUZZ_DIR)/gen $<

$(FUZZ_DIR)/obj/gen/%.o: $(FUZZ_DIR)/gen/%.c | $(FUZZ_GEN:.c=.h)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/obj/%.o: %.c | $(FUZZ_GEN:.c=.h)
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

$(FUZZ_DIR)/%: $(FUZZ_DIR)/obj/tests/fuzz/%.o $(FUZZ_OBJS)
	$(CLANG) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lm -lpthread

fuzz: deps $(FUZZ_BINS)
	@sh tests/fuzz/run $(FUZZ_TIME) $(FUZZ_BINS)

fuzz-short: deps $(FUZZ_BINS)
	@sh tests/fuzz/run 15 $(FUZZ_BINS)

# The whole suite: unit, wire compatibility, integration, a short fuzz run.
test: all unit wire integration $(if $(NO_FUZZ),,fuzz-short)

bench: all
	@sh bench/run-all $(BUILD)

demo: all
	@sh sim/demo.sh $(BUILD)

datamodels:
	@sh datamodels/fetch-official

# Test CA and TLS certificates (build output, never committed): certs/README.md
certs: all
	$(BUILD)/uspsim certs --out $(BUILD)/certs

format:
	clang-format -i $(LIB_SRCS) $(SIM_SRCS) $(UNIT_SRCS) $(FUZZ_SRCS) lib/*.h lib/include/usp/*.h

clean:
	rm -rf build

-include $(shell find $(BUILD)/obj $(FUZZ_DIR)/obj -name '*.d' 2>/dev/null)
