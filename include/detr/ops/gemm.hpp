#pragma once
// GEMM on row-major blocks with leading dimensions: C[M,N] = op(A) op(B) + beta C, op = transpose
// when ta / tb (A is stored [M,K], or [K,M] when ta; B is [K,N], or [N,K] when tb).
//
// float with AVX-512 runs our own packed GEMM, BLIS's loop structure: a KC x NC panel of B is
// packed into NR-wide strips (shared by the threads), an MC x KC block of A into MR-tall strips
// (one per thread), and a 12 x 32 register tile (24 zmm accumulators) walks them. On one large
// square product it is on a par with Eigen 3.4 and at 0.94 of OpenBLAS (benchmarks/compare.sh
// gemm: 302 GFLOP/s on 2 cores); it is here for what a library call cannot do: a bias
// epilogue, a B packed once and reused (attention), in-place A for thin products, a depth split
// for weight gradients, and serial use inside our own parallel loops. Other types and CPUs go
// through Eigen.
#include <Eigen/Core>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <type_traits>

#include "detr/core/host_allocator.hpp"
#include "detr/core/parallel.hpp"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace detr::internal {

// max(v, 0) with NaN kept, as torch.relu does (a NaN must stay visible, not turn into 0).
template <class T>
inline T relu_of(T v) {
  return v < T(0) ? T(0) : v;
}

// Eigen's product with strides: the path for double, and for float without AVX-512.
template <class T>
void eigen_gemm_serial(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                       int64_t ldb, T* C, int64_t ldc, T beta) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Stride = Eigen::OuterStride<>;
  Eigen::Map<Mat, 0, Stride> c(C, M, N, Stride(ldc));
  Eigen::Map<const Mat, 0, Stride> a(A, ta ? K : M, ta ? M : K, Stride(lda));
  Eigen::Map<const Mat, 0, Stride> b(B, tb ? N : K, tb ? K : N, Stride(ldb));
  if (beta == T(0)) c.setZero();
  else if (beta != T(1)) c *= beta;
  if (K == 0) return;
  if (!ta && !tb) c.noalias() += a * b;
  else if (!ta && tb) c.noalias() += a * b.transpose();
  else if (ta && !tb) c.noalias() += a.transpose() * b;
  else c.noalias() += a.transpose() * b.transpose();
}

// Eigen runs single-threaded here (no OpenMP): large products split C's rows over the pool.
template <class T>
void eigen_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
                int64_t ldb, T* C, int64_t ldc, T beta) {
  const int64_t rows = std::max<int64_t>(16, ((int64_t(1) << 19) + N * K) / std::max<int64_t>(1, N * K));
  parallel_for(M, rows, [&](int64_t i0, int64_t i1) {
    eigen_gemm_serial(ta, tb, i1 - i0, N, K, ta ? A + i0 : A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, beta);
  });
}

#if defined(__AVX512F__)
namespace sgemm {

constexpr int64_t MR = 12, NR = 32;  // register tile: 12 rows x 2 zmm
constexpr int64_t KC = 512;          // depth of one packed panel: a B strip (KC x NR, 64 KB)
constexpr int64_t MC = 16 * MR;      // rows of a packed A block (192 x 512, 384 KB: L2)
constexpr int64_t NC = 4096;         // columns of a packed B panel (8 MB at most, shared)

// C[MR x NR] = A B + beta C over kc steps. Element (r, k) of A is a[r * ars + k * acs] (a packed
// strip has ars = 1, acs = MR); B is a packed strip [kc][NR]. beta == 0 never reads C (it may
// hold garbage, even NaN). A non-null `bias` (NR values) starts every row at bias instead of 0;
// `relu` stores max(value, 0) and keeps NaN (as relu() and torch do).
__attribute__((always_inline)) inline void micro_kernel(int64_t kc, const float* __restrict a, int64_t ars,
                                                        int64_t acs, const float* __restrict b, float* c,
                                                        int64_t ldc, float beta, const float* bias, bool relu) {
  const __m512 init0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
  const __m512 init1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) c0[r] = init0, c1[r] = init1;
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r * ars]);
      c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
    }
    a += acs;
    b += NR;
  }
  if (beta != 0.f) {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
      c0[r] = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + r * ldc), c0[r]);
      c1[r] = _mm512_fmadd_ps(vb, _mm512_loadu_ps(c + r * ldc + 16), c1[r]);
    }
  }
  if (relu) {  // max_ps returns its second operand when one is NaN: NaN stays NaN, as in torch
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) c0[r] = _mm512_max_ps(zero, c0[r]), c1[r] = _mm512_max_ps(zero, c1[r]);
  }
