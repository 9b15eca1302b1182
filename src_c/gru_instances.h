/*
 * Instantiates the forward template (gru_impl.h) for the REAL and
 * GRU_SUFFIX set by the includer: once portably (names ending GRU_SUFFIX) and,
 * on x86-64, once more for AVX2+FMA (names ending GRU_SUFFIX_avx2).
 */
#define GRU_PASTE2(a, b) a##b
#define GRU_PASTE(a, b) GRU_PASTE2(a, b)

#define GRU_NAME(x) GRU_PASTE(x, GRU_SUFFIX)
#define GRU_AVX2_BUILD 0
#include "gru_impl.h"
#undef GRU_NAME
#undef GRU_AVX2_BUILD

#if GRU_X86_DISPATCH
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define GRU_NAME(x) GRU_PASTE(GRU_PASTE(x, GRU_SUFFIX), _avx2)
#define GRU_AVX2_BUILD 1
#include "gru_impl.h"
#undef GRU_NAME
#undef GRU_AVX2_BUILD
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#undef GRU_PASTE
#undef GRU_PASTE2
