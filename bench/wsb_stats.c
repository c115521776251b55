/* Licensed under the Apache License, Version 2.0.
 *
 * wsb_stats.c: a log-linear latency histogram (like HdrHistogram with 6
 * bits of precision): values below 128 ns have a bucket each, above that
 * each power of two is split into 64 buckets, so a quantile is off by
 * less than 1/64 (1.6 %).
 */
#include "wsbench.h"

#define SUB_BITS 6
#define SUB      (1u << SUB_BITS)
#define BUCKETS  (64 * 64)

static int msb(uint64_t v)
{
    return 63 - __builtin_clzll(v);
}

static unsigned bucket_of(uint64_t ns)
{
    int shift;

    if (ns < 2 * SUB) {
        return (unsigned)ns;
    }
    shift = msb(ns) - SUB_BITS;
    return (unsigned)(SUB * shift + (ns >> shift));
}

/* The middle of a bucket's range. */
static uint64_t value_of(unsigned idx)
{
    unsigned shift;
    uint64_t sub;

    if (idx < 2 * SUB) {
        return idx;
    }
    shift = idx / SUB - 1;
    sub = idx - SUB * shift;
    return (sub << shift) + ((1ull << shift) >> 1);
}

void wsb_hist_add(uint64_t *hist, uint64_t ns)
{
    unsigned idx = bucket_of(ns);

    hist[idx < BUCKETS ? idx : BUCKETS - 1]++;
}

uint64_t wsb_hist_quantile(const uint64_t *hist, double q)
{
    uint64_t total = 0, seen = 0, want;
    unsigned i;

    for (i = 0; i < BUCKETS; i++) {
        total += hist[i];
    }
    if (total == 0) {
        return 0;
    }
    want = (uint64_t)(q * (double)total);
    if (want >= total) {
        want = total - 1;
    }
    for (i = 0; i < BUCKETS; i++) {
        seen += hist[i];
        if (seen > want) {
            return value_of(i);
        }
    }
    return value_of(BUCKETS - 1);
}