#pragma GCC unroll 12
  for (int r = 0; r < MR; ++r) {
    _mm512_storeu_ps(c + r * ldc, c0[r]);
    _mm512_storeu_ps(c + r * ldc + 16, c1[r]);
  }
}

// The kernel on a packed A strip [kc][MR] (not inlined: one copy serves every call site).
__attribute__((noinline)) inline void packed_kernel(int64_t kc, const float* a, const float* b, float* c,
                                                    int64_t ldc, float beta, const float* bias, bool relu) {
  micro_kernel(kc, a, 1, MR, b, c, ldc, beta, bias, relu);
}

// The kernel reading A in place: rows of a row-major A (ta = false) or columns of a stored [K, M] one.
__attribute__((noinline)) inline void direct_kernel(bool ta, int64_t kc, const float* a, int64_t lda,
                                                    const float* b, float* c, int64_t ldc, float beta,
                                                    const float* bias, bool relu) {
  if (ta) micro_kernel(kc, a, 1, lda, b, c, ldc, beta, bias, relu);
  else micro_kernel(kc, a, lda, 1, b, c, ldc, beta, bias, relu);
}

// The m x n corner of a full tile computed into a buffer, stored to C (partial tiles at the edges).
inline void store_corner(const float* tile, float* c, int64_t ldc, float beta, bool relu, int64_t m, int64_t n) {
  for (int64_t r = 0; r < m; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const float v = beta == 0.f ? tile[r * NR + j] : tile[r * NR + j] + beta * c[r * ldc + j];
      c[r * ldc + j] = relu ? relu_of(v) : v;
    }
}

// In-register transpose of a 16 x 16 block: r[i] lane j becomes r[j] lane i.
__attribute__((always_inline)) inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
}

// out[k * ld_out + i] = src[i * ld_src + k] for i < rows (<= 16; rows up to 16 are zero) and
// k < depth, 16 depth steps per transpose; `lanes` of each output row are stored.
inline void transpose_rows(const float* src, int64_t ld_src, int64_t rows, int64_t depth, float* out,
                           int64_t ld_out, __mmask16 lanes) {
  __m512 r[16];
  for (int64_t k = 0; k < depth; k += 16) {
    const int64_t d = std::min<int64_t>(16, depth - k);
    const __mmask16 load = __mmask16((1u << d) - 1);
    for (int64_t i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(load, src + i * ld_src + k) : _mm512_setzero_ps();
    transpose16(r);
    for (int64_t t = 0; t < d; ++t) _mm512_mask_storeu_ps(out + (k + t) * ld_out, lanes, r[t]);
  }
}

// Rows [i0, i0 + mc) x depth [k0, k0 + kc) of op(A) into MR-tall strips [kc][MR], zero-padded.
inline void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t k0, int64_t kc,
                   float* out) {
  const __mmask16 strip = __mmask16((1u << MR) - 1);
  for (int64_t s = 0; s < mc; s += MR, out += MR * kc) {
    const int64_t m = std::min(MR, mc - s);
    if (ta) {  // A stored [K, M]: each depth step is m contiguous values, one masked load
      const __mmask16 load = __mmask16((1u << m) - 1);
      for (int64_t k = 0; k < kc; ++k)
        _mm512_mask_storeu_ps(out + k * MR, strip, _mm512_maskz_loadu_ps(load, A + (k0 + k) * lda + i0 + s));
    } else {  // A stored [M, K]: transpose m rows
      transpose_rows(A + (i0 + s) * lda + k0, lda, m, kc, out, MR, strip);
    }
  }
}

