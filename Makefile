# Portico: plain Makefile. `make` builds build/portico; `make asan` builds
# build/asan/portico with AddressSanitizer + UndefinedBehaviorSanitizer.
# `make test` installs dependencies, builds both and runs every test.

PREFIX  ?= /usr/local/portico
VERSION := 0.1.0
CC      ?= cc
PY      ?= /usr/bin/python3
# A failed integration test is run once more (pytest-rerunfailures); every
# rerun is listed in build/test-results/reruns.txt and counted on the closing
# line, so a flaky test stays visible.  `make test PYTEST_RERUNS=` turns it off.
PYTEST_RERUNS ?= -p rerun_log --reruns 1 --reruns-delay 2

WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wshadow -Wpointer-arith -Wvla
DEFS    := -D_GNU_SOURCE -DPT_VERSION='"$(VERSION)"' -DPT_PREFIX='"$(PREFIX)/"' \
           -DPT_CONF_PATH='"conf/portico.conf"'
CFLAGS  ?= -O2 -g
ALL_CFLAGS = -std=c17 $(WARN) $(DEFS) $(CFLAGS) -MMD -MP
LIBS    := -lssl -lcrypto -lnghttp2 -lz -lpcre2-8 -luring -lpthread
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SRCS     := $(shell find src -name '*.c' | sort)
LIB_SRCS := $(filter-out src/main.c,$(SRCS))
GEN_SRCS := build/gen/default_conf.c build/gen/mime_types.c

OBJS      := $(SRCS:%.c=build/obj/%.o) $(GEN_SRCS:build/gen/%.c=build/obj/gen/%.o)
LIB_OBJS  := $(LIB_SRCS:%.c=build/obj/%.o) $(GEN_SRCS:build/gen/%.c=build/obj/gen/%.o)
ASAN_OBJS := $(SRCS:%.c=build/asan-obj/%.o) $(GEN_SRCS:build/gen/%.c=build/asan-obj/gen/%.o)
ASAN_LIB_OBJS := $(LIB_SRCS:%.c=build/asan-obj/%.o) $(GEN_SRCS:build/gen/%.c=build/asan-obj/gen/%.o)

UNIT_SRCS := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=build/unit/%)

FUZZ_SRCS := $(wildcard fuzz/fuzz_*.c)
FUZZ_BINS := $(FUZZ_SRCS:fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 20

.PHONY: all asan unit test test-unit test-integration test-asan fuzz fuzz-build run deps clean \
        bench bench-smoke

all: build/portico

deps:
	@bash scripts/deps.sh

build/portico: $(OBJS)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(LIBS)

asan: build/asan/portico
build/asan/portico: $(ASAN_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -o $@ $^ $(LIBS)

build/libportico.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^
build/libportico-asan.a: $(ASAN_LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
build/obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<
build/asan-obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<
build/asan-obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -c -o $@ $<

# The default configuration and mime.types are compiled in, so the binary
# runs with no files installed (make run).
build/gen/default_conf.c: conf/portico.conf scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh pt_default_conf $< > $@
build/gen/mime_types.c: conf/mime.types scripts/embed.sh
	@mkdir -p $(dir $@)
	sh scripts/embed.sh pt_default_mime_types $< > $@

# Unit tests: each tests/unit/<layer>/test_<file>.c is one program printing TAP,
# linked against the sanitized library (it may #include the .c under test).
unit: $(UNIT_BINS)
build/unit/%: tests/unit/%.c tests/unit/tap.h build/libportico-asan.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(SAN) -Isrc -Itests/unit -o $@ $< build/libportico-asan.a $(LIBS)

test-unit: unit
	@mkdir -p build/test-results
	@sh scripts/run-unit.sh $(UNIT_BINS)

test-integration: build/portico
	@mkdir -p build/test-results
	PORTICO_BIN=$(CURDIR)/build/portico PORTICO_RERUN_LOG=$(CURDIR)/build/test-results/reruns.txt PYTHONPATH=$(CURDIR)/tests/integration \
	  $(PY) -m pytest tests/integration \
	  --junitxml=build/test-results/integration.xml $(PYTEST_RERUNS) $(PYTEST_ARGS)

test-asan: build/asan/portico
	@mkdir -p build/test-results
	PORTICO_BIN=$(CURDIR)/build/asan/portico PORTICO_RERUN_LOG=$(CURDIR)/build/test-results/reruns.txt PYTHONPATH=$(CURDIR)/tests/integration \
	  $(PY) -m pytest tests/integration \
	  --junitxml=build/test-results/integration-asan.xml $(PYTEST_RERUNS) $(PYTEST_ARGS)

# libFuzzer targets (clang): the library is built once with fuzzer
# instrumentation, then each fuzz/fuzz_*.c links against it.
FUZZ_CFLAGS := -std=c17 -g -O1 $(DEFS) -Wall -Wextra -Werror -Wno-unused-parameter \
               -fsanitize=address,undefined -Isrc
FUZZ_OBJS := $(LIB_SRCS:%.c=build/fuzz-obj/%.o) $(GEN_SRCS:build/gen/%.c=build/fuzz-obj/gen/%.o)
build/fuzz-obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<
build/fuzz-obj/gen/%.o: build/gen/%.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link -c -o $@ $<
build/libportico-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^
fuzz-build: $(FUZZ_BINS)
build/fuzz/%: fuzz/%.c build/libportico-fuzz.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/libportico-fuzz.a $(LIBS)
fuzz: fuzz-build
	@sh scripts/run-fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BINS)

# The closing line sums every unit check, integration test (plain and
# sanitizer builds) and fuzz target; later steps run even when one fails.
test: deps
	@rm -rf build/test-results && mkdir -p build/test-results
	$(MAKE) -j2 build/portico build/asan/portico unit fuzz-build
	-$(MAKE) test-unit
	-$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)
	-$(MAKE) test-integration
	-$(MAKE) test-asan
	@$(PY) scripts/test-summary.py

run: deps build/portico
	@mkdir -p build/run/logs
	@echo "portico: serving http://127.0.0.1:8080/ (Ctrl-C to stop)"
	build/portico -p $(CURDIR)/build/run/ -g "daemon off;"

bench: deps build/portico
	bash bench/run.sh all
bench-smoke: deps build/portico
	BENCH_SECONDS=2 bash bench/run.sh smoke

clean:
	rm -rf build

-include $(OBJS:.o=.d) $(ASAN_OBJS:.o=.d) $(FUZZ_OBJS:.o=.d)
