// What one thread of a CUDA kernel does, host/device so that it can be
// checked on the host (tests/test_cuda_host.py runs every kernel functor
// through it on the CPU; no GPU runs the suite on most machines):
//   - vector packs: N consecutive elements read and written as one aligned
//     vector, 16 bytes' worth (kVecWidth: 4 float, 2 double, 8 half or
//     bfloat16), used when every row of every input and output starts on
//     an N-element boundary (rows_aligned), else N = 1;
//   - the split of a [rows, cols] problem among threads: packs of N
//     columns, then the cols % N columns left at each row's end, one by
//     one. Rows start aligned, so a pack never straddles two rows.
// A kernel functor has `template <int N> bool aligned() const` on the host
// (rows_aligned of everything it reads and writes) and, on the device,
//   - a row-sum Term: `template <int N> void add(int64_t row, int64_t col,
//     acc_t& acc) const`, adding the terms of columns col .. col + N - 1 (it
//     may also write per-element outputs, each exactly once);
//   - an elementwise functor: `template <int N> void elements(int64_t row,
//     int64_t col) const`.
#pragma once

#include "../common/tensor_args.h"

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>

namespace paf::cuda {

template <typename scalar_t>
using opmath_t = at::opmath_type<scalar_t>;

constexpr int kThreads = 256;  // threads per block of every kernel
constexpr int kWarp = 32;
// Row sums: rows up to kWarp * kTermsPerThread columns are summed by one
// warp, longer ones by one block per chunk of kChunkCols columns, so a
// float accumulator adds about 16 terms.
constexpr int64_t kTermsPerThread = 16;
constexpr int64_t kChunkCols = kThreads * kTermsPerThread;

C10_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
C10_HOST_DEVICE inline bool summed_by_warps(int64_t cols) { return cols <= kWarp * kTermsPerThread; }

template <typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> load(const scalar_t* p, int64_t j) {
  return static_cast<opmath_t<scalar_t>>(p[j]);
}

// ---------------------------------------------------------- vector packs
template <typename scalar_t>
constexpr int kVecWidth = 16 / static_cast<int>(sizeof(scalar_t));

template <typename scalar_t, int N>
struct alignas(sizeof(scalar_t) * N) RawPack {
  scalar_t v[N];
};

// out[k] = p[k], k < N, in opmath (p aligned to N elements).
template <int N, typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void load_pack(const scalar_t* p, opmath_t<scalar_t> (&out)[N]) {
  const RawPack<scalar_t, N> raw = *reinterpret_cast<const RawPack<scalar_t, N>*>(p);
#pragma unroll
  for (int k = 0; k < N; ++k) out[k] = static_cast<opmath_t<scalar_t>>(raw.v[k]);
}

// p[k] = in[k], k < N, rounded to scalar_t (p aligned to N elements).
template <int N, typename scalar_t, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void store_pack(scalar_t* p, const T (&in)[N]) {
  RawPack<scalar_t, N> raw;
#pragma unroll
  for (int k = 0; k < N; ++k) raw.v[k] = static_cast<scalar_t>(in[k]);
  *reinterpret_cast<RawPack<scalar_t, N>*>(p) = raw;
}

// Whether every row of m starts on an N-element boundary (host side).
template <int N, typename T>
bool rows_aligned(const RowMatrix<T>& m) {
  return reinterpret_cast<std::uintptr_t>(m.data) % (sizeof(T) * N) == 0 && (m.rows <= 1 || m.row_stride % N == 0);
}

// The dense [rows, cols] matrix at data (a kernel's output).
template <typename T>
RowMatrix<T> dense_rows(T* data, int64_t rows, int64_t cols) {
  return {data, rows, cols, cols};
}
// Whether every row of the dense [rows, cols] outputs at the given pointers
// (null: an output not written) starts on an N-element boundary.
template <int N, typename... Ts>
bool dense_rows_aligned(int64_t rows, int64_t cols, const Ts*... outputs) {
  return ((outputs == nullptr || rows_aligned<N>(dense_rows(outputs, rows, cols))) && ...);
}

// Calls launch(std::integral_constant<int, N>) with N = kVecWidth when
// aligned, else N = 1.
template <typename scalar_t, typename Launch>
void with_pack_width(bool aligned, const Launch& launch) {
  if (aligned) {
    launch(std::integral_constant<int, kVecWidth<scalar_t>>{});
  } else {
    launch(std::integral_constant<int, 1>{});
  }
}

// --------------------------------------------- row-sum kernel variants
// How the long-row kernel of a launch that offers variants (elbo's
// log-likelihood rows) has each thread take its share of a 4096-column
// chunk: PAF_CUDA_ROW_SUM, read at each launch, so that one GPU run can
// measure them side by side (benchmarks.row_sum_variants):
//   ahead (default): 16-byte packs, round-robin, a thread's packs (16 terms)
//          all loaded before the first is added (kAhead; a LoadsAhead Term);
//   packs: one pack at a time: load, add, store, then the next load (the
//          stores may alias the next loads, for all the compiler knows, so
//          it keeps that order).
// The same order of addition: the same results, bit for bit. On an H200
// (2026-12-04, float32 VAE loss forward + backward, device time): ahead
// 0.86-0.95x packs' time where the rows are long, the same on short rows.
// A third, one pack of 16 contiguous terms per thread, was 1.02-1.13x
// slower than packs there and was removed.
enum class RowSumVariant { kPacks, kAhead };

inline RowSumVariant row_sum_variant() {
  const char* value = std::getenv("PAF_CUDA_ROW_SUM");
  return value != nullptr && std::string(value) == "packs" ? RowSumVariant::kPacks : RowSumVariant::kAhead;
}

// A Term that can load ahead: `template <int N> struct Operands` (N
// columns' loaded inputs), `load<N>(r, j, Operands<N>&)` and
// `add_loaded<N>(r, j, Operands<N>&, acc)`; its add<N> is the two in turn.
template <typename Term, typename = void>
struct LoadsAheadTrait : std::false_type {};
template <typename Term>
struct LoadsAheadTrait<Term, std::void_t<typename Term::template Operands<1>>> : std::true_type {};
template <typename Term>
constexpr bool LoadsAhead = LoadsAheadTrait<Term>::value;

// Calls launch(integral_constant<int, N>, integral_constant<int, kAhead>)
// for `variant`: N = 1, one element at a time, when the term is not
// aligned; kAhead = the packs of 16 terms (1 for double, whose terms spill
// registers at two) for kAhead on a LoadsAhead Term.
template <typename scalar_t, typename Term, typename Launch>
void with_row_sum_variant(const Term& term, RowSumVariant variant, const Launch& launch) {
  constexpr int kVec = kVecWidth<scalar_t>;
  using One = std::integral_constant<int, 1>;
  if (!term.template aligned<kVec>()) {
    launch(One{}, One{});
    return;
  }
  if constexpr (LoadsAhead<Term> && sizeof(scalar_t) < 8) {
    if (variant == RowSumVariant::kAhead) {
      launch(std::integral_constant<int, kVec>{}, std::integral_constant<int, 16 / kVec>{});
      return;
    }
  }
  launch(std::integral_constant<int, kVec>{}, One{});
}

// ------------------------------------------------- a thread's share
// fn.elements<N>(r, j) for the packs, and fn.elements<1>(r, j) for the
// tail columns, that fall to thread `first` of a grid of `step` threads.
template <int N, typename Fn>
C10_HOST_DEVICE C10_ALWAYS_INLINE void for_each_pack(int64_t rows, int64_t cols, int64_t first, int64_t step,
                                                     const Fn& fn) {
  const int64_t packs = cols / N, tail = cols - packs * N;
  for (int64_t p = first; p < rows * packs; p += step) fn.template elements<N>(p / packs, (p % packs) * N);
  if constexpr (N > 1) {
    for (int64_t t = first; t < rows * tail; t += step) fn.template elements<1>(t / tail, packs * N + t % tail);
  }
}

// acc += the terms of row r in columns [begin, end) (begin a multiple of N)
// that fall to thread `first` of `step` threads summing the row: packs of
// N, spread round-robin, then the tail columns. kAhead > 1 (a Term with
// Operands, load and add_loaded: LoadsAhead) loads kAhead packs before it
// adds the first of them, in the same order of addition: the results are
// the same bit for bit, with more bytes in flight per thread.
template <int N, typename acc_t, typename Term, int kAhead = 1>
C10_HOST_DEVICE C10_ALWAYS_INLINE void add_row_slice(const Term& term, int64_t r, int64_t begin, int64_t end,
                                                     int64_t first, int64_t step, acc_t& acc) {
  const int64_t body_end = begin + (end - begin) / N * N;
  int64_t j = begin + first * N;
  if constexpr (kAhead > 1) {
    typename Term::template Operands<N> operands[kAhead];
    for (; j + (kAhead - 1) * step * N < body_end; j += kAhead * step * N) {
#pragma unroll
      for (int k = 0; k < kAhead; ++k) term.template load<N>(r, j + k * step * N, operands[k]);
#pragma unroll
      for (int k = 0; k < kAhead; ++k) term.template add_loaded<N>(r, j + k * step * N, operands[k], acc);
    }
  }
  // A thread's body is at most 16 terms, 4 packs of float or 2 of half:
  // unrolled in full. Double packs are added one at a time: unrolled, the
  // double likelihood and KL terms spill registers.
#pragma unroll(sizeof(acc_t) == 8 ? 1 : 4)
  for (; j < body_end; j += step * N) term.template add<N>(r, j, acc);
  if constexpr (N > 1) {
    for (int64_t j = body_end + first; j < end; j += step) term.template add<1>(r, j, acc);
  }
}

// ------------------------------------------- functors of element values
// The row-sum term and the elementwise body of a functor whose
// `values<N>(r, j, v)` gives the N values of columns j .. j + N - 1 of row r
// (storing its other per-element outputs): add_values adds them to acc,
// store_values stores them to the dense [rows, cols] out.
template <int N, typename Fn, typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void add_values(const Fn& fn, int64_t r, int64_t j, T& acc) {
  T v[N];
  fn.template values<N>(r, j, v);
#pragma unroll
  for (int k = 0; k < N; ++k) acc += v[k];
}
template <int N, typename Fn, typename scalar_t>
C10_HOST_DEVICE C10_ALWAYS_INLINE void store_values(const Fn& fn, int64_t r, int64_t j, scalar_t* out, int64_t cols) {
  opmath_t<scalar_t> v[N];
  fn.template values<N>(r, j, v);
  store_pack<N>(out + r * cols + j, v);
}

}  // namespace paf::cuda
