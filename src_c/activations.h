/*
 * Scalar float32 exp and tanh written without libm calls, so that loops over
 * them vectorise in every ISA file that includes this (16 floats a step in the
 * AVX-512 build).
 */
#ifndef GRU_INFER_VECTOR_MATH
#define GRU_INFER_VECTOR_MATH
#include <math.h>
#include <stdint.h>

/* expf without libm calls, so loops over it vectorise (Cephes expf):
 * e^x = 2^n e^r with |r| <= ln(2)/2 and a degree-6 polynomial for e^r.
 * Max relative error vs. libm ~2 ulp (tested over a dense grid).  Inputs are
 * clamped to [-87.3, 88] (e^x stays a normal float); NaN passes through. */
static inline float gru_expf(float x)
{
    union {
        int32_t i;
        float f;
    } scale;
    float fx, r, p;
    x = x > 88.0f ? 88.0f : x;
    x = x < -87.33654f ? -87.33654f : x;
    fx = x * 1.44269504088896341f;
    fx = (fx + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 trick */
    r = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    scale.i = ((int32_t)fx + 127) << 23;
    return p * scale.f;
}

/* tanhf from gru_expf: an odd polynomial near 0 (Cephes tanhf), where
 * 1 - 2 / (e^2x + 1) would lose digits, and that form elsewhere. */
static inline float gru_tanhf(float x)
{
    const float a = x < 0 ? -x : x;
    const float z = x * x;
    const float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z +
                          1.33314422036e-1f) * z - 3.33332819422e-1f) * z * x + x;
    float large = 1.0f - 2.0f / (gru_expf(2.0f * a) + 1.0f);
    large = x < 0 ? -large : large;
    return a < 0.625f ? small : large;
}
#endif
