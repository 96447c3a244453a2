# sluice — build, run and test.
#
#   make            build build/sluice and the Lua module build/sluice.so
#   make install    install both (PREFIX=/usr/local; BINDIR, LUA_CMOD_DIR)
#   make run        run the main example (word count)
#   make test       C unit tests + luaunit suites (each with -w 1, 2, 4;
#                   TEST_WORKERS="..." to choose) + REPL + examples
#   make check      the whole suite under ASan+UBSan and under TSan
#   make bench      benchmark suite (QUICK=1 for a small corpus)
#   make clean

# ---- settings --------------------------------------------------------------
CC        ?= cc
LUA_PKG   ?= lua5.4
LUA       ?= lua5.4
SANITIZER ?=
OPT       ?= -O2
WERROR    ?=
WARN      := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
             -Wno-unused-parameter $(WERROR)

ifeq ($(SANITIZER),)
  BUILD   ?= build
  SANFLAGS :=
else
  BUILD   ?= build-$(subst $(comma),-,$(SANITIZER))
  SANFLAGS := -fsanitize=$(SANITIZER) -fno-omit-frame-pointer
endif
comma := ,

DEPS_OK   := $(shell pkg-config --exists $(LUA_PKG) 2>/dev/null && command -v $(LUA) >/dev/null && \
               test -f /usr/include/readline/readline.h && test -f /usr/share/lua/5.4/luaunit.lua && \
               command -v tmux >/dev/null && $(LUA) -e 'require"cjson"' 2>/dev/null && \
               command -v luarocks >/dev/null && test -f /usr/include/hiredis/hiredis.h && \
               command -v redis-server >/dev/null && echo yes)
ifneq ($(DEPS_OK),yes)
  $(shell scripts/deps.sh >&2)
endif

LUA_CFLAGS := $(shell pkg-config --cflags $(LUA_PKG))
# Lua is linked statically when the archive is there (Debian's liblua5.4-dev
# ships it): the VM is then built like the lua5.4 interpreter the benchmarks
# compare against (not position-independent), about 3 % faster on the word
# count than the shared library. -Wl,-E keeps the Lua API exported for C
# modules loaded with require.
LUA_STATIC := $(wildcard $(shell pkg-config --variable=libdir $(LUA_PKG))/lib$(LUA_PKG).a)
ifneq ($(LUA_STATIC),)
  LUA_LIBS := $(LUA_STATIC) -ldl -Wl,-E
else
  LUA_LIBS := $(shell pkg-config --libs $(LUA_PKG))
endif
CFLAGS  := -std=c11 $(OPT) -g -D_GNU_SOURCE -pthread $(WARN) $(SANFLAGS) -MMD -MP
LDFLAGS := -pthread $(SANFLAGS)
LDLIBS  := -lhiredis -lm

