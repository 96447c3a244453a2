/* main: the sluice executable: command line, script runner and REPL,
 * modelled on the standalone lua interpreter (protected main, expression
 * first, <eof> continuation lines, Ctrl-C through a hook). */
#include <errno.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <lauxlib.h>
#include <lualib.h>
#include "rt.h"
#include "lstage.h"

static const char *progname = "sluice";
static lua_State *globalL;

static void print_usage(const char *badoption) {
  if (badoption) {
    if (badoption[1] == 'e' || badoption[1] == 'l' || badoption[1] == 'w' || strcmp(badoption, "--graph") == 0)
      fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
    else
      fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
  }
  fprintf(stderr,
          "usage: %s [options] [script [args...]]\n"
          "Available options are:\n"
          "  -e chunk  run the string 'chunk'\n"
          "  -l name   require library 'name' into global 'name'\n"
          "  -i        enter the REPL after running script\n"
          "  -w N      number of worker threads (default: online CPUs; env SLUICE_WORKERS)\n"
          "            (env SLUICE_MEMORY=64M: a memory limit per worker; K, M or G)\n"
          "  --graph FILE  write the live stages as Graphviz DOT to FILE when the script\n"
          "            ends (and FILE's .svg when dot is installed)\n"
          "  -v        show version information\n"
          "  -h        show this help\n"
          "  --        stop handling options\n"
          "  -         run stdin as a script and stop handling options\n"
          "Without a script (and stdin a terminal) it starts the REPL; help() there\n"
          "lists the sluice functions. The tour: README.md; the API reference:\n"
          "lua/README.md (both in the source tree).\n",
          progname);
}

static void l_message(const char *msg) {
  fprintf(stderr, "%s: %s\n", progname, msg);
  fflush(stderr);
}

/* ---- Ctrl-C -------------------------------------------------------------- */

/* SIGINT while evaluating: C waits see the flag (within 10 ms), Lua code
 * the hook (at its next instruction). Raising it there also interrupts
 * the callbacks and tasks that the entry started and that run now on the
 * workers; the entry is interrupted again every 100 ms until it returns. */
static void laction(int sig) {
  (void)sig;
  sl_rt_g.interrupted = 1;
  sl_rt_g.sigint_seen = 1;
  lua_sethook(globalL, sl_rt_interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void set_sigint(void (*fn)(int)) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = fn;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/* ---- running chunks -------------------------------------------------------- */

/* Reports a failed call: "sluice: message" plus the traceback. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -2);
    if (!msg) {
      if (luaL_callmeta(L, -2, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
        msg = lua_tostring(L, -1);
        lua_replace(L, -3);
      } else {
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -2));
        lua_replace(L, -3);
      }
    }
    const char *tb = lua_tostring(L, -1);
    if (tb && *tb) fprintf(stderr, "%s: %s\n%s\n", progname, msg, tb);
    else l_message(msg);
    fflush(stderr);
    lua_pop(L, 2);
  }
  return status;
}

/* Calls the chunk on the stack with Ctrl-C armed. Leaves the results, or
 * (on error) the message and traceback. */
/* Ctrl-C stops the stages the interrupted entry started (protected: the
 * pumping may run main-thread stage callbacks). */
static int stop_started(lua_State *L) {
  sl_stage_stop_started(L);
  return 0;
}

static int docall(lua_State *L, int narg, int nres) {
  sl_rt_g.interrupted = 0;
  sl_rt_g.sigint_seen = 0;
  sl_rt_forget_started();
  sl_rt_g.entry_running = 1;
  set_sigint(laction);
  int status = sl_pcall(L, narg, nres);
  set_sigint(SIG_DFL);
  sl_rt_g.entry_running = 0;
  lua_sethook(L, NULL, 0, 0);
  sl_rt_g.interrupted = 0;
  if (status != LUA_OK && sl_rt_g.sigint_seen) {
    lua_pushcfunction(L, stop_started);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) lua_pop(L, 1);
  }
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  else lua_pushliteral(L, "");
  return report(L, status);
}

static int dofile(lua_State *L, const char *name) {
  return dochunk(L, luaL_loadfile(L, name));
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* require 'name', store the result in global 'name'. */
static int dolibrary(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  int status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, name);
  return report(L, status);
}

/* arg table: script at 0, its arguments at 1.., options at negatives. */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0;
  int narg = argc - (script + 1);
  lua_createtable(L, narg, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int pushargs(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) luaL_error(L, "'arg' is not a table");
  int n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  int i;
  for (i = 1; i <= n; i++) lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

static int handle_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) fname = NULL;
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = pushargs(L);
    status = docall(L, n, 0);
  } else {
    lua_pushliteral(L, "");
  }
  return report(L, status);
}