// Strip s (columns [j0 + s NR, +NR)) x depth [k0, k0 + kc) of op(B) into [kc][NR], zero-padded.
inline void pack_b_strip(bool tb, const float* B, int64_t ldb, int64_t j, int64_t n, int64_t k0, int64_t kc,
                         float* out) {
  if (!tb) {  // B stored [K, N]: each depth step is n contiguous values
    const __mmask16 lo = __mmask16((1u << std::min<int64_t>(n, 16)) - 1);
    const __mmask16 hi = __mmask16((1u << std::clamp<int64_t>(n - 16, 0, 16)) - 1);
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + j;
      _mm512_store_ps(out + k * NR, _mm512_maskz_loadu_ps(lo, src));
      _mm512_store_ps(out + k * NR + 16, _mm512_maskz_loadu_ps(hi, src + 16));
    }
  } else {  // B stored [N, K]: transpose n rows, 16 columns of the strip at a time
    for (int64_t h = 0; h < NR; h += 16)
      transpose_rows(B + (j + h) * ldb + k0, ldb, std::clamp<int64_t>(n - h, 0, 16), kc, out + h, NR,
                     __mmask16(0xffff));
  }
}

// With few column strips, packing A would cost about as much as using it: full row strips of a
// row-major A are then read in place and only a partial last strip is packed. A transposed A
// (MR values per depth step, a row apart) is read in place only when shallow: deep ones stride
// too far for the prefetchers (850 x 32 x 48: 131 -> 160 GFLOP/s in place; x 850: 114 -> 95).
inline bool reads_a_in_place(bool ta, int64_t N, int64_t K) { return N <= 4 * NR && (!ta || K <= 256); }

// Packs what macro_kernel needs of rows [i0, i0 + mc) x depth [k0, k0 + kc) of op(A).
inline void pack_a_rows(bool ta, const float* A, int64_t lda, bool in_place, int64_t i0, int64_t mc, int64_t k0,
                        int64_t kc, float* out) {
  if (!in_place) pack_a(ta, A, lda, i0, mc, k0, kc, out);
  else if (mc % MR != 0) pack_a(ta, A, lda, i0 + mc / MR * MR, mc % MR, k0, kc, out);
}

// C rows [i0, i0 + mc) x columns of panel strips [s0, s1) = op(A) panel + beta C, for depth
// [k0, k0 + kc); strip s covers columns j0 + s NR. `ap` is pack_a_rows' output. A non-null
// `bias` [N] is added to every row (with beta = 0: the first depth block of C = A B + bias);
// `relu` clamps the result at 0 (the last depth block).
inline void macro_kernel(bool ta, const float* A, int64_t lda, bool in_place, const float* ap, int64_t i0,
                         int64_t mc, int64_t k0, int64_t kc, const float* panel, int64_t s0, int64_t s1,
                         int64_t j0, int64_t N, float* C, int64_t ldc, float beta, const float* bias, bool relu) {
  alignas(64) float tile[MR * NR];
  alignas(64) float bias_edge[NR];
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t j = j0 + s * NR, n = std::min(NR, N - j);
    const float* bs = panel + s * NR * kc;
    const float* bias_s = nullptr;
    if (bias && n == NR) bias_s = bias + j;
    else if (bias) {  // the last strip: a zero-padded copy, so the kernel never reads past N
      std::fill_n(bias_edge, NR, 0.f);
      std::copy_n(bias + j, n, bias_edge);
      bias_s = bias_edge;
    }
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int64_t m = std::min(MR, mc - ir), i = i0 + ir;
      float* c = C + i * ldc + j;
      const bool full = m == MR && n == NR;
      if (in_place && m == MR) {
        const float* a = ta ? A + k0 * lda + i : A + i * lda + k0;
        direct_kernel(ta, kc, a, lda, bs, full ? c : tile, full ? ldc : NR, full ? beta : 0.f, bias_s, full && relu);
      } else {
        packed_kernel(kc, ap + (in_place ? 0 : ir * kc), bs, full ? c : tile, full ? ldc : NR, full ? beta : 0.f,
                      bias_s, full && relu);
      }
      if (!full) store_corner(tile, c, ldc, beta, relu, m, n);
    }
  }
}

