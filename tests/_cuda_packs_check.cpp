// Host check of csrc/cuda/packs.h, the split of rows into vector packs that
// every CUDA row-sum and elementwise kernel runs (tests/test_cuda_packs.py
// builds and runs it). It plays each kernel's threads one after another,
// with the launch shapes of cuda_utils.cuh, and checks that every element is
// visited exactly once, that each pack starts on an N-element boundary of
// its row and stays inside it, and how many terms one thread adds.
#include "../csrc/cuda/packs.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace {

int failures = 0;

void expect(bool ok, const char* what, int n, long rows, long cols, long extra) {
  if (!ok && failures++ < 20) std::printf("FAIL %s: N=%d rows=%ld cols=%ld (%ld)\n", what, n, rows, cols, extra);
}

// Records the packs it is given: visits per element, alignment, bounds.
struct Recorder {
  long rows, cols, begin, end;
  int n;
  std::vector<int>* visits;
  long* terms;  // terms added by the current thread
  template <int N>
  void add(int64_t r, int64_t j, long& acc) const {
    expect(N == 1 || N == n, "pack width", n, rows, cols, N);
    expect(N == 1 || j % N == 0, "pack alignment", n, rows, cols, j);
    expect(r >= 0 && r < rows && j >= begin && j + N <= end, "pack bounds", n, rows, cols, j);
    for (int k = 0; k < N; ++k) ++(*visits)[r * cols + j + k];
    acc += N;
    *terms += N;
  }
  template <int N>
  void elements(int64_t r, int64_t j) const {
    long acc = 0;
    add<N>(r, j, acc);
  }
};

bool each_visited_once(const std::vector<int>& visits) {
  return std::all_of(visits.begin(), visits.end(), [](int v) { return v == 1; });
}

// warp_row_sums_kernel: 32 lanes per row, rows of at most 512 columns.
template <int N>
void check_warp_rows(long rows, long cols) {
  std::vector<int> visits(rows * cols, 0);
  long terms = 0, most = 0;
  Recorder rec{rows, cols, 0, cols, N, &visits, &terms};
  for (long r = 0; r < rows; ++r) {
    for (long lane = 0; lane < 32; ++lane) {
      long acc = 0;
      terms = 0;
      paf::cuda::add_row_slice<N>(rec, r, 0, cols, lane, 32, acc);
      most = std::max(most, terms);
    }
  }
  expect(each_visited_once(visits), "warp rows: each element once", N, rows, cols, 0);
  expect(most <= 16 + (N > 1 ? 1 : 0), "warp rows: terms per lane", N, rows, cols, most);
}

// block_row_sums_kernel: 256 threads per chunk of 4096 columns.
template <int N>
void check_block_rows(long rows, long cols) {
  constexpr long kChunk = 4096;
  std::vector<int> visits(rows * cols, 0);
  long terms = 0, most = 0;
  for (long r = 0; r < rows; ++r) {
    for (long begin = 0; begin < cols; begin += kChunk) {
      const long end = std::min(cols, begin + kChunk);
      Recorder rec{rows, cols, begin, end, N, &visits, &terms};
      for (long t = 0; t < 256; ++t) {
        long acc = 0;
        terms = 0;
        paf::cuda::add_row_slice<N>(rec, r, begin, end, t, 256, acc);
        most = std::max(most, terms);
      }
    }
  }
  expect(each_visited_once(visits), "block rows: each element once", N, rows, cols, 0);
  expect(most <= 16 + (N > 1 ? 1 : 0), "block rows: terms per thread", N, rows, cols, most);
}

// for_each_element_kernel: a grid-stride loop of `threads` threads.
template <int N>
void check_elements(long rows, long cols, long threads) {
  std::vector<int> visits(rows * cols, 0);
  long terms = 0;
  Recorder rec{rows, cols, 0, cols, N, &visits, &terms};
  for (long t = 0; t < threads; ++t) paf::cuda::for_each_pack<N>(rows, cols, t, threads, rec);
  expect(each_visited_once(visits), "elements: each element once", N, rows, cols, threads);
}

template <int N>
void check_width() {
  const long edge_cols[] = {0, 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 127, 129, 255, 257, 511, 512};
  for (long rows : {0L, 1L, 2L, 3L, 7L}) {
    for (long cols : edge_cols) {
      check_warp_rows<N>(rows, cols);
      for (long threads : {1L, 3L, 32L, 256L, 1000L}) check_elements<N>(rows, cols, threads);
    }
  }
  for (long rows : {1L, 3L}) {
    for (long cols : {513L, 1000L, 4095L, 4096L, 4097L, 4099L, 8192L, 8195L, 12289L}) {
      check_block_rows<N>(rows, cols);
      check_elements<N>(rows, cols, 256);
    }
  }
  std::srand(12345 + N);
  for (int trial = 0; trial < 200; ++trial) {
    const long rows = std::rand() % 6, cols = std::rand() % 513, threads = 1 + std::rand() % 700;
    check_warp_rows<N>(rows, cols);
    check_elements<N>(rows, cols, threads);
  }
}

}  // namespace

int main() {
  check_width<1>();
  check_width<2>();
  check_width<4>();
  check_width<8>();
  if (failures > 0) {
    std::printf("%d failures\n", failures);
    return 1;
  }
  std::printf("packs ok\n");
  return 0;
}