/* ---- options ---------------------------------------------------------------- */

static const char *graph_path;   /* --graph FILE */

/* --graph: after the script, the topology goes to graph_path
 * (sluice.tools.write_graph). Returns 0 after reporting a failure. */
static int write_graph(lua_State *L) {
  if (!graph_path) return 1;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sluice.tools");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK) {
    lua_getfield(L, -1, "write_graph");
    lua_pushstring(L, graph_path);
    if (lua_pcall(L, 1, 0, 0) == LUA_OK) {
      lua_pop(L, 1);
      return 1;
    }
  }
  l_message(lua_tostring(L, -1));
  lua_pop(L, 1);
  return 0;
}

/* --graph: flows record their topology as they start (sluice.tools.record). */
static void record_graph(lua_State *L) {
  if (!graph_path) return;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "sluice.tools");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return;
  }
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "record");
  lua_pop(L, 1);
}

enum { has_error = 1, has_i = 2, has_v = 4, has_e = 8, has_h = 16 };

/* Scans the options; returns the flags and sets *first to the script's
 * index (argc when there is none) and *workers from -w. */
static int collectargs(char **argv, int *first, int *workers) {
  int args = 0;
  int i;
  for (i = 1; argv[i] != NULL; i++) {
    *first = i;
    if (argv[i][0] != '-') return args;
    switch (argv[i][1]) {
    case '-':
      if (strcmp(argv[i], "--graph") == 0) {
        if (argv[i + 1] == NULL) return has_error;
        graph_path = argv[++i];
        break;
      }
      if (argv[i][2] != '\0') return has_error;
      *first = i + 1;
      return args;
    case '\0':
      return args;
    case 'i':
      if (argv[i][2] != '\0') return has_error;
      args |= has_i | has_v;
      break;
    case 'v':
      if (argv[i][2] != '\0') return has_error;
      args |= has_v;
      break;
    case 'h':
      args |= has_h;
      break;
    case 'e':
      args |= has_e; /* fall through */
    case 'l':
      if (argv[i][2] == '\0') {
        i++;
        if (argv[i] == NULL || argv[i][0] == '-') return has_error;
      }
      break;
    case 'w': {
      const char *v = argv[i][2] ? argv[i] + 2 : argv[++i];
      if (v == NULL) return has_error;
      char *end;
      long n = strtol(v, &end, 10);
      if (*end || n < 1 || n > 1024) {
        fprintf(stderr, "%s: -w needs a number of workers from 1 to 1024, got '%s'\n", progname, v);
        exit(EXIT_FAILURE);
      }
      *workers = (int)n;
      break;
    }
    default:
      return has_error;
    }
  }
  *first = i;
  return args;
}

/* Runs -e and -l in order. */
static int runargs(lua_State *L, char **argv, int n) {
  for (int i = 1; i < n; i++) {
    int option = argv[i][1];
    if (option == 'e' || option == 'l') {
      const char *extra = argv[i] + 2;
      if (*extra == '\0') extra = argv[++i];
      int status = option == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
      if (status != LUA_OK) return 0;
    } else if ((option == 'w' && argv[i][2] == '\0') || strcmp(argv[i], "--graph") == 0) {
      i++;
    }
  }
  return 1;
}