inline void gemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                         const float* B, int64_t ldb, float* C, int64_t ldc, float beta, const float* bias, bool relu);

// A number no other (depth block of a) product has had: tells a thread whether the A block in
// its scratch is this product's.
inline uint64_t next_panel_id() {
  static std::atomic<uint64_t> id{0};
  return ++id;
}

// A deep product with a small output (weight gradients: K = tokens, tens of thousands): the
// depth is cut into `slices` on KC boundaries, each computed into its own C with no shared
// panel, and the partial Cs are added in slice order (the same bits for any thread count).
inline void gemm_split_depth(int64_t slices, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A,
                             int64_t lda, const float* B, int64_t ldb, float* C, int64_t ldc, float beta) {
  struct Partial;
  float* partial = thread_scratch<Partial, 0, float>(size_t((slices - 1) * M * N));
  const int64_t blocks = (K + KC - 1) / KC;
  parallel_chunks(slices, [&](int64_t t) {
    const int64_t k0 = std::min(K, blocks * t / slices * KC), k1 = std::min(K, blocks * (t + 1) / slices * KC);
    const float* a = A + (ta ? k0 * lda : k0);
    const float* b = B + (tb ? k0 : k0 * ldb);
    // (K >= 4 KC per slice: no slice is empty.)
    // One level only: a slice split again would reuse this thread's partial buffer.
    if (t == 0) gemm_blocked(ta, tb, M, N, k1 - k0, a, lda, b, ldb, C, ldc, beta, nullptr, false);
    else gemm_blocked(ta, tb, M, N, k1 - k0, a, lda, b, ldb, partial + (t - 1) * M * N, N, 0.f, nullptr, false);
  });
  parallel_for(M, std::max<int64_t>(1, 4096 / N), [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t p = 1; p < slices; ++p) {
        const float* src = partial + (p - 1) * M * N + i * N;
        float* dst = C + i * ldc;
#pragma omp simd
        for (int64_t j = 0; j < N; ++j) dst[j] += src[j];
      }
  });
}

inline void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                 const float* B, int64_t ldb, float* C, int64_t ldc, float beta, const float* bias,
                 bool relu = false) {
  // Depth slices for a deep product with a small output: their count (4 KC deep at least) and
  // whether to split at all depend on the shape only, so the sum is the same on any number of
  // threads, and inside another parallel loop too.
  const int64_t slices = std::min<int64_t>(4, K / (4 * KC));
  if (!bias && !relu && slices >= 2 && M * N <= (int64_t(1) << 20) && M * N * K >= (int64_t(1) << 19))
    return gemm_split_depth(slices, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, beta);
  gemm_blocked(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, beta, bias, relu);
}

