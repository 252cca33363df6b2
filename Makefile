# tokend Makefile. Targets:
#   make            release build: build/tokend
#   make run        install what is missing, build, start tokend --dev on SQLite
#   make test       install what is missing, build under ASan+UBSan, run every test
#   make bench      wrk benchmarks on loopback, figures appended to BENCHMARKS.md
#   make fuzz       build the libFuzzer targets with clang and run each briefly
#   make deps       install the Debian and npm packages that are missing
#   make format     clang-format the C sources

CC      ?= cc
PKGS    := libmicrohttpd jansson libcurl sqlite3 libpq libcrypto inih gnutls libargon2
# Evaluated when make reads this file. The top-level targets run `deps` first
# and then build in a second make, which reads the flags of the libraries
# deps has just installed (a fresh machine has no -dev packages at parse time).
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_OK     := $(shell pkg-config --exists $(PKGS) 2>/dev/null && echo yes)
SUBMAKE    := $(MAKE) --no-print-directory
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wvla -Wpointer-arith -Wundef -Wno-format-nonliteral
CSTD    := -std=c11 -D_GNU_SOURCE
LIBS    := $(PKG_LIBS) -lgfshare -lpthread

RELEASE_FLAGS := -O2 -g -fstack-protector-strong -D_FORTIFY_SOURCE=2
SAN_FLAGS     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=undefined

LIB_SRC  := $(sort $(wildcard src/*/*.c))
MIG_SQL  := $(sort $(wildcard src/store/migrations/*.sql))
PROV_JSON := $(sort $(wildcard src/upstream/providers/*.json))
ASSETS    := $(sort $(wildcard src/console/assets/*))
MAIN_SRC := src/tokend.c
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))

# $(call objs,DIR,SOURCES)
objs = $(patsubst %.c,$(1)/%.o,$(2))

REL := build/release
TST := build/test

.PHONY: all run test unit e2e bench fuzz deps format clean check-pkgs run-built test-built bench-built
all: check-pkgs build/tokend

# Building without the libraries' headers fails with a confusing compiler
# error; say what to do instead.
check-pkgs:
	@$(if $(PKG_OK),true,echo "make: the -dev packages are missing ($(PKGS)); run 'make deps' (or make run / make test, which do)" >&2; false)

# ---- generated migrations ----
build/gen/migrations.c: $(MIG_SQL) scripts/embed-sql.sh
	@mkdir -p $(dir $@)
	scripts/embed-sql.sh $@ $(MIG_SQL)

# ---- generated provider catalogue ----
build/gen/providers.c: $(PROV_JSON) scripts/embed-providers.sh
	@mkdir -p $(dir $@)
	scripts/embed-providers.sh $@ $(PROV_JSON)

# ---- generated console assets (stylesheet, script) ----
build/gen/console_assets.c: $(ASSETS) scripts/embed-assets.sh
	@mkdir -p $(dir $@)
	scripts/embed-assets.sh $@ $(ASSETS)

# ---- release ----
$(REL)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CSTD) $(WARN) $(RELEASE_FLAGS) $(PKG_CFLAGS) -MMD -MP -c $< -o $@

build/tokend: $(call objs,$(REL),$(LIB_SRC) $(MAIN_SRC) build/gen/migrations.c build/gen/providers.c build/gen/console_assets.c)
	@echo "  LD      $@"
	@$(CC) $(RELEASE_FLAGS) -o $@ $^ $(LIBS)

# ---- sanitizer build for tests ----
$(TST)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC(san) $<"
	@$(CC) $(CSTD) $(WARN) $(SAN_FLAGS) -DTK_UNITTEST $(PKG_CFLAGS) -MMD -MP -c $< -o $@

build/keyring-bench: $(call objs,$(REL),$(LIB_SRC) bench/keyring_bench.c build/gen/migrations.c build/gen/providers.c build/gen/console_assets.c)
	@echo "  LD      $@"
	@$(CC) $(RELEASE_FLAGS) -o $@ $^ $(LIBS)

build/events-bench: $(call objs,$(REL),$(LIB_SRC) bench/events_bench.c build/gen/migrations.c build/gen/providers.c build/gen/console_assets.c)
	@echo "  LD      $@"
	@$(CC) $(RELEASE_FLAGS) -o $@ $^ $(LIBS)

# The benchmarks' baseline: a hello-world on tokend's libmicrohttpd configuration.
build/bench-hello: bench/hello.c
	@mkdir -p $(dir $@)
	@echo "  CC+LD   $@"
	@$(CC) $(CSTD) $(WARN) $(RELEASE_FLAGS) $(PKG_CFLAGS) -o $@ $< $(PKG_LIBS)

$(TST)/tokend: $(call objs,$(TST),$(LIB_SRC) $(MAIN_SRC) build/gen/migrations.c build/gen/providers.c build/gen/console_assets.c)
	@echo "  LD      $@"
	@$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS)

$(TST)/unit: $(call objs,$(TST),$(LIB_SRC) $(UNIT_SRC) build/gen/migrations.c build/gen/providers.c build/gen/console_assets.c)
	@echo "  LD      $@"
	@$(CC) $(SAN_FLAGS) -o $@ $^ $(LIBS)

-include $(shell find build -name '*.d' 2>/dev/null)

# ---- commands ----
deps:
	@scripts/deps.sh

run: deps
	@$(SUBMAKE) run-built

run-built: check-pkgs build/tokend
	@scripts/run.sh

# The README's test command. Unit tests, then the end-to-end suite on SQLite
# and on a PostgreSQL that tests/with-postgres.sh starts and stops, two test
# files at once, on the Node >= 20.19 that scripts/node.sh names (the
# system's, or the pinned Node 22 that deps installed into build/node).
NODE_TEST_FLAGS = --test-reporter=spec --test-concurrency=2
# The longest file (two nodes refreshing 1000 connections, about 150 s) starts
# first, so that it runs beside the others instead of after them.
E2E_FIRST = engine.test.mjs

test: deps
	@$(SUBMAKE) test-built

test-built: check-pkgs $(TST)/tokend $(TST)/unit
	@node=$$(scripts/node.sh) && echo "e2e: $$node $$($$node --version)" && set -x && \
	tests/with-postgres.sh sh -c '$(TST)/unit && cd tests/e2e && TOKEND_BIN=$(CURDIR)/$(TST)/tokend "$$0" --test $(NODE_TEST_FLAGS) $(E2E_FIRST) $$(ls *.test.mjs | grep -vxF "$(E2E_FIRST)")' "$$node"

unit: check-pkgs $(TST)/unit
	$(TST)/unit

bench: deps
	@$(SUBMAKE) bench-built

bench-built: check-pkgs build/tokend build/keyring-bench build/events-bench build/bench-hello
	bench/run.sh
	bench/keyring.sh
	bench/events.sh
	bench/clients.sh
	bench/refresh.sh
	bench/oauth.sh
	bench/console.sh

fuzz: deps
	fuzz/run.sh

format:
	clang-format -i src/*.c src/*/*.c src/*/*.h tests/unit/*.c fuzz/*.c

clean:
	rm -rf build
