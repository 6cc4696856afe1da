// soprano's kernels for the int8 LM's decode step on x86 CPUs with AVX512-VNNI (int8_kernel.py).
//
// int8_rows: rows (M, K) float32 times an int8 weight (N, K), exactly fbgemm's dynamic int8
// arithmetic (the same rounded 8-bit inputs, the same integer sums, the same float scaling), so
// either kernel gives the same bits. fbgemm packs its weights for batches; a decode step
// multiplies one row or a few, where what counts is reading the weight once at memory speed.
// Here the weight is packed for that: 64 output channels by 4 inputs per 256 bytes, read front
// to back, each 64-byte vector feeding 16 VNNI dot products.
// int8_normed, int8_added: the same product with the RMSNorm before it or the residual after it.
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
#include <vector>

namespace {

constexpr int64_t kBlock = 64;  // output channels per packed block: 4 vectors of 16 int32 sums
constexpr int kRowsAtOnce = 4;  // rows sharing each weight load (16 accumulators)
constexpr int64_t kSplits = 2;  // runs of positions each query head's attention is split into

// fbgemm's input quantization: u8 = round_to_nearest_even(clip(x * (1/scale) + zero_point)),
// the multiply-add fused (one rounding), zero point 128.
void quantize_row(const float* x, uint8_t* out, int64_t k, float inverse_scale) {
  const __m512 inverse = _mm512_set1_ps(inverse_scale), zero_point = _mm512_set1_ps(128.f);
  const __m512 low = _mm512_setzero_ps(), high = _mm512_set1_ps(255.f);
  for (int64_t i = 0; i < k; i += 16) {  // k % 16 == 0 (checked)
    __m512 v = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), inverse, zero_point);
    v = _mm512_min_ps(_mm512_max_ps(v, low), high);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
  }
}

// e^x for x <= 0 (scores less their maximum): 2^n * p(r), r = x - n ln 2, |r| <= ln 2 / 2, p the
// degree-6 Taylor polynomial (relative error below 3e-7, as good as float32 softmax needs).
__m512 exp_nonpositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723212e-6f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// GELU as torch's default: x (1 + erf(x / sqrt 2)) / 2, through erfc(z) = t e^E, t = 1 / (1 + z / 2),
// z = |x| / sqrt 2 and E a degree-9 polynomial in t less z^2 (Numerical Recipes' erfcc: relative
// error below 1.2e-7); E <= 0 but for rounding, where exp_nonpositive is still right.
__m512 gelu(__m512 x) {
  const __m512 z = _mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f));
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_fmadd_ps(z, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f)));
  constexpr float c[] = {0.17087277f, -0.82215223f, 1.48851587f, -1.13520398f, 0.27886807f,
                         -0.18628806f, 0.09678418f, 0.37409196f, 1.00002368f, -1.26551223f};
  __m512 e = _mm512_set1_ps(c[0]);
  for (int i = 1; i < 10; ++i) e = _mm512_fmadd_ps(e, t, _mm512_set1_ps(c[i]));
  e = _mm512_fnmadd_ps(z, z, e);
  const __m512 half_erfc = _mm512_mul_ps(_mm512_mul_ps(t, exp_nonpositive(e)), _mm512_set1_ps(0.5f));
  // x >= 0: x (1 - erfc(z) / 2); x < 0: x erfc(z) / 2.
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 factor = _mm512_mask_mov_ps(_mm512_sub_ps(_mm512_set1_ps(1.0f), half_erfc), negative, half_erfc);
  return _mm512_mul_ps(x, factor);
}

// What happens to each output after fbgemm's scaling: times its row's factor, plus a residual.
struct Epilogue {
  const float* row_scales = nullptr;  // (M,) or none
  const float* residual = nullptr;    // (M, N) with the output's row stride, or none
  const float* bias = nullptr;        // (N,), or none
  const float* column_scales = nullptr;  // (N,), or none
  bool gelu = false;
  // In this order: times the row's factor, plus the bias, GELU, times the column's factor, plus
  // the residual (the decoder's gelu(pwconv1 x) and residual + gamma pwconv2 x; the LM's
  // residual + product).
};

