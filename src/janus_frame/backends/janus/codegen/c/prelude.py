"""C source of the vectorisable math used by generated kernels.

Out: ``PRELUDE`` (a string prepended to every generated translation unit).

Two implementations of the float32 functions (``jf_exp``, ``jf_tanh``, ...),
chosen when the library is compiled:

- with ``-DJF_LIBMVEC`` (:func:`build.libmvec_available`: glibc >= 2.35 on
  x86-64), they call libm's functions, declared ``simd``: gcc vectorises a
  loop calling ``tanhf`` into calls of glibc's vector variants
  (``_ZGVeN16v_tanhf`` for 16 lanes of AVX-512), written for the purpose and
  fast (tanh over 4M floats: 0.76 ms, the polynomial below 1.7 ms; a softmax
  row 25% faster), within 4 ulp, with IEEE special values.  Double math
  (``exp`` ...) is vectorised the same way;
- otherwise, branch-free straight-line code on scalars (selects instead of
  branches, bit casts through memcpy), so that gcc inlines it and vectorises
  the calling loop.  These polynomials are always there as ``jf_*_p``: loop
  bodies where a library call would spill many live values call them
  (:func:`codegen.c.stages.inline_math`).

Both are compiled without ``-ffast-math``: inf/NaN inputs give the results
eager gives.  Accuracy is a few ulp (checked against torch, special values
included, by the unary and binary tests of tests/backends/test_pointwise.py,
for both implementations).  Only standard headers are included, which keeps a
compile at a fraction of a second.
"""