static void print_version(void) {
  printf("sluice %s (%s) -- GenStage and Flow for Lua\n", SLUICE_VERSION, LUA_RELEASE);
  fflush(stdout);
}

/* ---- help() ------------------------------------------------------------------ */

/* The REPL's help(): one line per function of the sluice module and of the
 * handles it returns. tests/repl/test_help.sh checks that every public
 * function the running library has is listed here. */
static const char *const help_text =
"sluice functions (the reference: lua/README.md; the tour: README.md)\n"
"runtime\n"
"  sluice.version                        the version string\n"
"  sluice.workers()                      the number of worker threads\n"
"  sluice.sleep(ms)                      wait ms milliseconds\n"
"  sluice.inspect(v [, opts])            v as a string that reads like Lua\n"
"  sluice.task(fn, ...)                  run fn(...) on a worker; returns a task\n"
"  task:await([ms]) / task:done()        the task's results / whether they are in\n"
"stages (GenStage)\n"
"  sluice.start(spec, arg [, opts])      start a producer, producer_consumer or consumer\n"
"  sluice.subscribe(consumer, producer [, opts])  subscribe; returns a subscription\n"
"  sluice.stream({producer, ...})        iterate over the events of producers\n"
"  sluice.from_enumerable(enum [, opts]) a producer of an array, range, lines or iterator\n"
"  sluice.range(first, last [, step])    lazy integers, an enumerable\n"
"  sluice.lines(path)                    a file's lines, an enumerable\n"
"  sluice.words(path)                    a file's words (letters, lowercased), an enumerable\n"
"  sluice.jsonl(path [, {bad = \"skip\"}])  a file's JSON lines, decoded; src:skipped()\n"
"  sluice.stats()                        every live stage: name, type, worker, counters\n"
"  sluice.top([{ms =, times =}])         sluice.stats() as a table, redrawn until a key\n"
"  sluice.graph()                        the live stages and subscriptions as Graphviz DOT\n"
"  sluice.consumer_supervisor{handler = fn, subscribe_to = {...}}  a task per event\n"
"  sluice.dispatcher.demand{} / .broadcast{} / .partition{partitions = n}  dispatchers\n"
"  sluice.self()                         the running stage (inside a callback)\n"
"  sluice.whereis(name)                  the stage registered under name, or nil\n"
"  sluice.NOREPLY                        handle_call's 'reply later' value\n"
"  stage:send(msg) / :send_after(ms, msg) / :cast(msg) / :call(req [, ms])  messages\n"
"  stage:await([ms]) / :stop([reason [, ms]]) / :finish() / :alive() / :name()  life\n"
"  stage:stats() / :buffered() / :demand([mode])  counters and demand mode\n"
"  from:ask(n) / from:cancel([reason]) / from:reply(v)  in callbacks\n"
"  sub:cancel([reason]) / timer:cancel()  end a subscription / a send_after\n"
"Flow (local flow = sluice.flow)\n"
"  flow.from_enumerable(enum [, opts]) / flow.from_enumerables({enum, ...})  sources\n"
"  flow.from_stages({stage, ...}) / flow.from_specs({{spec, arg}, ...})  stage sources\n"
"  :map(f) :flat_map(f) :filter(f) :reject(f) :map_values(f) :each(f)  per event\n"
"  :uniq() :uniq_by(f) :map_batch(f)     per event\n"
"  :partition([opts]) :shuffle([opts]) :merge([opts])  a new layer\n"
"  flow.partition({f, ...}) / flow.shuffle({f, ...}) / flow.merge({f, ...})  join flows\n"
"  :reduce(acc_fun, fun [, opts]) :reduce_by_key(fun) :frequencies() :frequencies_by(f)\n"
"  :group_by(key_fun [, value_fun]) :group_by_key() :emit_and_reduce(acc_fun, fun)\n"
"  :emit(\"events\"|\"state\"|\"nothing\") :on_trigger(fun)  what a reducer emits\n"
"  :departition(acc_fun, merge, done) :take_sort(n [, less])  one result from all partitions\n"
"  flow.bounded_join(mode, l, r, lkey, rkey, join) / flow.window_join(..., window, ...)  joins\n"
"  :to_list() :run() :stream() :start()  run it (start returns a running handle)\n"
"  :into_stages({c}) :into_specs({{spec, arg}}) :through_stages({pc}) :through_specs({...})\n"
"  running:await([ms]) / :stop([ms]) / :stats() / :send(msg)  a started flow\n"
"  flow:explain() / flow.explain(f)      the plan, as text\n"
"  flow:graph() / flow.graph(f)          the topology, as Graphviz DOT\n"
"  :into_jsonl(path)                     run it, writing each event as a JSON line\n"
"  :into_redis{url =, stream = [, maxlen =]}  run it, adding each event to a Redis stream\n"
"  flow.is_flow(v)                       whether v is a flow\n"
"windows (local W = sluice.window; a layer's window option)\n"
"  W.global() W.count(n) W.periodic(n, unit) W.fixed(n, unit, by)\n"
"  W.sliding(size, every, unit, by) W.session(gap, unit, by [, key])\n"
"  w:trigger_every(n) w:trigger_periodically(n, unit) w:trigger(acc_fun, fun)\n"
"  w:allowed_lateness(n, unit)           keep a window open for late events\n"
"Redis Streams (run a script as several processes that share the work)\n"
"  sluice.redis.source{url =, stream =, group = [, consumer =, drain =]}  a producer\n"
"  sluice.redis.sink{url =, stream = [, maxlen =, subscribe_to =]}  a consumer\n"
"  sluice.redis.acked(source)            entries of a source acknowledged so far\n"
"  sluice.redis.encode(v) / .decode(s)   a field value as sluice writes and reads it\n"
"  sluice.redis.connect(url)             conn:call(cmd, ...) / :add(stream, events) / :close()\n";