// acc += the 16 lanes' four-byte dot products of x (unsigned) and w (signed), in place: through the
// intrinsic, GCC 12 copied each accumulator around the instruction's tied operand, two register
// moves a product, which CPUs without move elimination for vector registers execute.
#define DOT_ACCUMULATE(acc, x, w) asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w))

// R rows (quantized, `k` bytes apart) times one packed block -> R x 64 outputs.
template <int R>
void block_product(const uint8_t* rows, int64_t k, const int8_t* block, const int32_t* offsets,
                   const float* multipliers, float* out, int64_t ld_out, int64_t columns, Epilogue epilogue) {
  static_assert(R >= 1 && R <= 4, "one to four rows at a time");
  // Sixteen named accumulators, not an array: GCC kept an array's in memory around the asm.
  const __m512i zero = _mm512_setzero_si512();
  __m512i a00 = zero, a01 = zero, a02 = zero, a03 = zero, a10 = zero, a11 = zero, a12 = zero, a13 = zero;
  __m512i a20 = zero, a21 = zero, a22 = zero, a23 = zero, a30 = zero, a31 = zero, a32 = zero, a33 = zero;
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
  const __m512i acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
  // fbgemm's float output: float(sum - 128 * column sum) * (input scale * weight scale).
  for (int c = 0; c < 4; ++c) {
    const int64_t first = c * 16;
    if (first >= columns) break;
    const __mmask16 mask = columns - first >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (columns - first)) - 1);
    const __m512i offset = _mm512_maskz_loadu_epi32(mask, offsets + first);  // unpadded: (out,) each
    const __m512 multiplier = _mm512_maskz_loadu_ps(mask, multipliers + first);
    for (int r = 0; r < R; ++r) {
      __m512 value = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][c], offset)), multiplier);
      if (epilogue.row_scales) value = _mm512_mul_ps(value, _mm512_set1_ps(epilogue.row_scales[r]));
      if (epilogue.bias) value = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, epilogue.bias + first), value);
      if (epilogue.gelu) value = gelu(value);
      if (epilogue.column_scales) value = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, epilogue.column_scales + first), value);
      if (epilogue.residual)
        value = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, epilogue.residual + r * ld_out + first), value);
      _mm512_mask_storeu_ps(out + r * ld_out + first, mask, value);
    }
  }
}

void rows_times_block(const uint8_t* rows, int64_t m, int64_t k, const int8_t* block, const int32_t* offsets,
                      const float* multipliers, float* out, int64_t ld_out, int64_t columns, Epilogue epilogue) {
  auto advanced = [&](int64_t r) {
    Epilogue moved = epilogue;
    if (epilogue.row_scales) moved.row_scales += r;
    if (epilogue.residual) moved.residual += r * ld_out;
    return moved;
  };
  int64_t r = 0;
  for (; r + kRowsAtOnce <= m; r += kRowsAtOnce)
    block_product<kRowsAtOnce>(rows + r * k, k, block, offsets, multipliers, out + r * ld_out, ld_out, columns,
                               advanced(r));
  switch (m - r) {
    case 3: block_product<3>(rows + r * k, k, block, offsets, multipliers, out + r * ld_out, ld_out, columns, advanced(r)); break;
    case 2: block_product<2>(rows + r * k, k, block, offsets, multipliers, out + r * ld_out, ld_out, columns, advanced(r)); break;
    case 1: block_product<1>(rows + r * k, k, block, offsets, multipliers, out + r * ld_out, ld_out, columns, advanced(r)); break;
    default: break;
  }
}

// Each row's largest magnitude, kept above 0 (an all-zero row then divides safely), as row_max_of.
float row_max(const float* x, int64_t k) {
  __m512 best = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i += 16) best = _mm512_max_ps(best, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  return std::max(_mm512_reduce_max_ps(best), 1e-12f);
}

// 1 / sqrt(mean(x^2) + eps), summed in float32 as Qwen3's norm accumulates.
float inverse_rms(const float* x, int64_t k, float eps) {
  __m512 sum = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    sum = _mm512_fmadd_ps(v, v, sum);
  }
  return 1.0f / std::sqrt(_mm512_reduce_add_ps(sum) / static_cast<float>(k) + eps);
}