PRELUDE = r"""
#include <stdint.h>
#include <stdbool.h>
#include <string.h>
#include <math.h>
#ifndef __cplusplus
#define JF_RESTRICT restrict
#else
#define JF_RESTRICT __restrict__
#endif
#define JF_INLINE static inline __attribute__((always_inline))

JF_INLINE float jf_i2f(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
JF_INLINE int32_t jf_f2i(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* The accumulator of a float row sum over 1025..4096 elements: the vector
   loop keeps one partial per lane, 16 with AVX-512 (<= 256 updates each:
   float), fewer elsewhere (double). */
#if defined(__AVX512F__)
typedef float jf_rsum_t;
#else
typedef double jf_rsum_t;
#endif

/* Inline polynomials (the jf_*_p functions): the fallback below, and the
   choice inside loop bodies with many values live across the call, where a
   library call would spill them all (codegen.c.stages.inline_math). */
/* exp: k = round(x/ln2), r = x - k ln2 (two-constant Cody-Waite), degree-6
   polynomial, 2^k applied in two halves so subnormal results are exact. */
JF_INLINE float jf_exp_p(float x) {
  float xc = x < -104.0f ? -104.0f : (x > 88.8f ? 88.8f : x);
  float k = __builtin_rintf(xc * 1.44269504088896341f);
  float r = xc - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  float y = p * r * r + r + 1.0f;
  int32_t ki = (int32_t)k;
  int32_t k1 = ki >> 1;  /* floor(ki/2): either half keeps y 2^k1 normal; no
                           sign fix-up as for / (bit-identical results over
                           every third float) */
  int32_t k2 = ki - k1;
  y = y * jf_i2f((k1 + 127) << 23);
  y = y * jf_i2f((k2 + 127) << 23);
  y = x > 88.72283905206835f ? INFINITY : y;
  y = x < -103.97f ? 0.0f : y;
  return x != x ? x : y;
}

/* log: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by the cephes
   polynomial in (m-1); subnormals pre-scaled by 2^25. */
JF_INLINE float jf_log_p(float x) {
  bool sub = x < 1.17549435e-38f;
  float xs = sub ? x * 33554432.0f : x;
  int32_t bits = jf_f2i(xs);
  int32_t e = ((bits >> 23) & 0xff) - 126;
  float m = jf_i2f((bits & 0x007fffff) | 0x3f000000);
  bool small = m < 0.707106781186547524f;
  m = small ? m + m : m;
  float fe = (float)(small ? e - 1 : e) - (sub ? 25.0f : 0.0f);
  float f = m - 1.0f;
  float z = f * f;
  float p = 7.0376836292e-2f;
  p = p * f - 1.1514610310e-1f;
  p = p * f + 1.1676998740e-1f;
  p = p * f - 1.2420140846e-1f;
  p = p * f + 1.4249322787e-1f;
  p = p * f - 1.6668057665e-1f;
  p = p * f + 2.0000714765e-1f;
  p = p * f - 2.4999993993e-1f;
  p = p * f + 3.3333331174e-1f;
  float y = f * z * p;
  y = y + fe * -2.12194440e-4f;
  y = y - 0.5f * z;
  y = f + y;
  y = y + fe * 0.693359375f;
  y = x == INFINITY ? INFINITY : y;
  y = x == 0.0f ? -INFINITY : y;
  y = x < 0.0f ? NAN : y;
  return x != x ? x : y;
}

JF_INLINE float jf_sigmoid_p(float x) { return 1.0f / (1.0f + jf_exp_p(-x)); }

/* tanh: odd polynomial for |x| < 0.625, 1 - 2/(e^{2|x|}+1) beyond. */
JF_INLINE float jf_tanh_p(float x) {
  float a = __builtin_fabsf(x);
  float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  float small = __builtin_copysignf(x + x * z * p, x); /* odd: tanh(-0) = -0 */
  float e = jf_exp_p(2.0f * (a < 44.0f ? a : 44.0f));
  float big = 1.0f - 2.0f / (e + 1.0f);
  big = x < 0.0f ? -big : big;
  float y = a < 0.625f ? small : big;
  return x != x ? x : y;
}

/* erf: x P(x^2) below 0.875; 1 - e^{-x^2} Q(1/|x|) up to 4; +-1 beyond. */
JF_INLINE float jf_erf_p(float x) {
  float a = __builtin_fabsf(x);
  float z = x * x;
  float p = -6.235059123e-04f;
  p = p * z + 5.038721979e-03f;
  p = p * z - 2.679629653e-02f;
  p = p * z + 1.128260807e-01f;
  p = p * z - 3.761256915e-01f;
  p = p * z + 1.128379163e+00f;
  float small = x * p;
  float t = 1.0f / (a < 0.875f ? 1.0f : a);
  float q = -2.182008017e-02f;
  q = q * t + 1.631536500e-01f;
  q = q * t - 5.340844108e-01f;
  q = q * t + 9.880850314e-01f;
  q = q * t - 1.084210734e+00f;
  q = q * t + 6.030338768e-01f;
  q = q * t + 6.575810098e-02f;
  q = q * t - 3.261918329e-01f;
  q = q * t + 1.095719332e-02f;
  q = q * t + 5.628336408e-01f;
  q = q * t + 6.914316299e-05f;
  float ac = a < 4.0f ? a : 4.0f;
  float big = 1.0f - jf_exp_p(-ac * ac) * q;
  big = a >= 4.0f ? 1.0f : big;
  big = x < 0.0f ? -big : big;
  float y = a < 0.875f ? small : big;
  return x != x ? x : y;
}

/* log1p(x) = log(u) - ((u-1)-x)/u with u = 1+x (exact correction term). */
JF_INLINE float jf_log1p_p(float x) {
  float u = 1.0f + x;
  float d = u - 1.0f;
  float y = jf_log_p(u) - (d - x) / u;
  y = d == 0.0f ? x : y;
  y = u == 0.0f ? -INFINITY : y;
  y = x == INFINITY ? INFINITY : y;
  return x != x ? x : y;
}

/* expm1(x) = (u-1) x / log(u) with u = e^x (Kahan's trick). */
JF_INLINE float jf_expm1_p(float x) {
  float u = jf_exp_p(x);
  float um = u - 1.0f;
  float l = jf_log_p(u);
  float y = um * x / (l == 0.0f ? 1.0f : l);
  y = u == 1.0f ? x : y;
  y = um == -1.0f ? -1.0f : y;
  y = __builtin_fabsf(x) > 0.5f ? um : y;
  return x != x ? x : y;
}


#ifdef JF_LIBMVEC
/* glibc's vector math: the declarations glibc itself makes only under
   -ffast-math, so that gcc maps these calls in a vectorised loop to the
   variants in libmvec (linked with -lmvec) */
#ifdef __cplusplus
extern "C" {
#endif
#define JF_SIMD __attribute__((simd("notinbranch"), nothrow, const))
JF_SIMD float expf(float); JF_SIMD float logf(float); JF_SIMD float tanhf(float);
JF_SIMD float erff(float); JF_SIMD float log1pf(float); JF_SIMD float expm1f(float);
JF_SIMD float exp2f(float); JF_SIMD float log2f(float); JF_SIMD float log10f(float);
JF_SIMD float erfcf(float); JF_SIMD float sinf(float); JF_SIMD float cosf(float);
JF_SIMD float tanf(float); JF_SIMD float asinf(float); JF_SIMD float acosf(float);
JF_SIMD float atanf(float); JF_SIMD float sinhf(float); JF_SIMD float coshf(float);
JF_SIMD float asinhf(float); JF_SIMD float acoshf(float); JF_SIMD float atanhf(float);
JF_SIMD float atan2f(float, float); JF_SIMD float powf(float, float);
JF_SIMD double exp(double); JF_SIMD double log(double); JF_SIMD double tanh(double);
JF_SIMD double erf(double); JF_SIMD double log1p(double); JF_SIMD double expm1(double);
JF_SIMD double exp2(double); JF_SIMD double log2(double); JF_SIMD double log10(double);
JF_SIMD double erfc(double); JF_SIMD double sin(double); JF_SIMD double cos(double);
JF_SIMD double tan(double); JF_SIMD double asin(double); JF_SIMD double acos(double);
JF_SIMD double atan(double); JF_SIMD double sinh(double); JF_SIMD double cosh(double);
JF_SIMD double asinh(double); JF_SIMD double acosh(double); JF_SIMD double atanh(double);
JF_SIMD double atan2(double, double); JF_SIMD double pow(double, double);
#ifdef __cplusplus
}
#endif
JF_INLINE float jf_exp(float x) { return expf(x); }
JF_INLINE float jf_log(float x) { return logf(x); }
JF_INLINE float jf_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
JF_INLINE float jf_tanh(float x) { return tanhf(x); }
JF_INLINE float jf_erf(float x) { return erff(x); }
JF_INLINE float jf_log1p(float x) { return log1pf(x); }
JF_INLINE float jf_expm1(float x) { return expm1f(x); }
#else
JF_INLINE float jf_exp(float x) { return jf_exp_p(x); }
JF_INLINE float jf_log(float x) { return jf_log_p(x); }
JF_INLINE float jf_sigmoid(float x) { return jf_sigmoid_p(x); }
JF_INLINE float jf_tanh(float x) { return jf_tanh_p(x); }
JF_INLINE float jf_erf(float x) { return jf_erf_p(x); }
JF_INLINE float jf_log1p(float x) { return jf_log1p_p(x); }
JF_INLINE float jf_expm1(float x) { return jf_expm1_p(x); }
#endif

JF_INLINE float jf_pow(float a, float b) {
  float aa = __builtin_fabsf(a);
  float r = jf_exp(b * jf_log(aa));
  bool bint = __builtin_truncf(b) == b;
  bool bodd = bint && __builtin_fabsf(__builtin_fmodf(b, 2.0f)) == 1.0f;
  r = (a < 0.0f && bodd) ? -r : r;
  r = (a < 0.0f && !bint && aa != INFINITY) ? NAN : r;
  r = (a != a || b != b) ? NAN : r;
  r = b == 0.0f ? 1.0f : r;
  r = a == 1.0f ? 1.0f : r;
  return r;
}

JF_INLINE int64_t jf_floordiv_i64(int64_t a, int64_t b) {
  if (b == 0) return 0;
  int64_t q = a / b;
  return (q * b != a && ((a < 0) != (b < 0))) ? q - 1 : q;
}
JF_INLINE int64_t jf_mod_i64(int64_t a, int64_t b) {
  if (b == 0) return 0;
  int64_t r = a % b;
  return (r != 0 && ((r < 0) != (b < 0))) ? r + b : r;
}
JF_INLINE float jf_remainder_f(float a, float b) {
  float r = fmodf(a, b);
  return (r != 0.0f && ((r < 0.0f) != (b < 0.0f))) ? r + b : r;
}
JF_INLINE double jf_remainder_d(double a, double b) {
  double r = fmod(a, b);
  return (r != 0.0 && ((r < 0.0) != (b < 0.0))) ? r + b : r;
}
JF_INLINE int64_t jf_pow_i64(int64_t a, int64_t b) {
  int64_t r = 1;
  if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);
  while (b) { if (b & 1) r *= a; a *= a; b >>= 1; }
  return r;
}
JF_INLINE double jf_sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
"""
