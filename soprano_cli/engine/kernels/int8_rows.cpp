// soprano's kernels for the int8 LM's decode step and the int8 decoder on x86 CPUs (int8_kernel.py),
// built for one of two instruction sets: AVX512-VNNI, or AVX2 with FMA (most AMD CPUs, Intel's
// without AVX-512).
//
// int8_rows: rows (M, K) float32 times an int8 weight (N, K) in exact integer arithmetic: each row
// rounded to 8 bits (symmetric, -127..127), the integer sums, then float scaling. With VNNI these
// are fbgemm's bits (the inputs as uint8 around 128, the zero point's sum taken back out); AVX2's
// 16-bit multiply-adds would overflow on uint8 inputs (fbgemm's AVX2 path gets 7-bit inputs for
// that), so here the products take the input's sign onto the weight and multiply by its magnitude:
// 127 x 127 x 2 fits 16 bits, and the sums are the same. fbgemm packs its weights for batches; a
// decode step multiplies one row or a few, where what counts is reading the weight once at memory
// speed. Here the weight is packed for that: kBlock output channels by 4 inputs, read front to
// back, each vector of weights feeding a vector of dot products for each row.
// int8_linear, int8_normed, int8_added, int8_gated_added: the same product with what stands
// around it fused (a norm, a bias, GELU, the MLP's activation, a residual).
// attend: one block's attention for the step's rows, from q/k/v to the heads' outputs.
//
// Every row is computed on its own, the same way whatever the batch: a sentence's audio must
// not depend on its neighbours (built with -ffp-contract=off for that).
#include <immintrin.h>

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

