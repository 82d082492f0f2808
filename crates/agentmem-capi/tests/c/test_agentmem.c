/*
 * The C API exercised from C: compiled with cc against the installed header
 * and library (pkg-config agentmem) and run under valgrind by
 * scripts/test-capi.sh. Prints "N passed, N failed" and exits non-zero on any
 * failure.
 *
 * Usage: test_agentmem [SOCKET]  (with SOCKET, the same checks also run
 * against agentmemd listening there)
 */
#define _POSIX_C_SOURCE 200809L /* mkdtemp */
#include <agentmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (cond) {                                                                \
      passed++;                                                                \
    } else {                                                                   \
      failed++;                                                                \
      fprintf(stderr, "%s:%d: FAILED: %s (last error: %s)\n", __FILE__,        \
              __LINE__, #cond, agentmem_last_error_message());                 \
    }                                                                          \
  } while (0)

#define OK(call) CHECK((call) == AGENTMEM_OK)

static const char PROMPT[] =
    "You are a careful coding agent. Read the code before changing it, run "
    "the tests, and explain what you did in plain words.";

/*
 * Every handle type passed where each other type is expected: an error code,
 * and the handle that was passed (and the one whose value it might share)
 * still works. Also SIZE_MAX sizes: AGENTMEM_TOO_LARGE, never an abort.
 */
static void cross_types(agentmem_ctx ctx) {
  agentmem_agent ag;
  agentmem_smu smu;
  agentmem_conversation conv;
  OK(agent_register(ctx, "cross-types", "tenant-x", &ag));
  OK(agent_alloc_smu(ag, AGENTMEM_BLOB, "cross", 5, &smu));
  OK(agent_conversation_open(ag, &conv));
  uint64_t raw[4] = {ctx.opaque, ag.opaque, smu.opaque, conv.opaque};
  for (int i = 0; i < 4; i++)
    for (int j = i + 1; j < 4; j++)
      CHECK(raw[i] != raw[j]);
  for (int t = 0; t < 4; t++) {
    uint64_t v = raw[t];
    agentmem_ctx c = {v};
    agentmem_agent a = {v};
    agentmem_smu u = {v};
    agentmem_conversation k = {v};
    struct agent_mem_stats st;
    size_t len;
    uint64_t n;
    agentmem_smu h;
    agentmem_conversation hc;
    agentmem_agent ha;
    if (t != 0) { /* not a context */
      CHECK(agentmem_close(c) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_stats(c, &st) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_register(c, "x", "t", &ha) == AGENTMEM_INVALID_HANDLE);
    }
    if (t != 1) { /* not an agent */
      CHECK(agent_alloc_smu(a, AGENTMEM_BLOB, "x", 1, &h) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_set_state(a, AGENTMEM_IDLE) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_conversation_open(a, &hc) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_unregister(a) == AGENTMEM_INVALID_HANDLE);
    }
    if (t != 2) { /* not a unit */
      CHECK(agent_smu_size(u, &len) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_read(u, NULL, 0, &len) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_mark_hot(u) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_share(u, ag, &h) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_free(u) == AGENTMEM_INVALID_HANDLE);
    }
    if (t != 3) { /* not a conversation */
      CHECK(agent_conversation_append(k, "m", 1, &n) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_conversation_len(k, &n) == AGENTMEM_INVALID_HANDLE);
      CHECK(agent_conversation_delete(k) == AGENTMEM_INVALID_HANDLE);
    }
  }
  /* Every handle survived the wrong uses. */
  struct agent_mem_stats st;
  size_t len = 0;
  uint64_t n = 0;
  OK(agent_stats(ctx, &st));
  OK(agent_smu_size(smu, &len));
  CHECK(len == 5);
  OK(agent_conversation_append(conv, "hello", 5, &n));
  OK(agent_conversation_len(conv, &n));
  CHECK(n == 1);
  /* Sizes no object can have. */
  agentmem_smu h;
  CHECK(agent_alloc_smu(ag, AGENTMEM_BLOB, "x", SIZE_MAX, &h) == AGENTMEM_TOO_LARGE);
  CHECK(agent_alloc_smu(ag, AGENTMEM_BLOB, "x", SIZE_MAX / 2 + 1, &h) == AGENTMEM_TOO_LARGE);
  CHECK(agent_conversation_append(conv, "x", SIZE_MAX, &n) == AGENTMEM_TOO_LARGE);
  OK(agent_free(smu));
  OK(agent_unregister(ag));
}

