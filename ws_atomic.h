/* Licensed under the Apache License, Version 2.0.
 *
 * ws_atomic.h: the few atomic operations the module's cross-thread code
 * needs (reference counts, byte counters).  With GCC and clang they are
 * the compiler's __atomic builtins rather than APR's apr_atomic_*: those
 * live in libapr, which ThreadSanitizer does not instrument, so it would
 * take every reference count for a data race and could not check the
 * code that shares connections between threads.
 */
#ifndef WS_ATOMIC_H
#define WS_ATOMIC_H

#include "apr.h"

#if defined(__GNUC__) || defined(__clang__)

#define WS_ATOMIC_ORDER __ATOMIC_SEQ_CST

static APR_INLINE apr_uint32_t ws_atomic_read32(const apr_uint32_t *p)
{
    return __atomic_load_n(p, WS_ATOMIC_ORDER);
}

static APR_INLINE void ws_atomic_set32(apr_uint32_t *p, apr_uint32_t v)
{
    __atomic_store_n(p, v, WS_ATOMIC_ORDER);
}

static APR_INLINE void ws_atomic_inc32(apr_uint32_t *p)
{
    __atomic_add_fetch(p, 1, WS_ATOMIC_ORDER);
}

/* Zero when the value became zero (as apr_atomic_dec32). */
static APR_INLINE apr_uint32_t ws_atomic_dec32(apr_uint32_t *p)
{
    return __atomic_sub_fetch(p, 1, WS_ATOMIC_ORDER);
}

static APR_INLINE apr_uint64_t ws_atomic_read64(const apr_uint64_t *p)
{
    return __atomic_load_n(p, WS_ATOMIC_ORDER);
}

static APR_INLINE void ws_atomic_set64(apr_uint64_t *p, apr_uint64_t v)
{
    __atomic_store_n(p, v, WS_ATOMIC_ORDER);
}

static APR_INLINE void ws_atomic_add64(apr_uint64_t *p, apr_uint64_t v)
{
    __atomic_add_fetch(p, v, WS_ATOMIC_ORDER);
}

static APR_INLINE void ws_atomic_sub64(apr_uint64_t *p, apr_uint64_t v)
{
    __atomic_sub_fetch(p, v, WS_ATOMIC_ORDER);
}

#else /* other compilers: APR's */

#include "apr_atomic.h"

#define ws_atomic_read32(p)    apr_atomic_read32((apr_uint32_t *)(p))
#define ws_atomic_set32        apr_atomic_set32
#define ws_atomic_inc32(p)     ((void)apr_atomic_inc32(p))
#define ws_atomic_dec32        apr_atomic_dec32
#define ws_atomic_read64(p)    apr_atomic_read64((apr_uint64_t *)(p))
#define ws_atomic_set64        apr_atomic_set64
#define ws_atomic_add64(p, v)  ((void)apr_atomic_add64(p, v))
#define ws_atomic_sub64        apr_atomic_sub64

#endif

#endif /* WS_ATOMIC_H */
