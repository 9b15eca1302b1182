/*
 * AVX2 + FMA kernels (x86-64 from Haswell / Zen 1 on).  Panel-major layout
 * (isa.h), one 256-bit register per panel row: 8 floats, 4 doubles; bf16 and
 * int8 weights in the shared pair / quad layouts, widened to float in
 * registers (panel_reduced_impl.h).
 * Compiled with a target pragma, so the rest of the build stays baseline
 * x86-64 and this file's code only runs where gru_isa_select allows it.
 */
#include "isa.h"

#if GRU_X86_DISPATCH
#include <math.h>

static int avx2_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

#define REAL float
#define GRU_NAME(x) avx2_##x##_f32
#define GRU_EXP gru_expf
#define GRU_TANH gru_tanhf
#define GRU_FABS fabsf
#define GRU_LOG logf
#define GRU_PANEL 8
#define GRU_MAX_ROWS 6 /* 2 panels x 6 rows: 12 accumulators + 2 weights of 16 registers */
#include "elementwise_impl.h"
#include "panel_kernels_impl.h"
#include "template_end.h"

#define REAL double
#define GRU_NAME(x) avx2_##x##_f64
#define GRU_EXP exp
#define GRU_TANH tanh
#define GRU_FABS fabs
#define GRU_LOG log
#define GRU_PANEL 4
#define GRU_MAX_ROWS 6
#include "elementwise_impl.h"
#include "panel_kernels_impl.h"
#include "template_end.h"

/* bf16 and int8 weights (isa.h pair / quad layouts), widened in registers */
#define GRU_NAME(x) avx2_##x
#define GRU_PANEL 8
#define GRU_MAX_ROWS 6
#include "panel_reduced_impl.h"
#include "template_end.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

const gru_isa gru_isa_avx2 = {
    "avx2",
    avx2_supported,
    {
        [GRU_FORMAT_F32] = {8, gru_panel_major_bytes_f32, gru_panel_major_pack_f32, avx2_matmul_f32},
        [GRU_FORMAT_F64] = {4, gru_panel_major_bytes_f64, gru_panel_major_pack_f64, avx2_matmul_f64},
        [GRU_FORMAT_BF16] = {8, gru_bf16_pairs_bytes, gru_bf16_pairs_pack, avx2_matmul_bf16},
        [GRU_FORMAT_INT8] = {8, gru_int8_quads_bytes, gru_int8_quads_pack, avx2_matmul_int8},
    },
    {
        [GRU_FLOAT32] = {avx2_activation_f32, avx2_gates_f32},
        [GRU_FLOAT64] = {avx2_activation_f64, avx2_gates_f64},
    },
};
#endif