static void exercise(agentmem_ctx ctx, int daemon) {
  agentmem_agent agents[100];
  agentmem_smu prompts[100];
  char name[32];
  for (int i = 0; i < 100; i++) {
    snprintf(name, sizeof name, "agent-%d", i);
    OK(agent_register(ctx, name, "tenant-a", &agents[i]));
    OK(agent_alloc_smu(agents[i], AGENTMEM_SYSTEM_PROMPT, PROMPT,
                       sizeof PROMPT - 1, &prompts[i]));
  }

  /* Read back, with the size query first. */
  size_t len = 0;
  CHECK(agent_read(prompts[7], NULL, 0, &len) == AGENTMEM_BUFFER_TOO_SMALL);
  CHECK(len == sizeof PROMPT - 1);
  char *buf = malloc(len);
  OK(agent_read(prompts[7], buf, len, &len));
  CHECK(len == sizeof PROMPT - 1 && memcmp(buf, PROMPT, len) == 0);
  free(buf);
  OK(agent_smu_size(prompts[3], &len));
  CHECK(len == sizeof PROMPT - 1);

  /* 100 agents, one prompt: deduplicated. */
  struct agent_mem_stats st;
  OK(agent_stats(ctx, &st));
  CHECK(st.total_allocated == 100 * (sizeof PROMPT - 1));
  CHECK(st.total_deduplicated == 99 * (sizeof PROMPT - 1));
  CHECK(st.hot_bytes + st.warm_bytes + st.cold_bytes > 0);
  CHECK(st.hot_bytes + st.warm_bytes + st.cold_bytes < 2 * sizeof PROMPT);
  printf("100 agents, one %zu-byte prompt: allocated %llu, deduplicated %llu, "
         "hot %llu, warm %llu, cold %llu, ratio %.2f\n",
         sizeof PROMPT - 1, (unsigned long long)st.total_allocated,
         (unsigned long long)st.total_deduplicated,
         (unsigned long long)st.hot_bytes, (unsigned long long)st.warm_bytes,
         (unsigned long long)st.cold_bytes, st.compression_ratio);

  /* Sharing a private unit with an agent of another tenant. */
  agentmem_agent other;
  OK(agent_register(ctx, "outsider", "tenant-b", &other));
  agentmem_smu secret, shared;
  const char s[] = "private tool result";
  OK(agent_alloc_smu(agents[0], AGENTMEM_TOOL_RESULT, s, sizeof s - 1, &secret));
  OK(agent_share(secret, other, &shared));
  char small[64];
  OK(agent_read(shared, small, sizeof small, &len));
  CHECK(len == sizeof s - 1 && memcmp(small, s, len) == 0);
  OK(agent_mark_hot(shared));
  OK(agent_free(secret));
  OK(agent_read(shared, small, sizeof small, &len)); /* still held by other */
  OK(agent_free(shared));
  CHECK(agent_free(shared) == AGENTMEM_INVALID_HANDLE); /* released handle */
  CHECK(agent_read(shared, small, sizeof small, &len) == AGENTMEM_INVALID_HANDLE);
  CHECK(strstr(agentmem_last_error_message(), "agent_free") != NULL);

  /* Conversations. */
  agentmem_conversation conv;
  OK(agent_conversation_open(agents[1], &conv));
  char msg[64];
  for (int i = 0; i < 200; i++) {
    int n = snprintf(msg, sizeof msg, "{\"role\":\"user\",\"content\":\"message %d\"}", i);
    uint64_t index = 0;
    OK(agent_conversation_append(conv, msg, (size_t)n, &index));
    CHECK(index == (uint64_t)i);
  }
  uint64_t n = 0;
  OK(agent_conversation_len(conv, &n));
  CHECK(n == 200);
  OK(agent_set_state(agents[1], AGENTMEM_PAUSED));
  OK(agent_set_state(agents[1], AGENTMEM_ACTIVE));
  OK(agent_conversation_read(conv, 150, small, sizeof small, &len));
  CHECK(len == strlen("{\"role\":\"user\",\"content\":\"message 150\"}") &&
        memcmp(small, "{\"role\":\"user\",\"content\":\"message 150\"}", len) == 0);
  CHECK(agent_conversation_read(conv, 200, small, sizeof small, &len) ==
        AGENTMEM_OUT_OF_RANGE);

  /* Bad input: every one an error code, none a crash. */
  agentmem_smu h;
  agentmem_agent zero_agent = {0};
  agentmem_smu zero_smu = {0};
  CHECK(agent_alloc_smu(agents[0], 42, "x", 1, &h) == AGENTMEM_INVALID_ARGUMENT);
  CHECK(agent_alloc_smu(agents[0], AGENTMEM_BLOB, NULL, 5, &h) == AGENTMEM_NULL_POINTER);
  CHECK(agent_alloc_smu(agents[0], AGENTMEM_BLOB, "x", 1, NULL) == AGENTMEM_NULL_POINTER);
  CHECK(agent_alloc_smu(agents[0], AGENTMEM_BLOB, "", 0, &h) == AGENTMEM_INVALID_ARGUMENT);
  CHECK(agent_alloc_smu(zero_agent, AGENTMEM_BLOB, "x", 1, &h) == AGENTMEM_INVALID_HANDLE);
  CHECK(agent_read(zero_smu, small, sizeof small, &len) == AGENTMEM_INVALID_HANDLE);
  CHECK(agent_register(ctx, NULL, NULL, &other) == AGENTMEM_NULL_POINTER);
  CHECK(agent_register(ctx, "\xff\xfe", NULL, &other) == AGENTMEM_INVALID_ARGUMENT);
  CHECK(agent_set_state(agents[0], 99) == AGENTMEM_INVALID_ARGUMENT);
  CHECK(agent_stats(ctx, NULL) == AGENTMEM_NULL_POINTER);
  CHECK(agent_read(prompts[0], small, 4, &len) == AGENTMEM_BUFFER_TOO_SMALL);
  CHECK(len == sizeof PROMPT - 1);
  CHECK(agent_alloc_smu_ex(agents[0], AGENTMEM_BLOB, "x", 1, 7, &h) ==
        AGENTMEM_INVALID_ARGUMENT);

  /* Unregistering invalidates the agent's handles. */
  OK(agent_unregister(agents[1]));
  CHECK(agent_conversation_len(conv, &n) == AGENTMEM_INVALID_HANDLE);
  CHECK(agent_read(prompts[1], small, sizeof small, &len) == AGENTMEM_INVALID_HANDLE);
  CHECK(agent_set_state(agents[1], AGENTMEM_IDLE) == AGENTMEM_INVALID_HANDLE);

  struct agent_mem_stats before;
  OK(agent_stats(ctx, &before));
  for (int i = 0; i < 100; i++)
    if (i != 1)
      OK(agent_free(prompts[i]));
  OK(agent_stats(ctx, &st));
  if (daemon) {
    /* agentmemd keeps an unregistered agent's units for its grace time. */
    CHECK(st.total_allocated == before.total_allocated - 99 * (sizeof PROMPT - 1));
  } else {
    CHECK(st.total_allocated == 0);
  }

  cross_types(ctx);

  /* A closed context refuses everything. */
  OK(agentmem_close(ctx));
  CHECK(agentmem_close(ctx) == AGENTMEM_CLOSED);
  CHECK(agent_stats(ctx, &st) == AGENTMEM_CLOSED);
  CHECK(agent_alloc_smu(agents[0], AGENTMEM_BLOB, "x", 1, &h) == AGENTMEM_INVALID_HANDLE);
  CHECK(strlen(agentmem_last_error_message()) > 0);
}