static int l_help(lua_State *L) {
  sl_rt_write_line(help_text, strlen(help_text));
  return 0;
}

/* ---- REPL ------------------------------------------------------------------- */

static char history_path[4096];
static int interactive;   /* the REPL reads a terminal (else a pipe or a file) */

static const char *get_prompt(int firstline) {
  return firstline ? "sluice> " : ">> ";
}

/* Keeps main-thread producers served while readline waits for keys. */
static int idle_pump_protected(lua_State *L) {
  while (sl_rt_pump(L, 0)) {}
  return 0;
}

static int idle_hook(void) {
  lua_State *L = globalL;
  lua_pushcfunction(L, idle_pump_protected);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return 0;
}

/* readline's byte reader when stdin is not a terminal. readline's idle
 * loop (rl_event_hook) cannot tell the end of a pipe or file from a key
 * not typed yet and would poll it forever; this one returns EOF there and
 * keeps main-thread messages handled while a slow pipe has nothing. */
static int pipe_getc(FILE *f) {
  int fd = fileno(f);
  for (;;) {
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 100);
    if (r > 0) {
      unsigned char c;
      ssize_t n = read(fd, &c, 1);
      if (n == 1) return c;
      if (n == 0 || (errno != EINTR && errno != EAGAIN)) return EOF;
    } else if (r == 0) {
      idle_hook();
    } else if (errno != EINTR) {
      return EOF;
    }
  }
}

static int pushline(lua_State *L, int firstline) {
  char *b = readline(get_prompt(firstline));
  if (b == NULL) return 0;
  size_t l = strlen(b);
  if (firstline && b[0] == '=') lua_pushfstring(L, "return %s", b + 1);
  else lua_pushlstring(L, b, l);
  free(b);
  return 1;
}