# ---- sources -----------------------------------------------------------------
ENGINE_SRC := $(wildcard engine/*.c)
ENGINE_OBJ := $(ENGINE_SRC:%.c=$(BUILD)/%.o)
LUAC_SRC   := $(filter-out lua/main.c lua/module.c,$(wildcard lua/*.c))
LUAC_OBJ   := $(LUAC_SRC:%.c=$(BUILD)/%.o) $(BUILD)/lua/embedded.o
LUALIB_SRC := $(sort $(wildcard lua/sluice/*.lua))
MAIN_OBJ   := $(BUILD)/lua/main.o
BIN        := $(BUILD)/sluice

# The Lua C module: the same objects compiled a second time, position
# independent, into $(BUILD)/pic, plus lua/module.c. It links no Lua
# library: the host program that loads it provides the Lua API. Only
# luaopen_sluice is exported (-fvisibility=hidden), so the module's
# functions neither clash with the host's nor go through the PLT.
MOD        := $(BUILD)/sluice.so
PIC        := $(BUILD)/pic
PICFLAGS   := -fPIC -fvisibility=hidden
MOD_OBJ    := $(ENGINE_SRC:%.c=$(PIC)/%.o) $(LUAC_SRC:%.c=$(PIC)/%.o) \
              $(PIC)/lua/embedded.o $(PIC)/lua/module.o

PREFIX       ?= /usr/local
BINDIR       ?= $(PREFIX)/bin
LUA_CMOD_DIR ?= $(PREFIX)/lib/lua/5.4

ETEST_SRC  := $(wildcard tests/engine/test_*.c)
ETEST_BIN  := $(ETEST_SRC:tests/engine/%.c=$(BUILD)/tests/%)
CTEST_SRC  := $(wildcard tests/capi/test_*.c)
CTEST_BIN  := $(CTEST_SRC:tests/capi/%.c=$(BUILD)/tests/%)

.PHONY: all run test check bench clean deps install
all: $(BIN) $(MOD)

$(BIN): $(MAIN_OBJ) $(LUAC_OBJ) $(ENGINE_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LUA_LIBS) -lreadline $(LDLIBS)

$(BUILD)/engine/%.o: engine/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -iquote engine -c -o $@ $<

$(BUILD)/lua/%.o: lua/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -iquote engine -iquote lua $(LUA_CFLAGS) -c -o $@ $<

$(MOD): $(MOD_OBJ)
	$(CC) $(LDFLAGS) -shared -o $@ $^ -ldl $(LDLIBS)

$(PIC)/engine/%.o: engine/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PICFLAGS) -iquote engine -c -o $@ $<

$(PIC)/lua/%.o: lua/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PICFLAGS) -iquote engine -iquote lua $(LUA_CFLAGS) -c -o $@ $<

$(PIC)/lua/embedded.o: $(BUILD)/lua/embedded.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(PICFLAGS) -c -o $@ $<

# The Lua library files are compiled into the binary as strings.
$(BUILD)/lua/embedded.c: $(LUALIB_SRC) scripts/embed.lua
	@mkdir -p $(dir $@)
	$(LUA) scripts/embed.lua $@ $(LUALIB_SRC)

$(BUILD)/lua/embedded.o: $(BUILD)/lua/embedded.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%: tests/engine/%.c $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -iquote engine -iquote tests -o $@ $(filter %.c %.o,$^) $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: tests/capi/%.c $(LUAC_OBJ) $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -iquote engine -iquote lua -iquote tests $(LUA_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDFLAGS) $(LUA_LIBS) $(LDLIBS)

# a C module for the runtime tests (require of C modules)
$(BUILD)/tests/probe.so: tests/capi/probe_module.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -fPIC -shared -o $@ $< $(LDFLAGS)

# a program that embeds Lua and loads the module (tests/module/module.sh)
$(BUILD)/tests/module_host: tests/module/host.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LUA_CFLAGS) -o $@ $< $(LDFLAGS) $(LUA_LIBS) $(LDLIBS)

# ---- jobs --------------------------------------------------------------------
run: $(BIN)
	$(BIN) examples/wordcount.lua examples/data/text.txt

test: $(BIN) $(MOD) $(ETEST_BIN) $(CTEST_BIN) $(BUILD)/tests/probe.so $(BUILD)/tests/module_host
	@TEST_WORKERS="$(TEST_WORKERS)" scripts/test.sh $(BUILD)

# the sanitizer runs take each luaunit suite once, with 2 workers, and the
# Redis scale-out checks with 100000 entries instead of 1000000
check:
	$(MAKE) SANITIZER=address,undefined TEST_WORKERS=2 REDIS_N=100000 test
	$(MAKE) SANITIZER=thread TEST_WORKERS=2 REDIS_N=100000 test

bench: $(BIN)
	scripts/bench.sh $(BUILD)

deps:
	scripts/deps.sh

# also what `luarocks make` runs (sluice-*.rockspec sets BINDIR and
# LUA_CMOD_DIR to the rock's directories)
install: $(BIN) $(MOD)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LUA_CMOD_DIR)
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/sluice
	install -m 755 $(MOD) $(DESTDIR)$(LUA_CMOD_DIR)/sluice.so

clean:
	rm -rf build build-*

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- fuzzing and stress (tests/fuzz, tests/stress) ---------------------------
#   make fuzz        builds the libFuzzer targets with clang (ASan+UBSan) in
#                    build-fuzz/ and runs each for FUZZ_SECONDS (default 120),
#                    or for FUZZ_RUNS executions when that is set, from its
#                    seed corpus tests/fuzz/corpus/<target>/; a crash stops
#                    the run and leaves crash-* in build-fuzz/fuzz/
#   make stress      STRESS_SEEDS (default 500) random topologies, each with
#                    -w 1..4 in turn; a failure prints the seed and the
#                    command that replays it
FUZZ_TARGETS := decode batch window
FUZZ_SECONDS ?= 120
FUZZ_RUNS ?=
STRESS_SEEDS ?= 500
STRESS_FIRST ?= 1
.PHONY: fuzz fuzz-build stress
fuzz-build:
	@command -v clang >/dev/null || scripts/deps.sh
	$(MAKE) CC=clang BUILD=build-fuzz SANITIZER="fuzzer-no-link,address,undefined -fno-sanitize-recover=all" \
	  $(FUZZ_TARGETS:%=build-fuzz/fuzz/fuzz_%)

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p build-fuzz/fuzz/corpus-$$t; \
	  echo "fuzz_$$t: $(if $(FUZZ_RUNS),$(FUZZ_RUNS) executions,$(FUZZ_SECONDS) s)"; \
	  ( cd build-fuzz/fuzz && ./fuzz_$$t $(if $(FUZZ_RUNS),-runs=$(FUZZ_RUNS),-max_total_time=$(FUZZ_SECONDS)) -print_final_stats=1 \
	      corpus-$$t ../../tests/fuzz/corpus/$$t ) >build-fuzz/fuzz/fuzz_$$t.log 2>&1 \
	    || { tail -n 60 build-fuzz/fuzz/fuzz_$$t.log; echo "fuzz_$$t: FAILED (log: build-fuzz/fuzz/fuzz_$$t.log)"; exit 1; }; \
	  grep -E '^stat::number_of_executed_units|^Done [0-9]+ runs' build-fuzz/fuzz/fuzz_$$t.log | sed "s/^/  fuzz_$$t: /"; \
	done

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LUAC_OBJ) $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -iquote engine -iquote lua $(LUA_CFLAGS) -o $@ $(filter %.c %.o,$^) $(LDFLAGS) -fsanitize=fuzzer $(LUA_LIBS) $(LDLIBS)

stress: $(BIN)
	scripts/stress.sh $(BUILD) $(STRESS_FIRST) $(STRESS_SEEDS)
