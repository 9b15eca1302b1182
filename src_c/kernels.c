/* Packed-panel kernels, instantiated for float32 and float64, each compiled
 * for AVX2+FMA and portably; the choice is made once at run time so one build
 * runs on any x86-64. */
#include "gru.h"
#include "kernels.h"

#define REAL float
#define GRU_NAME(x) x##_f32
#include "kernels_impl.h"
#undef REAL
#undef GRU_NAME

#define REAL double
#define GRU_NAME(x) x##_f64
#include "kernels_impl.h"
#undef REAL
#undef GRU_NAME

static const char *selected_kernel = "generic";

void gru_select_kernels(void)
{
#if GRU_X86_DISPATCH
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        matvec_impl_f32 = packed_matvec_avx2_f32;
        matvec_impl_f64 = packed_matvec_avx2_f64;
        selected_kernel = "avx2-fma";
    }
#endif
}

const char *gru_kernel_name(void) { return selected_kernel; }