// Rows x (M, K) each scaled to [-1, 1] by its largest magnitude (scales (M,)) and quantized into
// quantized (M, K), the rows shared among threads where there are many (the decoder's hundreds).
void scaled_rows(const float* x, int64_t m, int64_t k, float inverse_scale, uint8_t* quantized, float* scales) {
  at::parallel_for(0, m, std::max<int64_t>(1, 16384 / k), [&](int64_t begin, int64_t end) {
    std::vector<float> scaled(static_cast<size_t>(k));
    for (int64_t r = begin; r < end; ++r) {
      const float* row = x + r * k;
      scales[r] = row_max(row, k);
      const __m512 divisor = _mm512_set1_ps(scales[r]);
      for (int64_t i = 0; i < k; i += 16)
        _mm512_storeu_ps(scaled.data() + i, _mm512_div_ps(_mm512_loadu_ps(row + i), divisor));
      quantize_row(scaled.data(), quantized + r * k, k, inverse_scale);
    }
  });
}

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
      rows_times_block(quantized.data(), m, w.in_features, w.weight + first * w.in_features, w.offsets + first,
                       w.multipliers + first, out + first, w.out_features,
                       std::min<int64_t>(kBlock, w.out_features - first), shifted);
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
// decoder's ConvNeXt: gelu(pwconv1(x)), and residual + gamma * pwconv2(x)).
at::Tensor int8_linear(const at::Tensor& rows, const at::Tensor& weight, const at::Tensor& offsets,
                       const at::Tensor& multipliers, const c10::optional<at::Tensor>& bias, bool apply_gelu,
                       const c10::optional<at::Tensor>& column_scales, const c10::optional<at::Tensor>& residual,
                       double input_scale) {
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
  std::vector<float> scales(static_cast<size_t>(m));
  scaled_rows(x.data_ptr<float>(), m, k, 1.0f / static_cast<float>(input_scale), quantized.data(), scales.data());
  if (m > 0)
    multiply(quantized, m, w, out.data_ptr<float>(),
             Epilogue{scales.data(), base.defined() ? base.data_ptr<float>() : nullptr,
                      added.defined() ? added.data_ptr<float>() : nullptr,
                      scaled.defined() ? scaled.data_ptr<float>() : nullptr, apply_gelu});
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
  std::vector<float> weighted(static_cast<size_t>(k)), scales(static_cast<size_t>(m));
  const float* nw = norm_weight.data_ptr<float>();
  for (int64_t r = 0; r < m; ++r) {
    const float* row = x.data_ptr<float>() + r * k;
    for (int64_t i = 0; i < k; i += 16)
      _mm512_storeu_ps(weighted.data() + i, _mm512_mul_ps(_mm512_loadu_ps(row + i), _mm512_loadu_ps(nw + i)));
    const float largest = row_max(weighted.data(), k);
    const __m512 divisor = _mm512_set1_ps(largest);
    for (int64_t i = 0; i < k; i += 16)
      _mm512_storeu_ps(weighted.data() + i, _mm512_div_ps(_mm512_loadu_ps(weighted.data() + i), divisor));
    quantize_row(weighted.data(), quantized.data() + r * k, k, inverse_scale);
    scales[r] = inverse_rms(row, k, epsilon) * largest;
  }
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
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < m; ++r) {
    const float* gate = both.data_ptr<float>() + r * 2 * k;
    float* out = activated.data_ptr<float>() + r * k;
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) {
      const __m512 x = _mm512_loadu_ps(gate + i);
      const __m512 e = exp_nonpositive(_mm512_sub_ps(zero, _mm512_abs_ps(x)));  // e^-|x|
      const __mmask16 negative = _mm512_cmp_ps_mask(x, zero, _CMP_LT_OQ);
      const __m512 numerator = _mm512_mask_mul_ps(x, negative, x, e);
      const __m512 silu = _mm512_div_ps(numerator, _mm512_add_ps(one, e));
      _mm512_storeu_ps(out + i, _mm512_mul_ps(silu, _mm512_loadu_ps(gate + k + i)));
    }
    for (; i < k; ++i) {
      const float x = gate[i], e = std::exp(-std::fabs(x));
      out[i] = (x < 0.0f ? x * e : x) / (1.0f + e) * gate[k + i];
    }
  }
  return int8_added(activated, residual, weight, offsets, multipliers, input_scale);
}