// The packed product over the whole depth, its row blocks (and column parts) over the pool.
inline void gemm_blocked(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                         const float* B, int64_t ldb, float* C, int64_t ldc, float beta, const float* bias, bool relu) {
  // Threads pay off above ~1 MFLOP, and never inside another parallel loop.
  const bool parallel = !in_parallel() && num_threads() > 1 && M * N * K >= (int64_t(1) << 19);
  // The B panel belongs to the calling thread and is shared with the helpers.
  struct Panel;
  float* panel = thread_scratch<Panel, 0, float>(size_t(KC * std::min((N + NR - 1) / NR * NR, NC)));
  // Row blocks of whole MR strips, at most MC / MR strips each, as many as a multiple of the
  // thread count and differing by at most one strip: every thread gets the same work (1700 rows
  // in 9 blocks of 192 gave one thread 5 blocks and the other 4). The partition never changes
  // what is summed in which order, only who computes it.
  const int64_t threads = parallel ? num_threads() : 1;
  const int64_t row_strips = (M + MR - 1) / MR;
  const int64_t mblocks =
      std::min(row_strips, ((row_strips + MC / MR - 1) / (MC / MR) + threads - 1) / threads * threads);
  auto block_rows = [&](int64_t ib) { return std::min(M, ib * row_strips / mblocks * MR); };
  const bool in_place = reads_a_in_place(ta, N, K);

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc), strips = (nc + NR - 1) / NR;
    // Split columns too when there are fewer row blocks than 2 per thread.
    const int64_t splits = std::clamp<int64_t>((2 * threads + mblocks - 1) / mblocks, 1, strips);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      auto pack = [&](int64_t s0, int64_t s1) {
        for (int64_t s = s0; s < s1; ++s)
          pack_b_strip(tb, B, ldb, jc + s * NR, std::min(NR, nc - s * NR), pc, kc, panel + s * NR * kc);
      };
      // One item: a row block against a part of the panel's strips.
      // One item: a row block against a part of the panel's strips. A thread keeps its packed A
      // block for its next item of the same block (items are owned in runs, see parallel.hpp).
      const uint64_t panel_id = next_panel_id();
      auto item = [&](int64_t it) {
        struct ABlock;
        float* ablock = thread_scratch<ABlock, 0, float>(size_t(MC * KC));
        thread_local uint64_t packed_panel = 0;
        thread_local int64_t packed_block = -1;
        const int64_t ib = it / splits, part = it % splits;
        const int64_t i0 = block_rows(ib), mc = block_rows(ib + 1) - i0;
        if (packed_panel != panel_id || packed_block != ib) pack_a_rows(ta, A, lda, in_place, i0, mc, pc, kc, ablock);
        packed_panel = panel_id;
        packed_block = ib;
        macro_kernel(ta, A, lda, in_place, ablock, i0, mc, pc, kc, panel, part * strips / splits,
                     (part + 1) * strips / splits, jc, N, C, ldc, pc == 0 ? beta : 1.f, pc == 0 ? bias : nullptr,
                     relu && pc + kc == K);
      };
      if (parallel) {
        parallel_for(strips, 4, pack);
        parallel_chunks(mblocks * splits, item);
      } else {
        pack(0, strips);
        for (int64_t it = 0; it < mblocks * splits; ++it) item(it);
      }
    }
  }
}

// Serial C[M,N] = op(A) B + beta C with B packed beforehand: depth blocks of KC, each block
// [strips][kc][NR] at offset k0 * padded N.
inline void gemm_prepacked(bool ta, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
                           const float* packed, float* C, int64_t ldc, float beta) {
  struct ABlock;
  float* ablock = thread_scratch<ABlock, 0, float>(size_t(MC * KC));
  const int64_t strips = (N + NR - 1) / NR;
  const bool in_place = reads_a_in_place(ta, N, K);
  for (int64_t pc = 0; pc < K; pc += KC) {
    const int64_t kc = std::min(KC, K - pc);
    for (int64_t i0 = 0; i0 < M; i0 += MC) {
      const int64_t mc = std::min(MC, M - i0);
      pack_a_rows(ta, A, lda, in_place, i0, mc, pc, kc, ablock);
      macro_kernel(ta, A, lda, in_place, ablock, i0, mc, pc, kc, packed + pc * strips * NR, 0, strips, 0, N, C,
                   ldc, pc == 0 ? beta : 1.f, nullptr, false);
    }
  }
}

}  // namespace sgemm
#endif