/* A store directory: write, close, reopen, read back byte for byte. */
static void persistence(void) {
  char dir[] = "/tmp/agentmem-c-test-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char store[64];
  snprintf(store, sizeof store, "%s/store", dir);
  agentmem_ctx ctx, second;
  CHECK(agentmem_open_dir(NULL, NULL, &ctx) == AGENTMEM_NULL_POINTER);
  OK(agentmem_open_dir(store, NULL, &ctx));
  /* The directory is locked while open. */
  CHECK(agentmem_open_dir(store, NULL, &second) == AGENTMEM_IO);
  CHECK(strstr(agentmem_last_error_message(), "already opened") != NULL);

  agentmem_agent a;
  OK(agent_register(ctx, "persistent", "t", &a));
  static unsigned char blob[50000];
  for (size_t i = 0; i < sizeof blob; i++)
    blob[i] = (unsigned char)((i * 131) ^ (i >> 5));
  agentmem_smu h;
  OK(agent_alloc_smu(a, AGENTMEM_TOOL_RESULT, blob, sizeof blob, &h));
  char id[AGENTMEM_ID_LEN];
  OK(agent_smu_id(h, id));
  CHECK(strlen(id) == 64);
  agentmem_conversation c;
  OK(agent_conversation_open(a, &c));
  char msg[32];
  for (int i = 0; i < 10; i++) {
    int n = snprintf(msg, sizeof msg, "message %d", i);
    OK(agent_conversation_append(c, msg, (size_t)n, NULL));
  }
  uint32_t cid;
  OK(agent_conversation_id(c, &cid));
  OK(agentmem_close(ctx));

  OK(agentmem_open_dir(store, NULL, &ctx));
  OK(agent_register(ctx, "persistent", "t", &a));
  OK(agent_smu_find(a, id, &h));
  size_t len = 0;
  OK(agent_smu_size(h, &len));
  CHECK(len == sizeof blob);
  unsigned char *buf = malloc(sizeof blob);
  OK(agent_read(h, buf, sizeof blob, &len));
  CHECK(len == sizeof blob && memcmp(buf, blob, len) == 0);
  free(buf);
  OK(agent_conversation_find(a, cid, &c));
  uint64_t count = 0;
  OK(agent_conversation_len(c, &count));
  CHECK(count == 10);
  OK(agent_conversation_read(c, 7, msg, sizeof msg, &len));
  CHECK(len == 9 && memcmp(msg, "message 7", 9) == 0);
  OK(agent_conversation_append(c, "after", 5, NULL));
  CHECK(agent_smu_find(a, "not-an-id", &h) == AGENTMEM_INVALID_ARGUMENT);
  CHECK(agent_conversation_find(a, 9999, &c) == AGENTMEM_UNKNOWN_CONVERSATION);
  /* Another agent of the store may not read a private unit. */
  agentmem_agent other;
  OK(agent_register(ctx, "other", "elsewhere", &other));
  CHECK(agent_smu_find(other, id, &h) == AGENTMEM_ACCESS_DENIED);
  OK(agent_free(h));
  OK(agentmem_close(ctx));

  char cmd[96];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  CHECK(system(cmd) == 0);
}