// -- one decode step's attention ---------------------------------------------------------------------

// One head of q or k, (D,), normed as the step's rms norm over the head, times its norm weight
// (which carries attention's 1/sqrt(D) for queries) and rotated: out[j] = y[j] cos[j] +
// y[(j + D/2) % D] sin[j], y the weighted head, cos and signed sin a row of Qwen3LM.rope_rows.
void normed_rotated(const float* head, const float* weight, const float* cos_sin, float eps, int64_t d, float* out) {
  const float inverse = inverse_rms(head, d, eps);
  const int64_t half = d / 2;
  for (int64_t j = 0; j < d; j += 16) {
    const int64_t partner = (j + half) % d;
    const __m512 y = _mm512_mul_ps(_mm512_loadu_ps(head + j), _mm512_loadu_ps(weight + j));
    const __m512 y_partner = _mm512_mul_ps(_mm512_loadu_ps(head + partner), _mm512_loadu_ps(weight + partner));
    const __m512 rotated = _mm512_fmadd_ps(y_partner, _mm512_loadu_ps(cos_sin + d + j),
                                           _mm512_mul_ps(y, _mm512_loadu_ps(cos_sin + j)));
    _mm512_storeu_ps(out + j, _mm512_mul_ps(rotated, _mm512_set1_ps(inverse)));
  }
}