namespace {

// -- float vectors: the few operations the kernels use, for each instruction set ----------------------

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#define SOPRANO_AVX512 1
using Floats = __m512;
constexpr int64_t kLanes = 16;
inline Floats load(const float* p) { return _mm512_loadu_ps(p); }
inline void store(float* p, Floats v) { _mm512_storeu_ps(p, v); }
inline Floats splat(float x) { return _mm512_set1_ps(x); }
inline Floats zeros() { return _mm512_setzero_ps(); }
inline Floats add(Floats a, Floats b) { return _mm512_add_ps(a, b); }
inline Floats sub(Floats a, Floats b) { return _mm512_sub_ps(a, b); }
inline Floats mul(Floats a, Floats b) { return _mm512_mul_ps(a, b); }
inline Floats div(Floats a, Floats b) { return _mm512_div_ps(a, b); }
inline Floats max(Floats a, Floats b) { return _mm512_max_ps(a, b); }
inline Floats min(Floats a, Floats b) { return _mm512_min_ps(a, b); }
inline Floats fmadd(Floats a, Floats b, Floats c) { return _mm512_fmadd_ps(a, b, c); }  // a b + c
inline Floats fnmadd(Floats a, Floats b, Floats c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
inline Floats abs(Floats a) { return _mm512_abs_ps(a); }
inline Floats round_to_int(Floats a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline Floats times_two_to(Floats a, Floats n) { return _mm512_scalef_ps(a, n); }  // a 2^n, n whole
// Where x < 0, if_negative, else otherwise.
inline Floats where_negative(Floats x, Floats if_negative, Floats otherwise) {
  return _mm512_mask_mov_ps(otherwise, _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), if_negative);
}
inline __mmask16 first(int64_t n) { return n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1); }
// The first n lanes from p (n < kLanes: the rest `fill`), and stored to p.
inline Floats load_first(const float* p, int64_t n, Floats fill) { return _mm512_mask_loadu_ps(fill, first(n), p); }
inline void store_first(float* p, Floats v, int64_t n) { _mm512_mask_storeu_ps(p, first(n), v); }
inline Floats keep_first(Floats v, int64_t n) { return _mm512_maskz_mov_ps(first(n), v); }
inline Floats from_halves(const uint16_t* p) {  // 16 float16 -> float32, exactly
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline void store_halves(uint16_t* p, Floats v) {  // rounded to nearest even, as torch's .half()
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline float reduce_max(Floats v) { return _mm512_reduce_max_ps(v); }
inline float reduce_add(Floats v) { return _mm512_reduce_add_ps(v); }
// 16 sums of 16 lanes each -> one vector, lane i the sum of v[i] (a transposing add tree: about
// three operations a sum, where one horizontal add each takes about eight).
inline Floats lane_sums(const Floats v[16]) {
  __m512 pairs[8], quads[4], halves[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: (a0+a2, b0+b2, a1+a3, b1+b3)
    pairs[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane: (a, b, c, d), each that lane's sum
    quads[i] = _mm512_add_ps(_mm512_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 2; ++i)  // 128-bit lanes added in pairs
    halves[i] = _mm512_add_ps(_mm512_shuffle_f32x4(quads[2 * i], quads[2 * i + 1], 0x88),
                              _mm512_shuffle_f32x4(quads[2 * i], quads[2 * i + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(halves[0], halves[1], 0x88), _mm512_shuffle_f32x4(halves[0], halves[1], 0xDD));
}
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
using Floats = __m256;
constexpr int64_t kLanes = 8;
inline Floats load(const float* p) { return _mm256_loadu_ps(p); }
inline void store(float* p, Floats v) { _mm256_storeu_ps(p, v); }
inline Floats splat(float x) { return _mm256_set1_ps(x); }
inline Floats zeros() { return _mm256_setzero_ps(); }
inline Floats add(Floats a, Floats b) { return _mm256_add_ps(a, b); }
inline Floats sub(Floats a, Floats b) { return _mm256_sub_ps(a, b); }
inline Floats mul(Floats a, Floats b) { return _mm256_mul_ps(a, b); }
inline Floats div(Floats a, Floats b) { return _mm256_div_ps(a, b); }
inline Floats max(Floats a, Floats b) { return _mm256_max_ps(a, b); }
inline Floats min(Floats a, Floats b) { return _mm256_min_ps(a, b); }
inline Floats fmadd(Floats a, Floats b, Floats c) { return _mm256_fmadd_ps(a, b, c); }
inline Floats fnmadd(Floats a, Floats b, Floats c) { return _mm256_fnmadd_ps(a, b, c); }
inline Floats abs(Floats a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
inline Floats from_halves(const uint16_t* p) {  // 8 float16 -> float32, exactly (F16C)
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline void store_halves(uint16_t* p, Floats v) {  // rounded to nearest even, as torch's .half()
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline Floats round_to_int(Floats a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline Floats times_two_to(Floats a, Floats n) {  // n in [-126, 127]: 2^n built in the exponent bits
  const __m256i exponent = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(a, _mm256_castsi256_ps(exponent));
}
inline Floats where_negative(Floats x, Floats if_negative, Floats otherwise) {
  return _mm256_blendv_ps(otherwise, if_negative, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}
inline __m256i first(int64_t n) {  // n < 8: the first n lanes set
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline Floats load_first(const float* p, int64_t n, Floats fill) {
  if (n >= 8) return _mm256_loadu_ps(p);
  const __m256i mask = first(n);
  return _mm256_blendv_ps(fill, _mm256_maskload_ps(p, mask), _mm256_castsi256_ps(mask));
}
inline void store_first(float* p, Floats v, int64_t n) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, first(n), v);
}
inline Floats keep_first(Floats v, int64_t n) { return n >= 8 ? v : _mm256_and_ps(v, _mm256_castsi256_ps(first(n))); }
inline float reduce_max(Floats v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}
inline float reduce_add(Floats v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
// 8 sums of 8 lanes each -> one vector, lane i the sum of v[i] (as AVX-512's, one level fewer).
inline Floats lane_sums(const Floats v[8]) {
  __m256 pairs[4], quads[2];
  for (int i = 0; i < 4; ++i)
    pairs[i] = _mm256_add_ps(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 2; ++i)
    quads[i] = _mm256_add_ps(_mm256_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(pairs[2 * i], pairs[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  return _mm256_add_ps(_mm256_permute2f128_ps(quads[0], quads[1], 0x20), _mm256_permute2f128_ps(quads[0], quads[1], 0x31));
}
#else
#error "soprano's int8 kernel needs AVX512-VNNI, or AVX2 with FMA and F16C"
#endif

constexpr int64_t kBlock = 4 * kLanes;  // output channels per packed block: 4 vectors of int32 sums
constexpr int64_t kSplits = 2;  // runs of positions each query head's attention is split into

// -- the integer products ------------------------------------------------------------------------------

#if SOPRANO_AVX512
constexpr int kRowsAtOnce = 4;  // rows sharing each weight load (16 accumulators)
constexpr int kZeroPoint = 128;  // inputs as uint8 around 128: vpdpbusd multiplies unsigned by signed bytes
#else
constexpr int kRowsAtOnce = 2;  // rows sharing each weight load (8 accumulators: AVX2 has 16 registers)
constexpr int kZeroPoint = 0;  // inputs as int8: their sign goes onto the weight (vpsignb)
#endif

// fbgemm's input quantization: round_to_nearest_even(clip(x * (1/scale) + zero_point)), the
// multiply-add fused (one rounding); as bytes, uint8 around the zero point or int8.
void quantize_row(const float* x, uint8_t* out, int64_t k, float inverse_scale) {
  const Floats inverse = splat(inverse_scale), zero_point = splat(static_cast<float>(kZeroPoint));
  const Floats low = splat(kZeroPoint - 128.f), high = splat(kZeroPoint + 127.f);
  for (int64_t i = 0; i < k; i += kLanes) {  // k % 16 == 0 (checked)
    const Floats v = min(max(fmadd(load(x + i), inverse, zero_point), low), high);
#if SOPRANO_AVX512
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
#else
    const __m256i whole = _mm256_cvtps_epi32(v);
    const __m128i shorts = _mm_packs_epi32(_mm256_castsi256_si128(whole), _mm256_extracti128_si256(whole, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm_packs_epi16(shorts, shorts));
#endif
  }
}

// e^x for x <= 0 (scores less their maximum): 2^n * p(r), r = x - n ln 2, |r| <= ln 2 / 2, p the
// degree-6 Taylor polynomial (relative error below 3e-7, as good as float32 softmax needs).
Floats exp_nonpositive(Floats x) {
  x = max(x, splat(-87.0f));
  const Floats n = round_to_int(mul(x, splat(1.44269504088896341f)));
  Floats r = fnmadd(n, splat(0.693145751953125f), x);
  r = fnmadd(n, splat(1.42860682030941723212e-6f), r);
  Floats p = splat(1.0f / 720);
  p = fmadd(p, r, splat(1.0f / 120));
  p = fmadd(p, r, splat(1.0f / 24));
  p = fmadd(p, r, splat(1.0f / 6));
  p = fmadd(p, r, splat(0.5f));
  p = fmadd(p, r, splat(1.0f));
  p = fmadd(p, r, splat(1.0f));
  return times_two_to(p, n);
}

// GELU as torch's default: x (1 + erf(x / sqrt 2)) / 2, through erfc(z) = t e^E, t = 1 / (1 + z / 2),
// z = |x| / sqrt 2 and E a degree-9 polynomial in t less z^2 (Numerical Recipes' erfcc: relative
// error below 1.2e-7); E <= 0 but for rounding, where exp_nonpositive is still right.
Floats gelu(Floats x) {
  const Floats z = mul(abs(x), splat(0.70710678118654752f));
  const Floats t = div(splat(1.0f), fmadd(z, splat(0.5f), splat(1.0f)));
  constexpr float c[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                         -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
  Floats e = splat(c[0]);
  for (int i = 1; i < 10; ++i) e = fmadd(e, t, splat(c[i]));
  e = fnmadd(z, z, e);
  const Floats half_erfc = mul(mul(t, exp_nonpositive(e)), splat(0.5f));
  // x >= 0: x (1 - erfc(z) / 2); x < 0: x erfc(z) / 2.
  return mul(x, where_negative(x, half_erfc, sub(splat(1.0f), half_erfc)));
}

// What happens to each output after fbgemm's scaling: times its row's factor, plus a residual.
struct Epilogue {
  const float* row_scales = nullptr;  // (M,) or none
  const float* residual = nullptr;    // (M, N) with the output's row stride, or none
  const float* bias = nullptr;        // (N,), or none
  const float* column_scales = nullptr;  // (N,), or none
  // (M,), or none: the rows are shifted (`shifted_rows`, AVX2 only), each sum first plus the row's
  // shift times the channel's offset (128 x its weight sum) to take the shift back out
  const float* row_shifts = nullptr;
  bool gelu = false;
  // In this order: times the row's factor, plus the bias, GELU, times the column's factor, plus
  // the residual (the decoder's gelu(pwconv1 x) and residual + gamma pwconv2 x; the LM's
  // residual + product).
};

#if SOPRANO_AVX512
using Sums = __m512i;

// acc += the 16 lanes' four-byte dot products of x (unsigned) and w (signed), in place: through the
// intrinsic, GCC 12 copied each accumulator around the instruction's tied operand, two register
// moves a product, which CPUs without move elimination for vector registers execute.
#define DOT_ACCUMULATE(acc, x, w) asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

// The integer sums of R rows (quantized, `k` bytes apart) times one packed block: acc[r][c] for
// the block's channels 16 c to 16 c + 15.
template <int R>
void block_sums(const uint8_t* rows, int64_t k, const int8_t* block, Sums acc[kRowsAtOnce][4]) {
  static_assert(R >= 1 && R <= 4, "one to four rows at a time");
  // Sixteen named accumulators, not an array: GCC kept an array's in memory around the asm.
  __m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  __m512i a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  const int8_t* w = block;
  for (int64_t i = 0; i < k; i += 4, w += 4 * kBlock) {
    const __m512i w0 = _mm512_load_si512(w), w1 = _mm512_load_si512(w + 64);
    const __m512i w2 = _mm512_load_si512(w + 128), w3 = _mm512_load_si512(w + 192);
    // Row r's 4 inputs for this step as one lane (memcpy: no aliasing tricks).
    auto inputs = [&](int r) {
      int32_t four;
      std::memcpy(&four, rows + r * k + i, sizeof four);
      return _mm512_set1_epi32(four);
    };
    const __m512i x0 = inputs(0);
    DOT_ACCUMULATE(a00, x0, w0); DOT_ACCUMULATE(a01, x0, w1); DOT_ACCUMULATE(a02, x0, w2); DOT_ACCUMULATE(a03, x0, w3);
    if constexpr (R > 1) {
      const __m512i x1 = inputs(1);
      DOT_ACCUMULATE(a10, x1, w0); DOT_ACCUMULATE(a11, x1, w1); DOT_ACCUMULATE(a12, x1, w2); DOT_ACCUMULATE(a13, x1, w3);
    }
    if constexpr (R > 2) {
      const __m512i x2 = inputs(2);
      DOT_ACCUMULATE(a20, x2, w0); DOT_ACCUMULATE(a21, x2, w1); DOT_ACCUMULATE(a22, x2, w2); DOT_ACCUMULATE(a23, x2, w3);
    }
    if constexpr (R > 3) {
      const __m512i x3 = inputs(3);
      DOT_ACCUMULATE(a30, x3, w0); DOT_ACCUMULATE(a31, x3, w1); DOT_ACCUMULATE(a32, x3, w2); DOT_ACCUMULATE(a33, x3, w3);
    }
  }
  acc[0][0] = a00, acc[0][1] = a01, acc[0][2] = a02, acc[0][3] = a03;
  if constexpr (R > 1) acc[1][0] = a10, acc[1][1] = a11, acc[1][2] = a12, acc[1][3] = a13;
  if constexpr (R > 2) acc[2][0] = a20, acc[2][1] = a21, acc[2][2] = a22, acc[2][3] = a23;
  if constexpr (R > 3) acc[3][0] = a30, acc[3][1] = a31, acc[3][2] = a32, acc[3][3] = a33;
}

// The first n (at most 16) channels' sums as floats, each less 128 x its weight row's sum (`offsets`):
// the zero point taken back out.
inline Floats sums_as_floats(Sums sums, const int32_t* offsets, int64_t n) {
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(sums, _mm512_maskz_loadu_epi32(first(n), offsets)));
}
#else
using Sums = __m256i;

// The integer sums of R rows (quantized, `k` bytes apart) times one packed block: acc[r][c] for
// the block's channels 8 c to 8 c + 7.
template <int R, bool Unsigned = false>
void block_sums(const uint8_t* rows, int64_t k, const int8_t* block, Sums acc[kRowsAtOnce][4]) {
  static_assert(R >= 1 && R <= 2, "one or two rows at a time");
  const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
  __m256i a00 = zero, a01 = zero, a02 = zero, a03 = zero, a10 = zero, a11 = zero, a12 = zero, a13 = zero;
  const int8_t* w = block;
  for (int64_t i = 0; i < k; i += 4, w += 4 * kBlock) {
    auto inputs = [&](int r) {
      int32_t four;
      std::memcpy(&four, rows + r * k + i, sizeof four);
      return _mm256_set1_epi32(four);
    };
    // Four-byte dot products of x and vector c of w: |x| times w with x's sign, in pairs to 16 bits
    // (at most 2 x 128 x 127: no saturation), then those pairs to 32 bits. Shifted rows are
    // unsigned already (0..128: the same bound), one operation fewer: no sign to move.
    auto dot = [&](__m256i x, __m256i magnitude, int c) {
      const __m256i weights = _mm256_load_si256(reinterpret_cast<const __m256i*>(w + 32 * c));
      if constexpr (Unsigned) return _mm256_madd_epi16(_mm256_maddubs_epi16(x, weights), ones);
      return _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(weights, x)), ones);
    };
    const __m256i x0 = inputs(0), m0 = Unsigned ? x0 : _mm256_abs_epi8(x0);
    a00 = _mm256_add_epi32(a00, dot(x0, m0, 0));
    a01 = _mm256_add_epi32(a01, dot(x0, m0, 1));
    a02 = _mm256_add_epi32(a02, dot(x0, m0, 2));
    a03 = _mm256_add_epi32(a03, dot(x0, m0, 3));
    if constexpr (R > 1) {
      const __m256i x1 = inputs(1), m1 = Unsigned ? x1 : _mm256_abs_epi8(x1);
      a10 = _mm256_add_epi32(a10, dot(x1, m1, 0));
      a11 = _mm256_add_epi32(a11, dot(x1, m1, 1));
      a12 = _mm256_add_epi32(a12, dot(x1, m1, 2));
      a13 = _mm256_add_epi32(a13, dot(x1, m1, 3));
    }
  }
  acc[0][0] = a00, acc[0][1] = a01, acc[0][2] = a02, acc[0][3] = a03;
  if constexpr (R > 1) acc[1][0] = a10, acc[1][1] = a11, acc[1][2] = a12, acc[1][3] = a13;
}

// The channels' sums as floats (no zero point to take out).
inline Floats sums_as_floats(Sums sums, const int32_t*, int64_t) { return _mm256_cvtepi32_ps(sums); }

// The first n (at most 8) channels' offsets as floats.
inline Floats offsets_as_floats(const int32_t* offsets, int64_t n) {
  return _mm256_cvtepi32_ps(_mm256_maskload_epi32(offsets, first(n)));
}
#endif

// R rows (quantized, `k` bytes apart) times one packed block -> R x kBlock outputs.
template <int R>
[[gnu::always_inline]] inline void block_product(const uint8_t* rows, int64_t k, const int8_t* block, const int32_t* offsets,
                   const float* multipliers, float* out, int64_t ld_out, int64_t columns, Epilogue epilogue) {
  Sums acc[kRowsAtOnce][4];
#if SOPRANO_AVX512
  block_sums<R>(rows, k, block, acc);
#else
  if (epilogue.row_shifts != nullptr)
    block_sums<R, true>(rows, k, block, acc);
  else
    block_sums<R>(rows, k, block, acc);
#endif
  // fbgemm's float output: float(sum - 128 * column sum) * (input scale * weight scale).
  for (int c = 0; c < 4; ++c) {
    const int64_t first_column = c * kLanes, n = columns - first_column;
    if (n <= 0) break;
    const Floats multiplier = load_first(multipliers + first_column, n, zeros());
    for (int r = 0; r < R; ++r) {
      Floats sums = sums_as_floats(acc[r][c], offsets + first_column, n);
#if !SOPRANO_AVX512
      if (epilogue.row_shifts)
        sums = add(sums, mul(splat(epilogue.row_shifts[r]), offsets_as_floats(offsets + first_column, n)));
#endif
      Floats value = mul(sums, multiplier);
      if (epilogue.row_scales) value = mul(value, splat(epilogue.row_scales[r]));
      if (epilogue.bias) value = add(load_first(epilogue.bias + first_column, n, zeros()), value);
      if (epilogue.gelu) value = gelu(value);
      if (epilogue.column_scales) value = mul(load_first(epilogue.column_scales + first_column, n, zeros()), value);
      if (epilogue.residual) value = add(load_first(epilogue.residual + r * ld_out + first_column, n, zeros()), value);
      store_first(out + r * ld_out + first_column, value, n);
    }
  }
}

// The last m % kRowsAtOnce rows (`left`, fewer than R + 1) times one block.
template <int R>
void remaining_rows_times_block(int64_t left, const uint8_t* rows, int64_t k, const int8_t* block,
                                const int32_t* offsets, const float* multipliers, float* out, int64_t ld_out,
                                int64_t columns, Epilogue epilogue) {
  if constexpr (R >= 1) {
    if (left == R)
      block_product<R>(rows, k, block, offsets, multipliers, out, ld_out, columns, epilogue);
    else
      remaining_rows_times_block<R - 1>(left, rows, k, block, offsets, multipliers, out, ld_out, columns, epilogue);
  }
}

// The share of `lines` cache lines from `next` due by the end of row group `group` of `groups`,
// asked for from line `fetched` on (updated): a block to come, spread over this block's row groups.
inline void fetch_share(const char* next, int64_t lines, int64_t group, int64_t groups, int64_t& fetched) {
  for (const int64_t until = lines * (group + 1) / groups; fetched < until; ++fetched)
    _mm_prefetch(next + 64 * fetched, _MM_HINT_T0);
}

// Rows times one block; `next`, if given, the block to come (kBlock k bytes), fetched into the
// caches a slice before each group of rows: its bytes arrive from memory while this block's
// products run, where many rows make them compute-bound (a prompt, the decoder's rows).
void rows_times_block(const uint8_t* rows, int64_t m, int64_t k, const int8_t* block, const int32_t* offsets,
                      const float* multipliers, float* out, int64_t ld_out, int64_t columns, Epilogue epilogue,
                      const int8_t* next = nullptr) {
  auto advanced = [&](int64_t r) {
    Epilogue moved = epilogue;
    if (epilogue.row_scales) moved.row_scales += r;
    if (epilogue.row_shifts) moved.row_shifts += r;
    if (epilogue.residual) moved.residual += r * ld_out;
    return moved;
  };
  const int64_t lines = kBlock * k / 64, groups = m / kRowsAtOnce;
  int64_t fetched = 0;
  int64_t r = 0;
  for (; r + kRowsAtOnce <= m; r += kRowsAtOnce) {
    if (next != nullptr) fetch_share(reinterpret_cast<const char*>(next), lines, r / kRowsAtOnce, groups, fetched);
    block_product<kRowsAtOnce>(rows + r * k, k, block, offsets, multipliers, out + r * ld_out, ld_out, columns,
                               advanced(r));
  }
  remaining_rows_times_block<kRowsAtOnce - 1>(m - r, rows + r * k, k, block, offsets, multipliers, out + r * ld_out,
                                              ld_out, columns, advanced(r));
}

// Each row's largest magnitude, kept above 0 (an all-zero row then divides safely), as row_max_of.
float row_max(const float* x, int64_t k) {
  Floats best = zeros();
  for (int64_t i = 0; i < k; i += kLanes) best = max(best, abs(load(x + i)));
  return std::max(reduce_max(best), 1e-12f);
}

// 1 / sqrt(mean(x^2) + eps), summed in float32 as Qwen3's norm accumulates.
float inverse_rms(const float* x, int64_t k, float eps) {
  Floats sum = zeros();
  for (int64_t i = 0; i < k; i += kLanes) {
    const Floats v = load(x + i);
    sum = fmadd(v, v, sum);
  }
  return 1.0f / std::sqrt(reduce_add(sum) / static_cast<float>(k) + eps);
}

// Rows of K elements a thread takes at least, in the elementwise work around the products: fewer
// are not worth waking a thread for (a decode step's one row stays on the caller's).
inline int64_t rows_per_thread(int64_t k) { return std::max<int64_t>(1, 16384 / k); }

// Rows x (M, K) each scaled to [-1, 1] by its largest magnitude (scales (M,)) and quantized into
// quantized (M, K), the rows shared among threads where there are many (the decoder's hundreds).
void scaled_rows(const float* x, int64_t m, int64_t k, float inverse_scale, uint8_t* quantized, float* scales) {
  at::parallel_for(0, m, rows_per_thread(k), [&](int64_t begin, int64_t end) {
    std::vector<float> scaled(static_cast<size_t>(k));
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * k;
      scales[r] = row_max(row, k);
      const Floats divisor = splat(scales[r]);
      for (int64_t i = 0; i < k; i += kLanes) store(scaled.data() + i, div(load(row + i), divisor));
      quantize_row(scaled.data(), quantized + r * k, k, inverse_scale);
    }
  });
}

#if !SOPRANO_AVX512
// Rows x (M, K) each quantized over its own range [lo, hi] into 0..128 (AVX2's shifted rows):
// x = lo + u (hi - lo) / 128. For rows that reach little below zero (GELU's outputs, at least
// -0.17) that is the precision of symmetric 8 bits over [-hi, hi], and unsigned bytes take one
// operation fewer in AVX2's products. scales gets (hi - lo) / 128 / input_scale, shifts lo / (hi - lo).
void shifted_rows(const float* x, int64_t m, int64_t k, float input_scale, uint8_t* quantized, float* scales,
                  float* shifts) {
  at::parallel_for(0, m, rows_per_thread(k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * k;
      Floats low = load(row), high = low;
      for (int64_t i = kLanes; i < k; i += kLanes) low = min(low, load(row + i)), high = max(high, load(row + i));
      const float lo = -reduce_max(sub(zeros(), low)), span = std::max(reduce_max(high) - lo, 1e-12f);
      scales[r] = span / 128.0f / input_scale;
      shifts[r] = lo / span;
      const Floats origin = splat(lo), steps = splat(128.0f / span), top = splat(128.0f);
      uint8_t* out = quantized + r * k;
      for (int64_t i = 0; i < k; i += kLanes) {
        const Floats v = min(max(round_to_int(mul(sub(load(row + i), origin), steps)), zeros()), top);
        const __m256i whole = _mm256_cvtps_epi32(v);
        const __m128i shorts = _mm_packus_epi32(_mm256_castsi256_si128(whole), _mm256_extracti128_si256(whole, 1));
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm_packus_epi16(shorts, shorts));
      }
    }
  });
}
#endif

struct Packed {
  const int8_t* weight;
  const int32_t* offsets;
  const float* multipliers;
  int64_t blocks, in_features, out_features;
};

Packed checked(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& offsets,
               const at::Tensor& multipliers) {
  TORCH_CHECK(rows.dim() == 2 && rows.scalar_type() == at::kFloat && rows.device().is_cpu() && rows.is_contiguous(),
              "soprano int8: rows must be a contiguous 2-d float32 CPU tensor");
  TORCH_CHECK(weight.dim() == 4 && weight.scalar_type() == at::kChar && weight.is_contiguous() &&
                  weight.size(2) == kBlock && weight.size(3) == 4,
              "soprano int8: the weight is not in the packed layout");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(weight.data_ptr()) % 64 == 0, "soprano int8: the weight is not 64-byte aligned");
  const int64_t k = rows.size(1), blocks = weight.size(0), out_features = multipliers.numel();
  TORCH_CHECK(weight.size(1) * 4 == k && k % 16 == 0, "soprano int8: rows have ", k, " columns, the weight ",
              weight.size(1) * 4);
  TORCH_CHECK(out_features > (blocks - 1) * kBlock && out_features <= blocks * kBlock &&
                  offsets.numel() == out_features && offsets.scalar_type() == at::kInt && offsets.is_contiguous() &&
                  multipliers.scalar_type() == at::kFloat && multipliers.is_contiguous(),
              "soprano int8: offsets and multipliers must be one per output channel");
  return {weight.data_ptr<int8_t>(), offsets.data_ptr<int32_t>(), multipliers.data_ptr<float>(), blocks, k,
          out_features};
}

// From how many rows a block's products take long enough to fetch the next block meanwhile
// (fewer: the step's rows stream at memory speed, where the CPU's own prefetcher keeps up, and a
// few rows' products are too short to hide the fetch).
constexpr int64_t kPrefetchRows = 16;

// Quantized rows (M, K) times the packed weight into out (M, N), the blocks shared among threads.
void multiply(const std::vector<uint8_t>& quantized, int64_t m, const Packed& w, float* out, Epilogue epilogue) {
  // Each thread a run of blocks worth at least 64 KB of weight: fewer is not worth a thread.
  const int64_t grain = std::max<int64_t>(1, (64 * 1024) / (kBlock * w.in_features));
  at::parallel_for(0, w.blocks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const int64_t first = b * kBlock;
      Epilogue shifted = epilogue;  // this block's columns
      if (epilogue.residual) shifted.residual += first;
      if (epilogue.bias) shifted.bias += first;
      if (epilogue.column_scales) shifted.column_scales += first;
      const int8_t* next = b + 1 < end && m >= kPrefetchRows ? w.weight + (first + kBlock) * w.in_features : nullptr;
      rows_times_block(quantized.data(), m, w.in_features, w.weight + first * w.in_features, w.offsets + first,
                       w.multipliers + first, out + first, w.out_features,
                       std::min<int64_t>(kBlock, w.out_features - first), shifted, next);
    }
  });
}

// rows (M, K) float32 in [-1, 1]; weight (ceil(N/64), K/4, 64, 4) int8; offsets (N,) int32 and
// multipliers (N,) float32 (int8_kernel.pack). Returns (M, N) float32: fbgemm's exact product.
at::Tensor int8_rows(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& offsets,
                     const at::Tensor& multipliers, double input_scale) {
  const at::Tensor x = rows.contiguous();
  const Packed w = checked(x, weight, offsets, multipliers);
  const int64_t m = x.size(0), k = w.in_features;
  at::Tensor out = at::empty({m, w.out_features}, x.options());
  std::vector<uint8_t> quantized(static_cast<size_t>(m * k));
  const float inverse_scale = 1.0f / static_cast<float>(input_scale);
  for (int64_t r = 0; r < m; ++r) quantize_row(x.data_ptr<float>() + r * k, quantized.data() + r * k, k, inverse_scale);
  if (m > 0) multiply(quantized, m, w, out.data_ptr<float>(), Epilogue{});
  return out;
}

// A whole int8 linear layer on float32 rows x (M, K), as DynamicInt8Linear's forward: each row
// scaled to [-1, 1] by its largest magnitude, quantized, multiplied, scaled back, plus the bias
// (N,) if defined; then, as asked, GELU, times column_scales (N,), plus residual (M, N) (the
// decoder's ConvNeXt: gelu(pwconv1(x)), and residual + gamma * pwconv2(x)). `shifted`: with AVX2,
// each row quantized over its own range instead (`shifted_rows`, for rows that reach little below
// zero); VNNI's products take full-range bytes at full speed and ignore it.
at::Tensor int8_linear(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& offsets,
                       const at::Tensor& multipliers, const c10::optional<at::Tensor>& bias, bool apply_gelu,
                       const c10::optional<at::Tensor>& column_scales, const c10::optional<at::Tensor>& residual,
                       double input_scale, bool shifted) {
  const at::Tensor x = rows.contiguous();
  const Packed w = checked(x, weight, offsets, multipliers);
  const int64_t m = x.size(0), k = w.in_features;
  auto per_column = [&](const c10::optional<at::Tensor>& given, const char* what) {
    if (!given.has_value() || !given->defined()) return at::Tensor();
    at::Tensor t = given->contiguous();
    TORCH_CHECK(t.dim() == 1 && t.size(0) == w.out_features && t.scalar_type() == at::kFloat,
                "soprano int8_linear: ", what, " must be (N,) float32");
    return t;
  };
  const at::Tensor added = per_column(bias, "the bias"), scaled = per_column(column_scales, "the column scales");
  at::Tensor base;
  if (residual.has_value() && residual->defined()) {
    base = residual->contiguous();
    TORCH_CHECK(base.dim() == 2 && base.size(0) == m && base.size(1) == w.out_features &&
                    base.scalar_type() == at::kFloat,
                "soprano int8_linear: the residual must be (M, N) float32");
  }
  at::Tensor out = at::empty({m, w.out_features}, x.options());
  std::vector<uint8_t> quantized(static_cast<size_t>(m * k));
  std::vector<float> scales(static_cast<size_t>(m)), shifts;
  Epilogue epilogue{scales.data(), base.defined() ? base.data_ptr<float>() : nullptr,
                    added.defined() ? added.data_ptr<float>() : nullptr,
                    scaled.defined() ? scaled.data_ptr<float>() : nullptr};
  epilogue.gelu = apply_gelu;
#if !SOPRANO_AVX512
  if (shifted) {
    shifts.resize(static_cast<size_t>(m));
    shifted_rows(x.data_ptr<float>(), m, k, static_cast<float>(input_scale), quantized.data(), scales.data(),
                 shifts.data());
    epilogue.row_shifts = shifts.data();
  } else
#endif
    scaled_rows(x.data_ptr<float>(), m, k, 1.0f / static_cast<float>(input_scale), quantized.data(), scales.data());
  if (m > 0) multiply(quantized, m, w, out.data_ptr<float>(), epilogue);
  return out;
}

// int8_rows(rms_norm(x) * norm_weight) for float32 rows x (M, K), as quantize.int8_normed: the
// norm's 1/rms, a per-row factor, is applied to the output with the row's scale.
at::Tensor int8_normed(const at::Tensor& rows, const at::Tensor& norm_weight, const at::Tensor& eps,
                       const at::Tensor& weight, const at::Tensor& offsets, const at::Tensor& multipliers,
                       double input_scale) {
  const at::Tensor x = rows.contiguous();
  const Packed w = checked(x, weight, offsets, multipliers);
  const int64_t m = x.size(0), k = w.in_features;
  TORCH_CHECK(norm_weight.numel() == k && norm_weight.scalar_type() == at::kFloat && norm_weight.is_contiguous() &&
                  eps.numel() == 1 && eps.scalar_type() == at::kFloat,
              "soprano int8_normed: the norm weight must be (K,) float32, eps a float32 scalar");
  const float epsilon = *eps.data_ptr<float>(), inverse_scale = 1.0f / static_cast<float>(input_scale);
  at::Tensor out = at::empty({m, w.out_features}, x.options());
  std::vector<uint8_t> quantized(static_cast<size_t>(m * k));
  std::vector<float> scales(static_cast<size_t>(m));
  const float* nw = norm_weight.data_ptr<float>();
  at::parallel_for(0, m, rows_per_thread(k), [&](int64_t begin, int64_t end) {
    std::vector<float> weighted(static_cast<size_t>(k));
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x.data_ptr<float>() + r * k;
      for (int64_t i = 0; i < k; i += kLanes) store(weighted.data() + i, mul(load(row + i), load(nw + i)));
      const float largest = row_max(weighted.data(), k);
      const Floats divisor = splat(largest);
      for (int64_t i = 0; i < k; i += kLanes) store(weighted.data() + i, div(load(weighted.data() + i), divisor));
      quantize_row(weighted.data(), quantized.data() + r * k, k, inverse_scale);
      scales[r] = inverse_rms(row, k, epsilon) * largest;
    }
  });
  if (m > 0) multiply(quantized, m, w, out.data_ptr<float>(), Epilogue{scales.data(), nullptr});
  return out;
}

// residual + int8_rows(x) for float32 rows x (M, K) and residual (M, N), as quantize.int8_added.
at::Tensor int8_added(const at::Tensor& rows, const at::Tensor& residual, const at::Tensor& weight,
                      const at::Tensor& offsets, const at::Tensor& multipliers, double input_scale) {
  const at::Tensor x = rows.contiguous();
  const Packed w = checked(x, weight, offsets, multipliers);
  const int64_t m = x.size(0), k = w.in_features;
  const at::Tensor base = residual.contiguous();
  TORCH_CHECK(base.dim() == 2 && base.size(0) == m && base.size(1) == w.out_features &&
                  base.scalar_type() == at::kFloat,
              "soprano int8_added: the residual must be (M, N) float32");
  at::Tensor out = at::empty({m, w.out_features}, x.options());
  std::vector<uint8_t> quantized(static_cast<size_t>(m * k));
  std::vector<float> scales(static_cast<size_t>(m));
  scaled_rows(x.data_ptr<float>(), m, k, 1.0f / static_cast<float>(input_scale), quantized.data(), scales.data());
  if (m > 0) multiply(quantized, m, w, out.data_ptr<float>(), Epilogue{scales.data(), base.data_ptr<float>()});
  return out;
}


// residual + int8_rows(silu(gate) * up) for gate_up (M, 2K) = [gate | up] and residual (M, N), as
// quantize.int8_gated_added: the MLP's activation fused into its down projection. silu(x) is
// x / (1 + e^-x) for x >= 0 and x e^x / (1 + e^x) below, so the exponent is never positive.
at::Tensor int8_gated_added(const at::Tensor& gate_up, const at::Tensor& residual, const at::Tensor& weight,
                            const at::Tensor& offsets, const at::Tensor& multipliers, double input_scale) {
  const at::Tensor both = gate_up.contiguous();
  TORCH_CHECK(both.dim() == 2 && both.scalar_type() == at::kFloat && both.size(1) % 2 == 0,
              "soprano int8_gated_added: gate_up must be (M, 2K) float32");
  const int64_t m = both.size(0), k = both.size(1) / 2;
  at::Tensor activated = at::empty({m, k}, both.options());
  const Floats one = splat(1.0f), zero = zeros();
  at::parallel_for(0, m, rows_per_thread(k), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* gate = both.data_ptr<float>() + r * 2 * k;
      float* out = activated.data_ptr<float>() + r * k;
      int64_t i = 0;
      for (; i + kLanes <= k; i += kLanes) {
        const Floats x = load(gate + i);
        const Floats e = exp_nonpositive(sub(zero, abs(x)));  // e^-|x|
        const Floats silu = div(where_negative(x, mul(x, e), x), add(one, e));
        store(out + i, mul(silu, load(gate + k + i)));
      }
      for (; i < k; ++i) {
        const float x = gate[i], e = std::exp(-std::fabs(x));
        out[i] = (x < 0.0f ? x * e : x) / (1.0f + e) * gate[k + i];
      }
    }
  });
  return int8_added(activated, residual, weight, offsets, multipliers, input_scale);
}


// -- float weights (float16 or float32) ------------------------------------------------------------

// A packed float weight's elements: float32, or float16 (uint16_t here), which converts to float32
// exactly. (The KV cache uses the same two loads and stores.)
inline Floats load(const uint16_t* p) { return from_halves(p); }
inline void store(uint16_t* p, Floats v) { store_halves(p, v); }

// Inputs a block's product takes at a time, for every row, before the next ones: their weights
// (16 KB in float32) stay in the first-level cache for all the rows.
constexpr int64_t kFloatInputs = 128;

// R float32 rows (`k` apart) times inputs [from, to) of one packed block of float weights (K,
// kBlock), added to the R x kBlock outputs' sums so far (zeros where from is 0): each output a
// float32 sum over the inputs in order (so the same for any R: batch invariance).
template <int R, typename Element>
void float_block_product(const float* rows, int64_t k, int64_t from, int64_t to, const Element* block, float* out,
                         int64_t ld_out) {
  Floats acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) acc[r][c] = from == 0 ? zeros() : load(out + r * ld_out + c * kLanes);
  block += from * kBlock;
  for (int64_t i = from; i < to; ++i, block += kBlock) {
    Floats w[4];
    for (int c = 0; c < 4; ++c) w[c] = load(block + c * kLanes);
    for (int r = 0; r < R; ++r) {
      const Floats x = splat(rows[r * k + i]);
      for (int c = 0; c < 4; ++c) acc[r][c] = fmadd(x, w[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < 4; ++c) store(out + r * ld_out + c * kLanes, acc[r][c]);
}

// rows (M, K) float32 times a float16 or float32 weight packed as (N/kBlock, K, kBlock)
// (int8_kernel.pack_float) -> (M, N) float32: read front to back at memory speed for a step's few
// rows (float16: half of float32's bytes), and faster than a float32 GEMM's small-batch path.
at::Tensor float_rows(const at::Tensor& rows, const at::Tensor& weight) {
  const at::Tensor x = rows.contiguous();
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.device().is_cpu(),
              "soprano float_rows: rows must be a 2-d float32 CPU tensor");
  TORCH_CHECK(weight.dim() == 3 && (weight.scalar_type() == at::kHalf || weight.scalar_type() == at::kFloat) &&
                  weight.is_contiguous() && weight.size(2) == kBlock && weight.size(1) == x.size(1),
              "soprano float_rows: the weight is not in the packed layout for rows of ", x.size(1), " columns");
  const int64_t m = x.size(0), k = x.size(1), blocks = weight.size(0), n = blocks * kBlock;
  at::Tensor out = at::empty({m, n}, x.options());
  if (m == 0) return out;
  const float* source = x.data_ptr<float>();
  float* result = out.data_ptr<float>();
  const auto multiply_by = [&](const auto* packed) {
    using Element = std::remove_const_t<std::remove_pointer_t<decltype(packed)>>;
    const int64_t grain = std::max<int64_t>(1, (64 * 1024) / (static_cast<int64_t>(sizeof(Element)) * kBlock * k));
    at::parallel_for(0, blocks, grain, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const Element* block = packed + b * k * kBlock;
        // As `multiply`: with many rows, the next block's same inputs fetched meanwhile.
        const char* next = b + 1 < end && m >= kPrefetchRows ? reinterpret_cast<const char*>(block + k * kBlock) : nullptr;
        for (int64_t from = 0; from < k; from += kFloatInputs) {
          const int64_t to = std::min(k, from + kFloatInputs);
          const int64_t lines = (to - from) * kBlock * sizeof(Element) / 64;
          const char* next_inputs = next != nullptr ? next + from * kBlock * sizeof(Element) : nullptr;
          int64_t r = 0, fetched = 0;
          for (; r + kRowsAtOnce <= m; r += kRowsAtOnce) {
            if (next_inputs != nullptr) fetch_share(next_inputs, lines, r / kRowsAtOnce, m / kRowsAtOnce, fetched);
            float_block_product<kRowsAtOnce>(source + r * k, k, from, to, block, result + r * n + b * kBlock, n);
          }
          for (; r < m; ++r) float_block_product<1>(source + r * k, k, from, to, block, result + r * n + b * kBlock, n);
        }
      }
    });
  };
  if (weight.scalar_type() == at::kHalf)
    multiply_by(reinterpret_cast<const uint16_t*>(weight.data_ptr()));
  else
    multiply_by(weight.data_ptr<float>());
  return out;
}

// -- one decode step's attention ---------------------------------------------------------------------

// One head of q or k, (D,), normed as the step's rms norm over the head, times its norm weight
// (which carries attention's 1/sqrt(D) for queries) and rotated: out[j] = y[j] cos[j] +
// y[(j + D/2) % D] sin[j], y the weighted head, cos and signed sin a row of Qwen3LM.rope_rows.
void normed_rotated(const float* head, const float* weight, const float* cos_sin, float eps, int64_t d, float* out) {
  const float inverse = inverse_rms(head, d, eps);
  const int64_t half = d / 2;
  for (int64_t j = 0; j < d; j += kLanes) {
    const int64_t partner = (j + half) % d;
    const Floats y = mul(load(head + j), load(weight + j));
    const Floats y_partner = mul(load(head + partner), load(weight + partner));
    const Floats rotated = fmadd(y_partner, load(cos_sin + d + j), mul(y, load(cos_sin + j)));
    store(out + j, mul(rotated, splat(inverse)));
  }
}

// The KV cache holds float32, or float16: half the bytes a step streams, the arithmetic still
// float32 (the loads and stores above).
template <typename Element>
void store_row(const float* from, int64_t d, Element* to) {
  for (int64_t j = 0; j < d; j += kLanes) store(to + j, load(from + j));
}

// Keys taken at once by group_scores: four queries by kKeysAtOnce keys make one vector of sums.
constexpr int kKeysAtOnce = kLanes / 4;
// Values' vectors taken at once by group_values (4 queries x this many accumulators).
constexpr int kValueVectors = kLanes == 16 ? 4 : 2;
// Positions ahead that keys are prefetched: a head's positions come from memory (they leave the
// caches between steps) in runs too short for the hardware's prefetcher to ramp up on.
constexpr int64_t kPositionsAhead = 16;

// Asks for the cache lines of elements [from, from + count) (count whole lines of them).
template <_mm_hint Hint = _MM_HINT_T0, typename Element>
inline void prefetch_lines(const Element* from, int64_t count) {
  constexpr int64_t kPerLine = 64 / sizeof(Element);
  for (int64_t i = 0; i < count; i += kPerLine) _mm_prefetch(reinterpret_cast<const char*>(from + i), Hint);
}

// scores (group, count): each of `group` queries (group, D) dotted with each of `count` keys
// (count, D), four queries by kKeysAtOnce keys at a time, so each key is loaded once per four queries.
// The same positions' values (count, D) are asked for into the second-level cache as it goes, for
// group_values to find there.
template <typename Element>
void group_scores(const float* queries, int64_t group, const Element* keys, int64_t count, int64_t d, float* scores,
                  const Element* values) {
  for (int64_t h0 = 0; h0 < group; h0 += 4) {
    const float* query[4];
    for (int i = 0; i < 4; ++i) query[i] = queries + std::min<int64_t>(h0 + i, group - 1) * d;  // spare slots repeat
    for (int64_t p0 = 0; p0 < count; p0 += kKeysAtOnce) {
      const Element* key[kKeysAtOnce];
      for (int i = 0; i < kKeysAtOnce; ++i) key[i] = keys + std::min<int64_t>(p0 + i, count - 1) * d;
      if (p0 + kPositionsAhead < count) prefetch_lines(keys + (p0 + kPositionsAhead) * d, kKeysAtOnce * d);
      if (h0 == 0) prefetch_lines<_MM_HINT_T1>(values + p0 * d, std::min<int64_t>(kKeysAtOnce, count - p0) * d);
      Floats acc[kLanes];  // (query, key)
      for (int i = 0; i < kLanes; ++i) acc[i] = zeros();
      for (int64_t j = 0; j < d; j += kLanes) {
        Floats key_j[kKeysAtOnce];
        for (int p = 0; p < kKeysAtOnce; ++p) key_j[p] = load(key[p] + j);
        for (int h = 0; h < 4; ++h) {
          const Floats q = load(query[h] + j);
          for (int p = 0; p < kKeysAtOnce; ++p) acc[kKeysAtOnce * h + p] = fmadd(q, key_j[p], acc[kKeysAtOnce * h + p]);
        }
      }
      alignas(64) float sums[kLanes];  // (query, key)
      store(sums, lane_sums(acc));
      for (int64_t h = 0; h < 4 && h0 + h < group; ++h)
        for (int64_t p = 0; p < kKeysAtOnce && p0 + p < count; ++p)
          scores[(h0 + h) * count + p0 + p] = sums[kKeysAtOnce * h + p];
    }
  }
}

// Positions whose values group_values takes through all its column passes before the next ones:
// 8 KB of values, so the later passes find them in the first level of cache.
constexpr int64_t kValuePositions = 16;

// Each query's weighted sum of the values (count, D) with its softmax numerators (group, count),
// added into partials (group, D + 2) at offset 2 over positions [from, to): V vectors of columns of
// four queries at a time, each value loaded once for all four (spare query slots repeat the last
// query and are neither read nor stored). A position range after another continues its sums in
// order, so the ranges give the sums of one pass over all positions, bit for bit.
template <int V, typename Element>
void group_values_columns(const float* scores, int64_t group, int64_t h0, const Element* values, int64_t count,
                          int64_t from, int64_t to, int64_t d, int64_t j, float* partials) {
  const float* weights[4];
  for (int h = 0; h < 4; ++h) weights[h] = scores + std::min<int64_t>(h0 + h, group - 1) * count;
  Floats acc[4][V];
  for (int h = 0; h < 4; ++h)
    for (int c = 0; c < V; ++c)
      acc[h][c] = h0 + h < group ? load(partials + (h0 + h) * (d + 2) + 2 + j + kLanes * c) : zeros();
  for (int64_t p = from; p < to; ++p) {
    Floats v[V];
    for (int c = 0; c < V; ++c) v[c] = load(values + p * d + j + kLanes * c);
    for (int h = 0; h < 4; ++h) {
      const Floats weight = splat(weights[h][p]);
      for (int c = 0; c < V; ++c) acc[h][c] = fmadd(weight, v[c], acc[h][c]);
    }
  }
  for (int64_t h = 0; h < 4 && h0 + h < group; ++h)
    for (int c = 0; c < V; ++c) store(partials + (h0 + h) * (d + 2) + 2 + j + kLanes * c, acc[h][c]);
}

// partials' sums (zeros on entry) for every query over all `count` positions: kValuePositions
// positions at a time, each through every column pass.
template <typename Element>
void group_values(const float* scores, int64_t group, const Element* values, int64_t count, int64_t d, float* partials) {
  for (int64_t h0 = 0; h0 < group; h0 += 4)
    for (int64_t from = 0; from < count; from += kValuePositions) {
      const int64_t to = std::min(count, from + kValuePositions);
      for (int64_t j = 0; j < d; j += kValueVectors * kLanes) {
        switch (std::min<int64_t>(kValueVectors * kLanes, d - j) / kLanes) {  // d % 32 == 0 (checked)
          case 4: group_values_columns<4, Element>(scores, group, h0, values, count, from, to, d, j, partials); break;
          case 3: group_values_columns<3, Element>(scores, group, h0, values, count, from, to, d, j, partials); break;
          case 2: group_values_columns<2, Element>(scores, group, h0, values, count, from, to, d, j, partials); break;
          default: group_values_columns<1, Element>(scores, group, h0, values, count, from, to, d, j, partials); break;
        }
      }
    }
}

// The attention of layer `layer` for rows qkv (B, (h + 2 kvh) D) -> (B, h D), row b at position
// positions[b] of the sentence in cache slot slots[b] (slot b where slots is not given: a decode
// step, one row a sentence). For each row: the q and k heads normed and rotated, k and v written to
// the caches (layers, slots, kvh, max_len, D; float32 or float16) at the row's position; then,
// every row's keys written, each query head attends over its key head's positions
// 0..positions[b] of the row's slot. So a row reads only its own sentence (no mask, the same result
// alone or in a batch), and a prompt's rows, sharing a slot at positions 0..T-1, attend causally:
// each exactly as a decode step at that position would.
at::Tensor attend(const at::Tensor& qkv_rows, const at::Tensor& qk_norm, const at::Tensor& qk_eps,
                  const at::Tensor& cos_sin_rows, const at::Tensor& key_cache, const at::Tensor& value_cache,
                  int64_t layer, const at::Tensor& positions, int64_t heads, int64_t kv_heads,
                  const std::optional<at::Tensor>& slots) {
  const at::Tensor qkv = qkv_rows.contiguous(), cos_sin = cos_sin_rows.contiguous();
  const at::Tensor where = positions.to(at::kLong).contiguous();
  // Row b's slot: slots[b], or b where none are given (a decode step: no tensor to make for it).
  const at::Tensor rows_slot = slots.has_value() ? slots->to(at::kLong).contiguous() : at::Tensor();
  TORCH_CHECK(key_cache.dim() == 5 && key_cache.is_contiguous() && value_cache.is_contiguous() &&
                  key_cache.sizes() == value_cache.sizes() &&
                  (key_cache.scalar_type() == at::kFloat || key_cache.scalar_type() == at::kHalf) &&
                  value_cache.scalar_type() == key_cache.scalar_type() && layer >= 0 && layer < key_cache.size(0),
              "soprano attend: the caches must be contiguous float32 or float16 (layers, slots, kv_heads, max_len, "
              "head_dim), both the same");
  const int64_t rows = qkv.size(0), d = key_cache.size(4), max_len = key_cache.size(3);
  TORCH_CHECK(qkv.dim() == 2 && qkv.scalar_type() == at::kFloat && qkv.size(1) == (heads + 2 * kv_heads) * d &&
                  kv_heads > 0 && heads % kv_heads == 0 && d % 32 == 0 && key_cache.size(2) == kv_heads,
              "soprano attend: qkv must be (B, (heads + 2 kv_heads) head_dim) float32, head_dim a multiple of 32 (the "
              "rotation's halves in whole vectors)");
  TORCH_CHECK(qk_norm.is_contiguous() && qk_norm.numel() == (heads + kv_heads) * d && qk_norm.scalar_type() == at::kFloat &&
                  cos_sin.dim() == 2 && cos_sin.size(0) == rows && cos_sin.size(1) == 2 * d &&
                  cos_sin.scalar_type() == at::kFloat && where.numel() == rows &&
                  (!rows_slot.defined() || rows_slot.numel() == rows) &&
                  qk_eps.numel() == 1 && qk_eps.scalar_type() == at::kFloat,
              "soprano attend: the norm weight, rotations, positions, slots or eps do not fit");
  const int64_t* position = where.data_ptr<int64_t>();
  const int64_t* given_slots = rows_slot.defined() ? rows_slot.data_ptr<int64_t>() : nullptr;
  const auto slot = [given_slots](int64_t b) { return given_slots != nullptr ? given_slots[b] : b; };
  for (int64_t b = 0; b < rows; ++b) {
    TORCH_CHECK(position[b] >= 0 && position[b] < max_len, "soprano attend: position ", position[b],
                " is outside the cache (", max_len, ")");
    TORCH_CHECK(slot(b) >= 0 && slot(b) < key_cache.size(1), "soprano attend: slot ", slot(b),
                " is outside the cache (", key_cache.size(1), " slots)");
  }
  at::Tensor out = at::empty({rows, heads * d}, qkv.options());
  const float eps = *qk_eps.data_ptr<float>();
  const int64_t group = heads / kv_heads, width = qkv.size(1);
  const float *source = qkv.data_ptr<float>(), *weights = qk_norm.data_ptr<float>(), *rope = cos_sin.data_ptr<float>();
  const int64_t layer_size = key_cache.size(1) * kv_heads * max_len * d;
  float* result = out.data_ptr<float>();
  const auto attend_over = [&](auto* keys, auto* values) {  // the layer's caches, float or uint16_t (float16)
    using Element = std::remove_pointer_t<decltype(keys)>;
    std::vector<float> new_key(static_cast<size_t>(d));
    // Every row's new keys and values first (a step's few; a prompt's rows read each other's), then
    // every query head on its own, shared among threads.
    for (int64_t b = 0; b < rows; ++b) {
      const float* row = source + b * width;
      for (int64_t g = 0; g < kv_heads; ++g) {
        const int64_t at = ((slot(b) * kv_heads + g) * max_len + position[b]) * d;
        normed_rotated(row + (heads + g) * d, weights + (heads + g) * d, rope + b * 2 * d, eps, d, new_key.data());
        store_row(new_key.data(), d, keys + at);
        store_row(row + (heads + kv_heads + g) * d, d, values + at);
      }
    }
    // Each row's positions in kSplits runs, task = (run, row, key head): with two threads, each
    // streams half of every key head's keys and values from memory (they leave the caches between
    // steps), once for all the query heads that share it; the runs' partial softmax sums are merged
    // after. The runs depend on the row's length only, so a row's result does not depend on its batch.
    const int64_t heads_total = rows * heads;
    std::vector<float> partial(static_cast<size_t>(kSplits * heads_total * (d + 2)));  // per (run, row, head): max, sum, d sums
    at::parallel_for(0, kSplits * rows * kv_heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> queries(static_cast<size_t>(group * d)), scores;
      for (int64_t task = begin; task < end; ++task) {
        const int64_t run = task / (rows * kv_heads), b = (task % (rows * kv_heads)) / kv_heads, g = task % kv_heads;
        const int64_t length = position[b] + 1, step = (length + kSplits - 1) / kSplits;
        const int64_t from = std::min(length, run * step), to = std::min(length, from + step);
        float* first_partial = partial.data() + (run * heads_total + b * heads + g * group) * (d + 2);
        for (int64_t h = 0; h < group; ++h) {
          float* out_partial = first_partial + h * (d + 2);
          out_partial[0] = -INFINITY;
          out_partial[1] = 0.0f;
          std::fill(out_partial + 2, out_partial + 2 + d, 0.0f);
        }
        if (from >= to) continue;
        const Element* head_keys = keys + (slot(b) * kv_heads + g) * max_len * d + from * d;
        const Element* head_values = values + (slot(b) * kv_heads + g) * max_len * d + from * d;
        for (int64_t h = 0; h < group; ++h)
          normed_rotated(source + b * width + (g * group + h) * d, weights + (g * group + h) * d, rope + b * 2 * d, eps,
                         d, queries.data() + h * d);
        const int64_t count = to - from;
        scores.resize(static_cast<size_t>(group * count));
        group_scores(queries.data(), group, head_keys, count, d, scores.data(), head_values);
        for (int64_t h = 0; h < group; ++h) {
          float* head_scores = scores.data() + h * count;
          Floats most = splat(-INFINITY);
          for (int64_t l = 0; l < count; l += kLanes) most = max(most, load_first(head_scores + l, count - l, most));
          const float largest = reduce_max(most);
          Floats total = zeros();
          for (int64_t l = 0; l < count; l += kLanes) {
            const Floats e = exp_nonpositive(sub(load_first(head_scores + l, count - l, zeros()), splat(largest)));
            store_first(head_scores + l, e, count - l);
            total = add(total, keep_first(e, count - l));
          }
          first_partial[h * (d + 2)] = largest;
          first_partial[h * (d + 2) + 1] = reduce_add(total);
        }
        group_values(scores.data(), group, head_values, count, d, first_partial);
      }
    });
    for (int64_t index = 0; index < heads_total; ++index) {  // softmax over the runs: rescale to one max
      float largest = -INFINITY;
      for (int64_t run = 0; run < kSplits; ++run) largest = std::max(largest, partial[(run * heads_total + index) * (d + 2)]);
      float total = 0.0f;
      float factors[kSplits];
      for (int64_t run = 0; run < kSplits; ++run) {
        const float* part = partial.data() + (run * heads_total + index) * (d + 2);
        factors[run] = part[1] > 0.0f ? std::exp(part[0] - largest) : 0.0f;
        total += part[1] * factors[run];
      }
      float* mixed = result + index * d;  // row b, head h: (b * heads + h) * d
      for (int64_t j = 0; j < d; ++j) {
        float sum = 0.0f;
        for (int64_t run = 0; run < kSplits; ++run) sum += partial[(run * heads_total + index) * (d + 2) + 2 + j] * factors[run];
        mixed[j] = sum / total;
      }
    }
  };
  if (key_cache.scalar_type() == at::kHalf)
    attend_over(reinterpret_cast<uint16_t*>(key_cache.data_ptr()) + layer * layer_size,
                reinterpret_cast<uint16_t*>(value_cache.data_ptr()) + layer * layer_size);
  else
    attend_over(key_cache.data_ptr<float>() + layer * layer_size, value_cache.data_ptr<float>() + layer * layer_size);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(soprano, CPU, m) {
  m.impl("int8_rows", &int8_rows);
  m.impl("int8_linear", &int8_linear);
  m.impl("int8_normed", &int8_normed);
  m.impl("int8_added", &int8_added);
  m.impl("int8_gated_added", &int8_gated_added);
  m.impl("float_rows", &float_rows);
  m.impl("attend", &attend);
}