int main(int argc, char **argv) {
  printf("libagentmem %s\n", agentmem_version());
  CHECK(strcmp(agentmem_result_message(AGENTMEM_OK), "success") == 0);
  CHECK(strcmp(agentmem_result_message(12345), "unknown result code") == 0);

  /* Oversized data with a 1 KiB limit. */
  agentmem_embedded_options opts = {0};
  opts.max_unit_size = 1024;
  agentmem_ctx ctx;
  OK(agentmem_open_embedded(&opts, &ctx));
  agentmem_agent a;
  OK(agent_register(ctx, "a", NULL, &a));
  static char big[4096];
  agentmem_smu h;
  CHECK(agent_alloc_smu(a, AGENTMEM_BLOB, big, sizeof big, &h) == AGENTMEM_TOO_LARGE);
  CHECK(strstr(agentmem_last_error_message(), "maximum unit size") != NULL);
  OK(agentmem_close(ctx));
  agentmem_ctx zero = {0};
  CHECK(agent_stats(zero, NULL) == AGENTMEM_NULL_POINTER);
  struct agent_mem_stats st;
  CHECK(agent_stats(zero, &st) == AGENTMEM_INVALID_HANDLE);

  OK(agentmem_open_embedded(NULL, &ctx));
  exercise(ctx, 0);
  persistence();

#ifdef AGENTMEM_HAVE_CONNECT
  CHECK(agentmem_connect("/nonexistent/agentmem.sock", &ctx) == AGENTMEM_NOT_RUNNING);
  CHECK(strstr(agentmem_last_error_message(), "not running") != NULL);
  if (argc > 1) {
    OK(agentmem_connect(argv[1], &ctx));
    exercise(ctx, 1);
  }
#else
  (void)argc;
  (void)argv;
#endif

  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