/* Lines typed at a terminal go to the history; piped ones do not. */
static void save_line(lua_State *L, int idx) {
  if (!interactive) return;
  const char *line = lua_tostring(L, idx);
  if (line && *line) {
    add_history(line);
    if (*history_path) write_history(history_path);
  }
}

static int addreturn(lua_State *L) {
  const char *line = lua_tostring(L, -1);
  const char *retline = lua_pushfstring(L, "return %s;", line);
  int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
  if (status == LUA_OK) {
    lua_remove(L, -2);
    save_line(L, -2);
  } else {
    lua_pop(L, 2);
  }
  return status;
}

/* A syntax error at <eof>: the chunk may go on on the next line. */
static int incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t lmsg;
    const char *msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= 5 && strcmp(msg + lmsg - 5, "<eof>") == 0) return 1;
  }
  return 0;
}

/* Adds lines until the chunk loads or fails for another reason; at end of
 * input the <eof> error stays and is reported. */
static int multiline(lua_State *L) {
  for (;;) {
    size_t len;
    const char *line = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, line, len, "=stdin");
    if (!incomplete(L, status) || !pushline(L, 0)) {
      save_line(L, 1);
      return status;
    }
    lua_remove(L, -2);   /* the <eof> error */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Reads a whole statement or expression; returns -1 at end of input. */
static int loadline(lua_State *L) {
  lua_settop(L, 0);
  if (!pushline(L, 1)) return -1;
  int status = addreturn(L);
  if (status != LUA_OK) status = multiline(L);
  lua_remove(L, 1);
  return status;
}

/* Prints the values on the stack, tab separated: a string as it is (as
 * lua5.4's REPL does, so print-ready text such as f:explain() reads as
 * lines), anything else with sluice.inspect. */
static int print_results(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  lua_getglobal(L, "sluice");
  lua_getfield(L, -1, "inspect");
  lua_remove(L, -2);                            /* stack: v1..vn inspect */
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (lua_type(L, i) == LUA_TSTRING) {
      lua_pushvalue(L, i);
    } else {
      lua_pushvalue(L, n + 1);
      lua_pushvalue(L, i);
      lua_call(L, 1, 1);
    }
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_addvalue(&b);
  }
  luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  sl_rt_write_line(s, len);
  return 0;
}

static void doREPL(lua_State *L) {
  interactive = isatty(0);
  const char *home = getenv("HOME");
  if (home && interactive) {
    snprintf(history_path, sizeof history_path, "%s/.sluice_history", home);
    read_history(history_path);
  }
  if (interactive) {
    rl_event_hook = idle_hook;
    rl_set_keyboard_input_timeout(100000);
  } else {
    rl_getc_function = pipe_getc;
  }
  /* help() is the REPL's own global (a script keeps its globals as they are) */
  if (lua_getglobal(L, "help") == LUA_TNIL) {
    lua_pushcfunction(L, l_help);
    lua_setglobal(L, "help");
  }
  lua_pop(L, 1);
  printf("help() lists the sluice functions; the tour is README.md, the reference lua/README.md\n");
  fflush(stdout);
  const char *oldprogname = progname;
  progname = NULL;
  int status;
  while ((status = loadline(L)) != -1) {
    if (status == LUA_OK) status = docall(L, 0, LUA_MULTRET);
    else lua_pushliteral(L, "");
    progname = oldprogname;
    if (status == LUA_OK) {
      if (lua_gettop(L) > 0) {
        lua_pushcfunction(L, print_results);
        lua_insert(L, 1);
        if (lua_pcall(L, lua_gettop(L) - 1, 0, 0) != LUA_OK) {
          l_message(lua_tostring(L, -1));
          lua_pop(L, 1);
        }
      }
    } else {
      report(L, status);
    }
    progname = NULL;
  }
  progname = oldprogname;
  lua_settop(L, 0);
  printf("\n");
  fflush(stdout);
}

