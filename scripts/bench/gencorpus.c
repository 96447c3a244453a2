/* gencorpus — deterministic English-like corpus for the sluice benchmarks.
 *
 *   gencorpus BYTES SEED OUT.txt OUT.meta
 *   gencorpus --version      (printed as gen=N; a .meta with another gen is stale)
 *
 * Writes lines of ~10 words (5..15) drawn from a vocabulary of VOCAB
 * distinct lowercase pseudo-words with a Zipf(1) distribution: rank k has
 * weight 1/k, short words are frequent.  The first word of a line is
 * capitalised, some words are followed by a comma, each line ends with a
 * period: `line:lower():gmatch("%a+")` recovers the words.  Output stops at
 * the first line end at or after BYTES bytes.
 *
 * OUT.meta is written last (after OUT.txt is complete) and records the seed,
 * the size and the expected word-count summary in the same format as
 * scripts/bench/words.lua's summary(), so a run can be checked without a
 * baseline and a stale or half-written corpus is detected.
 *
 * Same BYTES and SEED give the same bytes on any machine: only a local
 * 64-bit PRNG and integer arithmetic decide the output.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 50000
#define GEN_VERSION 1

static uint64_t rng_state;

static uint64_t rnd(void) /* splitmix64 */
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t below(uint32_t n) /* uniform in 0..n-1 (bias negligible) */
{
    return (uint32_t)(((rnd() >> 32) * (uint64_t)n) >> 32);
}

static char *word[VOCAB];
static size_t wlen[VOCAB];
static uint64_t cdf[VOCAB]; /* cumulative weights, scaled to 2^62 */
static uint64_t count[VOCAB];

/* ---- vocabulary: syllables from onset + vowel + optional coda ---------- */
static const char *onsets[] = {"", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p",
                               "r", "s", "t", "v", "w", "y", "z", "br", "ch", "cl", "cr", "dr",
                               "fl", "fr", "gl", "gr", "pl", "pr", "sh", "sl", "sp", "st", "str",
                               "th", "tr", "wh"};
static const char *vowels[] = {"a", "e", "i", "o", "u", "y", "ai", "ea", "ee", "ie", "oo", "ou"};
static const char *codas[] = {"", "", "", "b", "ck", "d", "ft", "g", "l", "ll", "m", "n",
                              "nd", "ng", "nt", "p", "r", "rd", "rt", "s", "ss", "st", "t", "x"};
#define N(a) (sizeof(a) / sizeof((a)[0]))

#define HBITS 17
static int32_t htab[1 << HBITS];

static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static int seen_or_add(int idx)
{
    uint32_t m = (1u << HBITS) - 1, h = hash_str(word[idx], wlen[idx]) & m;
    while (htab[h] >= 0) {
        int j = htab[h];
        if (wlen[j] == wlen[idx] && memcmp(word[j], word[idx], wlen[idx]) == 0) return 1;
        h = (h + 1) & m;
    }
    htab[h] = idx;
    return 0;
}

static void make_vocab(void)
{
    memset(htab, -1, sizeof htab);
    for (int k = 0; k < VOCAB; k++) {
        /* frequent ranks get fewer syllables, like English */
        for (int tries = 0;; tries++) {
            char buf[64];
            size_t n = 0;
            int syl = k < 100 ? 1 : k < 3000 ? 1 + (int)below(2) : 2 + (below(4) == 0);
            syl += tries / 50;
            for (int s = 0; s < syl && n < 48; s++) {
                const char *parts[3] = {onsets[below(N(onsets))], vowels[below(N(vowels))],
                                        codas[below(N(codas))]};
                for (int p = 0; p < 3; p++)
                    for (const char *c = parts[p]; *c; c++) buf[n++] = *c;
            }
            word[k] = malloc(n + 1);
            if (!word[k]) { perror("malloc"); exit(1); }
            memcpy(word[k], buf, n);
            word[k][n] = 0;
            wlen[k] = n;
            if (!seen_or_add(k)) break;
            free(word[k]);
        }
    }
    /* Zipf(1): weight of rank k (1-based) is 1/k */
    double total = 0;
    for (int k = 0; k < VOCAB; k++) total += 1.0 / (k + 1);
    double acc = 0;
    for (int k = 0; k < VOCAB; k++) {
        acc += 1.0 / (k + 1);
        cdf[k] = (uint64_t)(acc / total * 4611686018427387904.0); /* 2^62 */
    }
    cdf[VOCAB - 1] = 4611686018427387904ull;
}

static int pick(void)
{
    uint64_t r = rnd() >> 2; /* 0 .. 2^62-1 */
    int lo = 0, hi = VOCAB - 1;
    while (lo < hi) { /* first k with r < cdf[k] */
        int mid = (lo + hi) / 2;
        if (r < cdf[mid]) hi = mid; else lo = mid + 1;
    }
    return lo;
}

static int by_count(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (count[i] != count[j]) return count[i] > count[j] ? -1 : 1;
    return strcmp(word[i], word[j]);
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("gen=%d\n", GEN_VERSION);
        return 0;
    }
    if (argc != 5) {
        fprintf(stderr, "usage: gencorpus BYTES SEED OUT.txt OUT.meta\n");
        return 2;
    }
    unsigned long long bytes = strtoull(argv[1], NULL, 10);
    unsigned long long seed = strtoull(argv[2], NULL, 10);
    rng_state = seed * 0x2545F4914F6CDD1Dull + 1;
    make_vocab();

    FILE *out = fopen(argv[3], "wb");
    if (!out) { perror(argv[3]); return 1; }
    static char line[4096];
    unsigned long long written = 0, total = 0, lines = 0;
    while (written < bytes) {
        size_t n = 0;
        int words = 5 + (int)below(11);
        for (int i = 0; i < words; i++) {
            int k = pick();
            count[k]++;
            memcpy(line + n, word[k], wlen[k]);
            if (i == 0) line[n] = (char)(line[n] - 'a' + 'A');
            n += wlen[k];
            if (i + 1 < words) {
                if (below(12) == 0) line[n++] = ',';
                line[n++] = ' ';
            }
        }
        line[n++] = '.';
        line[n++] = '\n';
        if (fwrite(line, 1, n, out) != n) { perror("write"); return 1; }
        written += n;
        total += (unsigned long long)words;
        lines++;
    }
    if (fclose(out) != 0) { perror("close"); return 1; }

    static int order[VOCAB];
    int distinct = 0;
    for (int k = 0; k < VOCAB; k++)
        if (count[k]) order[distinct++] = k;
    qsort(order, (size_t)distinct, sizeof order[0], by_count);

    FILE *meta = fopen(argv[4], "w");
    if (!meta) { perror(argv[4]); return 1; }
    fprintf(meta, "gen=%d\nseed=%llu\nrequested=%llu\nbytes=%llu\nlines=%llu\n", GEN_VERSION,
            seed, bytes, written, lines);
    fprintf(meta, "result=words=%llu distinct=%d top=", total, distinct);
    for (int i = 0; i < 10 && i < distinct; i++)
        fprintf(meta, "%s%s:%llu", i ? "," : "", word[order[i]],
                (unsigned long long)count[order[i]]);
    fprintf(meta, "\n");
    if (fclose(meta) != 0) { perror("close"); return 1; }
    return 0;
}