// 16 sums of 16 lanes each -> one vector, lane i the sum of v[i] (a transposing add tree: about
// three operations a sum, where one horizontal add each takes about eight).
__m512 lane_sums(const __m512 v[16]) {
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

// scores (group, count): each of `group` queries (group, D) dotted with each of `count` keys
// (count, D), four queries by four keys at a time, so each key is loaded once per four queries.
void group_scores(const float* queries, int64_t group, const float* keys, int64_t count, int64_t d, float* scores) {
  for (int64_t h0 = 0; h0 < group; h0 += 4) {
    const float* query[4];
    for (int i = 0; i < 4; ++i) query[i] = queries + std::min<int64_t>(h0 + i, group - 1) * d;  // spare slots repeat
    for (int64_t p0 = 0; p0 < count; p0 += 4) {
      const float* key[4];
      for (int i = 0; i < 4; ++i) key[i] = keys + std::min<int64_t>(p0 + i, count - 1) * d;
      __m512 acc[16];
      for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
      for (int64_t j = 0; j < d; j += 16) {
        const __m512 k0 = _mm512_loadu_ps(key[0] + j), k1 = _mm512_loadu_ps(key[1] + j);
        const __m512 k2 = _mm512_loadu_ps(key[2] + j), k3 = _mm512_loadu_ps(key[3] + j);
        for (int h = 0; h < 4; ++h) {
          const __m512 q = _mm512_loadu_ps(query[h] + j);
          acc[4 * h] = _mm512_fmadd_ps(q, k0, acc[4 * h]);
          acc[4 * h + 1] = _mm512_fmadd_ps(q, k1, acc[4 * h + 1]);
          acc[4 * h + 2] = _mm512_fmadd_ps(q, k2, acc[4 * h + 2]);
          acc[4 * h + 3] = _mm512_fmadd_ps(q, k3, acc[4 * h + 3]);
        }
      }
      alignas(64) float sums[16];  // (query, key)
      _mm512_store_ps(sums, lane_sums(acc));
      for (int64_t h = 0; h < 4 && h0 + h < group; ++h)
        for (int64_t p = 0; p < 4 && p0 + p < count; ++p) scores[(h0 + h) * count + p0 + p] = sums[4 * h + p];
    }
  }
}

// Each query's weighted sum of the values (count, D) with its softmax numerators (group, count),
// into partials (group, D + 2) at offset 2: V x 16 columns of four queries at a time, each value
// loaded once for all four (spare query slots repeat the last query and are not stored).
template <int V>
void group_values_columns(const float* scores, int64_t group, int64_t h0, const float* values, int64_t count,
                          int64_t d, int64_t j, float* partials) {
  const float* weights[4];
  for (int h = 0; h < 4; ++h) weights[h] = scores + std::min<int64_t>(h0 + h, group - 1) * count;
  __m512 acc[4][V];
  for (int h = 0; h < 4; ++h)
    for (int c = 0; c < V; ++c) acc[h][c] = _mm512_setzero_ps();
  for (int64_t p = 0; p < count; ++p) {
    __m512 v[V];
    for (int c = 0; c < V; ++c) v[c] = _mm512_loadu_ps(values + p * d + j + 16 * c);
    for (int h = 0; h < 4; ++h) {
      const __m512 weight = _mm512_set1_ps(weights[h][p]);
      for (int c = 0; c < V; ++c) acc[h][c] = _mm512_fmadd_ps(weight, v[c], acc[h][c]);
    }
  }
  for (int64_t h = 0; h < 4 && h0 + h < group; ++h)
    for (int c = 0; c < V; ++c) _mm512_storeu_ps(partials + (h0 + h) * (d + 2) + 2 + j + 16 * c, acc[h][c]);
}

void group_values(const float* scores, int64_t group, const float* values, int64_t count, int64_t d, float* partials) {
  for (int64_t h0 = 0; h0 < group; h0 += 4)
    for (int64_t j = 0; j < d; j += 64) {
      switch (std::min<int64_t>(64, d - j) / 16) {  // d % 32 == 0 (checked)
        case 4: group_values_columns<4>(scores, group, h0, values, count, d, j, partials); break;
        case 3: group_values_columns<3>(scores, group, h0, values, count, d, j, partials); break;
        case 2: group_values_columns<2>(scores, group, h0, values, count, d, j, partials); break;
        default: group_values_columns<1>(scores, group, h0, values, count, d, j, partials); break;
      }
    }
}

// The attention of one decode step in layer `layer`, every row b its own sentence in cache slot b
// at position positions[b]: rows qkv (B, (h + 2 kvh) D) -> (B, h D). For each row: the q and k
// heads normed and rotated, k and v written to the caches (layers, slots, kvh, max_len, D) at the
// row's position, and each query head attends over its key head's positions 0..positions[b]
// (so a row reads only its own sentence: no mask, and the same result alone or in a batch).
at::Tensor attend(const at::Tensor& qkv_rows, const at::Tensor& qk_norm, const at::Tensor& qk_eps,
                  const at::Tensor& cos_sin_rows, const at::Tensor& key_cache, const at::Tensor& value_cache,
                  int64_t layer, const at::Tensor& positions, int64_t heads, int64_t kv_heads) {
  const at::Tensor qkv = qkv_rows.contiguous(), cos_sin = cos_sin_rows.contiguous();
  const at::Tensor where = positions.to(at::kLong).contiguous();
  TORCH_CHECK(key_cache.dim() == 5 && key_cache.is_contiguous() && value_cache.is_contiguous() &&
                  key_cache.sizes() == value_cache.sizes() && key_cache.scalar_type() == at::kFloat &&
                  value_cache.scalar_type() == at::kFloat && layer >= 0 && layer < key_cache.size(0),
              "soprano attend: the caches must be contiguous float32 (layers, slots, kv_heads, max_len, head_dim)");
  const int64_t rows = qkv.size(0), d = key_cache.size(4), max_len = key_cache.size(3);
  TORCH_CHECK(qkv.dim() == 2 && qkv.scalar_type() == at::kFloat && qkv.size(1) == (heads + 2 * kv_heads) * d &&
                  kv_heads > 0 && heads % kv_heads == 0 && d % 32 == 0 && key_cache.size(1) >= rows &&
                  key_cache.size(2) == kv_heads,
              "soprano attend: qkv must be (B, (heads + 2 kv_heads) head_dim) float32, head_dim a multiple of 32 (the "
              "rotation's halves in whole vectors), B at most the cache's slots");
  TORCH_CHECK(qk_norm.is_contiguous() && qk_norm.numel() == (heads + kv_heads) * d && qk_norm.scalar_type() == at::kFloat &&
                  cos_sin.dim() == 2 && cos_sin.size(0) == rows && cos_sin.size(1) == 2 * d &&
                  cos_sin.scalar_type() == at::kFloat && where.numel() == rows && qk_eps.numel() == 1 &&
                  qk_eps.scalar_type() == at::kFloat,
              "soprano attend: the norm weight, rotations, positions or eps do not fit");
  const int64_t* position = where.data_ptr<int64_t>();
  for (int64_t b = 0; b < rows; ++b)
    TORCH_CHECK(position[b] >= 0 && position[b] < max_len, "soprano attend: position ", position[b],
                " is outside the cache (", max_len, ")");
  at::Tensor out = at::empty({rows, heads * d}, qkv.options());
  const float eps = *qk_eps.data_ptr<float>();
  const int64_t group = heads / kv_heads, width = qkv.size(1);
  const float *source = qkv.data_ptr<float>(), *weights = qk_norm.data_ptr<float>(), *rope = cos_sin.data_ptr<float>();
  const int64_t layer_size = key_cache.size(1) * kv_heads * max_len * d;
  float* keys = key_cache.data_ptr<float>() + layer * layer_size;
  float* values = value_cache.data_ptr<float>() + layer * layer_size;
  float* result = out.data_ptr<float>();
  // The new keys and values first (few), then every query head on its own, shared among threads.
  for (int64_t b = 0; b < rows; ++b) {
    const float* row = source + b * width;
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t at = ((b * kv_heads + g) * max_len + position[b]) * d;
      normed_rotated(row + (heads + g) * d, weights + (heads + g) * d, rope + b * 2 * d, eps, d, keys + at);
      std::copy(row + (heads + kv_heads + g) * d, row + (heads + kv_heads + g + 1) * d, values + at);
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
      const float* head_keys = keys + (b * kv_heads + g) * max_len * d + from * d;
      const float* head_values = values + (b * kv_heads + g) * max_len * d + from * d;
      for (int64_t h = 0; h < group; ++h)
        normed_rotated(source + b * width + (g * group + h) * d, weights + (g * group + h) * d, rope + b * 2 * d, eps,
                       d, queries.data() + h * d);
      const int64_t count = to - from;
      scores.resize(static_cast<size_t>(group * count));
      group_scores(queries.data(), group, head_keys, count, d, scores.data());
      for (int64_t h = 0; h < group; ++h) {
        float* head_scores = scores.data() + h * count;
        __m512 most = _mm512_set1_ps(-INFINITY);
        for (int64_t l = 0; l < count; l += 16) {
          const __mmask16 mask = count - l >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (count - l)) - 1);
          most = _mm512_mask_max_ps(most, mask, most, _mm512_maskz_loadu_ps(mask, head_scores + l));
        }
        const float largest = _mm512_reduce_max_ps(most);
        __m512 total = _mm512_setzero_ps();
        for (int64_t l = 0; l < count; l += 16) {
          const __mmask16 mask = count - l >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << (count - l)) - 1);
          const __m512 e = exp_nonpositive(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, head_scores + l),
                                                         _mm512_set1_ps(largest)));
          _mm512_mask_storeu_ps(head_scores + l, mask, e);
          total = _mm512_add_ps(total, _mm512_maskz_mov_ps(mask, e));
        }
        first_partial[h * (d + 2)] = largest;
        first_partial[h * (d + 2) + 1] = _mm512_reduce_add_ps(total);
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
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(soprano, CPU, m) {
  m.impl("int8_rows", &int8_rows);
  m.impl("int8_linear", &int8_linear);
  m.impl("int8_normed", &int8_normed);
  m.impl("int8_added", &int8_added);
  m.impl("int8_gated_added", &int8_gated_added);
  m.impl("attend", &attend);
}