/* ---- main ------------------------------------------------------------------ */

/* How long the workers get at exit to return from what they run: Lua
 * code is interrupted at once, so only a worker stuck in a C call (a
 * blocking read, a long os.execute) uses it up. */
#define EXIT_GRACE_MS 1000

static int default_workers(void) {
  const char *e = getenv("SLUICE_WORKERS");
  if (e && *e) {
    char *end;
    long n = strtol(e, &end, 10);
    if (*end == '\0' && n >= 1 && n <= 1024) return (int)n;
    fprintf(stderr, "%s: SLUICE_WORKERS must be a number from 1 to 1024, got '%s'\n", progname, e);
    exit(EXIT_FAILURE);
  }
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n >= 1 ? (int)n : 1;
}

/* SLUICE_MEMORY: the memory limit of each worker state, in bytes with an
 * optional K, M or G (powers of 1024); unset, empty or 0: no limit. */
static size_t memory_limit(void) {
  const char *e = getenv("SLUICE_MEMORY");
  if (!e || !*e) return 0;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(e, &end, 10);
  int digits = end != e, shift = 0;
  if (*end == 'K' || *end == 'k') shift = 10;
  else if (*end == 'M' || *end == 'm') shift = 20;
  else if (*end == 'G' || *end == 'g') shift = 30;
  if (shift) end++;
  if (!digits || *end || errno || e[0] == '-' || n > (SIZE_MAX >> shift)) {
    fprintf(stderr, "%s: SLUICE_MEMORY must be a number of bytes, with an optional K, M or G, got '%s'\n",
            progname, e);
    exit(EXIT_FAILURE);
  }
  return (size_t)n << shift;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = lua_touserdata(L, 2);
  int workers = (int)lua_tointeger(L, 3);
  int script = 0;
  int args = collectargs(argv, &script, &workers);
  (void)workers;
  if (args == has_error) {
    print_usage(argv[script]);
    return 0;
  }
  if (args & has_h) {
    print_usage(NULL);
    lua_pushboolean(L, 1);
    return 1;
  }
  if (args & has_v) print_version();
  createargtable(L, argv, argc, script);
  record_graph(L);
  if (!runargs(L, argv, script)) return 0;
  if (script < argc && handle_script(L, argv + script) != LUA_OK) return 0;
  if (!write_graph(L)) return 0;
  if (args & has_i) {
    doREPL(L);
  } else if (script == argc && !(args & (has_e | has_v))) {
    if (isatty(0)) {
      print_version();
      doREPL(L);
    } else if (dofile(L, NULL) != LUA_OK) {
      return 0;
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int workers = default_workers();
  int script = 0;
  collectargs(argv, &script, &workers);   /* -w must be known before the workers start */
  sl_rt_g.memory_limit = memory_limit();
  sl_pool *pool;
  lua_State *L = sl_rt_newstate(&pool);
  if (L == NULL) {
    l_message("cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  globalL = L;
  if (sl_rt_open(L, workers) != 0) {
    l_message("cannot start the worker threads");
    lua_close(L);
    sl_pool_free(pool);
    return EXIT_FAILURE;
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  lua_pushinteger(L, workers);
  int status = lua_pcall(L, 3, 1, 0);
  int result = lua_toboolean(L, -1);
  if (status != LUA_OK) l_message(lua_tostring(L, -1));
  int code = (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
  if (sl_rt_close(EXIT_GRACE_MS) != 0) {
    /* a worker stuck in a C call still uses the runtime: leave without
     * freeing anything, flushing stdout only if no worker holds it */
    if (ftrylockfile(stdout) == 0) {
      fflush(stdout);
      funlockfile(stdout);
    }
    _exit(code);
  }
  lua_close(L);
  sl_pool_free(pool);
  return code;
}