template <class T>
inline constexpr bool kPackedGemm =
#if defined(__AVX512F__)
    std::is_same_v<T, float>;
#else
    false;
#endif

// op(B) [K, N] prepared once for many products with it (attention reuses each head's K^T and V
// for every block of queries): packed for our kernel, or just remembered for Eigen.
template <class T>
class PackedB {
 public:
  void pack(bool tb, const T* B, int64_t ldb, int64_t K, int64_t N) {
    K_ = K, N_ = N, tb_ = tb, B_ = B, ldb_ = ldb;
#if defined(__AVX512F__)
    if constexpr (kPackedGemm<T>) {
      using namespace sgemm;
      const int64_t strips = (N + NR - 1) / NR;
      float* out = buf_.get(size_t(K * strips * NR));
      for (int64_t k0 = 0; k0 < K; k0 += KC) {
        const int64_t kc = std::min(KC, K - k0);
        for (int64_t s = 0; s < strips; ++s)
          pack_b_strip(tb, B, ldb, s * NR, std::min(NR, N - s * NR), k0, kc, out + k0 * strips * NR + s * NR * kc);
      }
    }
#endif
  }

  // C[M, N] = op(A) B + beta C, on the calling thread.
  void multiply(bool ta, int64_t M, const T* A, int64_t lda, T* C, int64_t ldc, T beta = T(0)) const {
    if (M == 0 || N_ == 0) return;
#if defined(__AVX512F__)
    if constexpr (kPackedGemm<T>) {
      if (K_ > 0) return sgemm::gemm_prepacked(ta, M, N_, K_, A, lda, buf_.data(), C, ldc, beta);
    }
#endif
    eigen_gemm(ta, tb_, M, N_, K_, A, lda, B_, ldb_, C, ldc, beta);
  }

 private:
  int64_t K_ = 0, N_ = 0, ldb_ = 0;
  bool tb_ = false;
  const T* B_ = nullptr;
#if defined(__AVX512F__)
  ScratchBuffer<float> buf_;
#endif
};

template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
          int64_t ldb, T* C, int64_t ldc, T beta = T(0)) {
  if (M == 0 || N == 0) return;
#if defined(__AVX512F__)
  if constexpr (kPackedGemm<T>) {
    if (K > 0) return sgemm::gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, beta, nullptr);
  }
#endif
  eigen_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, beta);
}

// C[M,N] = op(A) op(B) + bias, bias [N] (or null: none) added to every row
// (torch.nn.functional.linear), and with `relu` clamped at 0 (NaN kept, as relu() does): our kernel
// starts its accumulators at the bias and clamps them before the store, so C is written once.
template <class T>
void gemm_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda, const T* B,
               int64_t ldb, T* C, int64_t ldc, const T* bias, bool relu = false) {
  if (M == 0 || N == 0) return;
#if defined(__AVX512F__)
  if constexpr (kPackedGemm<T>) {
    if (K > 0) return sgemm::gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, 0.f, bias, relu);
  }
#endif
  const int64_t rows = std::max<int64_t>(1, (1 << 14) / N);
  if (bias)
    parallel_for(M, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) std::copy_n(bias, N, C + r * ldc);
    });
  eigen_gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, bias ? T(1) : T(0));
  if (!relu) return;
  parallel_for(M, rows, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t j = 0; j < N; ++j) C[r * ldc + j] = relu_of(C[r * ldc + j]);
  });
}

// Dense operands: lda = K (or M when ta), ldb = N (or K when tb), ldc = N.
template <class T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, const T* B, T* C, T beta = T(0)) {
  gemm(ta, tb, M, N, K, A, ta ? M : K, B, tb ? K : N, C, N, beta);
}

}  // namespace detr::internal
