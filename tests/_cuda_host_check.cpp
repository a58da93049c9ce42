// The CUDA kernels' functors (csrc/cuda/<op>.cuh) run on the CPU, for
// tests/test_cuda_host.py: no GPU runs the suite on most machines, so this
// is where the per-element work of the CUDA kernels (vector packs, tails,
// broadcast rows, gradients, the Philox stream) meets an oracle. The
// launches are played thread by thread with the shapes of cuda_utils.cuh
// (a warp or 4096-column chunks per row, a grid-stride loop); what is not
// played is the CUDA-only mechanics: warp shuffles, shared memory and the
// launches themselves. check_packs tests the split into packs on its own. Each function also returns the pack width (or
// whether the packed sampler) it used, so the tests can see both paths run.
#include "cuda/count_log_likelihood.cuh"
#include "cuda/elbo.cuh"
#include "cuda/iwae_bound.cuh"
#include "cuda/kl_diag_gaussian.cuh"
#include "cuda/log_likelihood_sum.cuh"
#include "cuda/nb_mixture_log_likelihood.cuh"
#include "cuda/reparameterize.cuh"

#include <torch/extension.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace paf::cuda {
namespace {

// launch_row_sums on the host: every thread's partial in acc_t, a row's
// partials added in order in double. Returns the pack width used (times
// the packs loaded ahead). `variant`: as launch_row_sums<scalar_t, true>
// takes it from PAF_CUDA_ROW_SUM, for the long rows of a LoadsAhead term.
template <typename scalar_t, typename Term>
int64_t host_row_sums(int64_t rows, int64_t cols, const Term& term, double* out,
                      RowSumVariant variant = RowSumVariant::kPacks) {
  int64_t width = 1;
  const auto run = [&](auto pack, auto ahead) {
    constexpr int N = decltype(pack)::value, kAhead = decltype(ahead)::value;
    width = N * kAhead;
    const bool warps = summed_by_warps(cols);
    const int64_t span = warps ? std::max<int64_t>(cols, 1) : kChunkCols, threads = warps ? kWarp : kThreads;
    for (int64_t r = 0; r < rows; ++r) {
      double total = 0;
      for (int64_t begin = 0; begin < cols; begin += span) {
        const int64_t end = std::min(cols, begin + span);
        for (int64_t t = 0; t < threads; ++t) {
          opmath_t<scalar_t> partial(0);
          add_row_slice<N, opmath_t<scalar_t>, Term, kAhead>(term, r, begin, end, t, threads, partial);
          total += static_cast<double>(partial);
        }
      }
      out[r] = total;
    }
  };
  if (summed_by_warps(cols)) {  // (launch_row_sums: the variants are the long rows')
    with_pack_width<scalar_t>(term.template aligned<kVecWidth<scalar_t>>(),
                              [&](auto pack) { run(pack, std::integral_constant<int, 1>{}); });
  } else {
    with_row_sum_variant<scalar_t>(term, variant, run);
  }
  return width;
}

// launch_for_each_element on the host, with a grid of `threads` threads.
template <typename scalar_t, typename Fn>
int64_t host_for_each_element(int64_t rows, int64_t cols, const Fn& fn, int64_t threads = 999) {
  int64_t width = 1;
  with_pack_width<scalar_t>(fn.template aligned<kVecWidth<scalar_t>>(), [&](auto pack) {
    constexpr int N = decltype(pack)::value;
    width = N;
    for (int64_t t = 0; t < threads; ++t) for_each_pack<N>(rows, cols, t, threads, fn);
  });
  return width;
}

template <typename Fn>
void host_for_each_index(int64_t n, const Fn& fn) {
  for (int64_t i = 0; i < n; ++i) fn(i);
}

at::Tensor row_totals(int64_t rows, const at::Tensor& like) {
  return at::empty({rows}, like.options().dtype(at::kDouble));
}

// ------------------------------------------------- the split into packs
// Every thread of each launch shape, played with a recorder: each element
// visited exactly once, each pack on an N-element boundary of its row and
// inside it, and how many terms one thread adds.

// What went wrong, a line each (the first 20).
std::vector<std::string> pack_failures;

void expect(bool ok, const char* what, int n, long rows, long cols, long extra) {
  if (!ok && pack_failures.size() < 20) {
    pack_failures.push_back(std::string(what) + ": N=" + std::to_string(n) + " rows=" + std::to_string(rows) +
                            " cols=" + std::to_string(cols) + " (" + std::to_string(extra) + ")");
  }
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
      add_row_slice<N>(rec, r, 0, cols, lane, 32, acc);
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
        add_row_slice<N>(rec, r, begin, end, t, 256, acc);
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
  for (long t = 0; t < threads; ++t) for_each_pack<N>(rows, cols, t, threads, rec);
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


// The failures of the whole check (empty: it passed).
std::vector<std::string> check_packs() {
  pack_failures.clear();
  check_width<1>();
  check_width<2>();
  check_width<4>();
  check_width<8>();
  return pack_failures;
}

// ---------------------------------------------------- log_likelihood_sum
std::tuple<at::Tensor, int64_t> log_likelihood_sum(const at::Tensor& x, const at::Tensor& x_hat,
                                                   const std::string& likelihood,
                                                   const std::optional<at::Tensor>& x_log_var) {
  const SumProblem s = make_sum_problem(x, x_hat, x_log_var, likelihood);
  at::Tensor out = row_totals(s.batch * s.samples, x);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum", [&] {
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      const LogLikelihoodTerm<scalar_t, decltype(tag)::value> term{likelihood_rows<scalar_t, decltype(tag)::value>(s)};
      width = host_row_sums<scalar_t>(s.batch * s.samples, s.features, term, out.data_ptr<double>());
    });
  });
  return {out.view({s.batch, s.samples}), width};
}

std::tuple<at::Tensor, int64_t> log_likelihood_sum_backward(const at::Tensor& grad, const at::Tensor& x,
                                                            const at::Tensor& x_hat, const std::string& likelihood,
                                                            const std::string& wrt_name,
                                                            const std::optional<at::Tensor>& x_log_var) {
  const SumProblem s = make_sum_problem(x, x_hat, x_log_var, likelihood);
  const LikelihoodInput wrt = parse_wrt(wrt_name, s.likelihood);
  auto [g, out] = sum_backward_buffers(s, grad, x, x_hat, wrt);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_backward", [&] {
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      constexpr Likelihood L = decltype(tag)::value;
      using T = opmath_t<scalar_t>;
      const auto in = likelihood_rows<scalar_t, L>(s);
      const scalar_t* grad_data = g.const_data_ptr<scalar_t>();
      const int64_t per_sample_rows = s.batch * s.samples;
      if (wrt == LikelihoodInput::X) {
        width = host_for_each_element<scalar_t>(
            s.batch, s.features,
            GradX<scalar_t, L>{in, grad_data, dense_rows(out.data_ptr<scalar_t>(), s.batch, s.features)});
      } else if (wrt == LikelihoodInput::XLogVar) {
        width = host_for_each_element<scalar_t>(
            per_sample_rows, s.features,
            GradPerSample<scalar_t, L, T>{in, grad_data, dense_rows(out.data_ptr<T>(), per_sample_rows, s.features),
                                          wrt});
      } else {
        width = host_for_each_element<scalar_t>(
            per_sample_rows, s.features,
            GradPerSample<scalar_t, L, scalar_t>{
                in, grad_data, dense_rows(out.data_ptr<scalar_t>(), per_sample_rows, s.features), wrt});
      }
    });
  });
  return {out, width};
}

// ------------------------------------------------------------ iwae_bound
// The forward as iwae_bound.cu launches it: (bound, weights, d_x_hat,
// d_x_log_var, the two pack widths).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t, int64_t> iwae_bound(
    const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& log_var,
    const std::string& likelihood, bool need_grad, const std::optional<at::Tensor>& x_log_var) {
  const IwaeProblem p = make_iwae_problem(x, x_hat, z, mu, log_var, x_log_var, likelihood, need_grad);
  const SumProblem& s = p.ll;
  const int64_t B = s.batch, S = s.samples, F = s.features;
  at::Tensor sums = at::zeros({3 * B * S}, x.options().dtype(at::kDouble));
  double* ll_rows = sums.data_ptr<double>();
  int64_t ll_width = 0, latent_width = 0;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "iwae_bound", [&] {
    using T = opmath_t<scalar_t>;
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      const auto term = iwae_log_likelihood_term<scalar_t, decltype(tag)::value>(p);
      ll_width = host_row_sums<scalar_t>(B * S, F, term, ll_rows);
    });
    latent_width = host_row_sums<scalar_t>(B * S, p.latent, iwae_latent_term<scalar_t>(p), ll_rows + B * S);
    const IwaeCombine<scalar_t> combine{ll_rows, B, S, p.bound.data_ptr<scalar_t>(), p.weights.data_ptr<T>(),
                                        ll_rows + 2 * B * S};
    for (int64_t b = 0; b < B; ++b) combine(b);
  });
  return {p.bound, p.weights, p.d_x_hat, p.d_x_log_var, ll_width, latent_width};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, int64_t> iwae_bound_backward_latent(const at::Tensor& grad,
                                                                                   const at::Tensor& weights,
                                                                                   const at::Tensor& z,
                                                                                   const at::Tensor& mu,
                                                                                   const at::Tensor& log_var) {
  const IwaeLatentGradProblem p = make_iwae_latent_grad_problem(grad, weights, z, mu, log_var);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "iwae_bound_backward_latent", [&] {
    width = host_for_each_element<scalar_t>(p.batch, p.latent, iwae_latent_grad<scalar_t>(p));
  });
  return {p.d_z, p.d_mu, p.d_log_var, width};
}

// ------------------------------------------------------ kl_diag_gaussian
std::tuple<at::Tensor, int64_t> kl_diag_gaussian(const at::Tensor& mu_q, const at::Tensor& log_var_q,
                                                 const std::optional<at::Tensor>& mu_p,
                                                 const std::optional<at::Tensor>& log_var_p, bool reduce_sum,
                                                 std::optional<double> clamp_min, std::optional<double> clamp_max) {
  const KlProblem p = make_kl_problem(mu_q, log_var_q, mu_p, log_var_p, clamp_min, clamp_max);
  at::Tensor out = reduce_sum ? row_totals(p.rows, mu_q) : at::empty(p.out_shape(false), mu_q.options());
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(mu_q.scalar_type(), "kl_diag_gaussian", [&] {
    with_kl_inputs<scalar_t>(p, [&](auto in) {
      constexpr bool kStandard = IsStandard<decltype(in)>::value;
      width = reduce_sum ? host_row_sums<scalar_t>(p.rows, p.cols, KlTerm<scalar_t, kStandard>{in},
                                                   out.data_ptr<double>())
                         : host_for_each_element<scalar_t>(
                               p.rows, p.cols,
                               KlElementwise<scalar_t, kStandard>{in, dense_rows(out.data_ptr<scalar_t>(), p.rows,
                                                                                 p.cols)});
    });
  });
  return {reduce_sum ? out.view(p.out_shape(true)) : out, width};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t> kl_diag_gaussian_backward(
    const at::Tensor& grad, const at::Tensor& mu_q, const at::Tensor& log_var_q,
    const std::optional<at::Tensor>& mu_p, const std::optional<at::Tensor>& log_var_p, bool reduce_sum,
    std::optional<double> clamp_min, std::optional<double> clamp_max, bool clamp_grad_at_bounds) {
  const KlProblem p = make_kl_problem(mu_q, log_var_q, mu_p, log_var_p, clamp_min, clamp_max);
  const KlGrads grads = make_kl_grads(p, mu_q, grad, reduce_sum);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(mu_q.scalar_type(), "kl_diag_gaussian_backward", [&] {
    with_kl_inputs<scalar_t>(p, [&](auto in) {
      width = host_for_each_element<scalar_t>(p.rows, p.cols,
                                              make_kl_grad(in, p, grads, reduce_sum, clamp_grad_at_bounds));
    });
  });
  auto [g_mu_q, g_lv_q, g_mu_p, g_lv_p] = grads.outputs();
  return {g_mu_q, g_lv_q, g_mu_p, g_lv_p, width};
}

// ------------------------------------------------------------------ elbo
// The forward's row sums and the gradients they write: (ll rows [B*S], KL
// rows [B], d objective / d (x_hat, mu, log_var), the two pack widths).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t, int64_t> elbo_rows(
    const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu, const at::Tensor& log_var, double beta,
    const std::string& likelihood, bool need_grad, const std::optional<at::Tensor>& x_log_var,
    const std::string& row_sum_variant) {
  const ElboProblem p = make_elbo_problem(x, x_hat, mu, log_var, x_log_var, likelihood, need_grad);
  at::Tensor ll_rows = row_totals(p.B * p.S, x), kl_rows = row_totals(p.B, x);
  int64_t ll_width = 0, kl_width = 0;
  const RowSumVariant variant = row_sum_variant == "ahead" ? RowSumVariant::kAhead : RowSumVariant::kPacks;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "elbo_rows", [&] {
    dispatch_likelihood(p.likelihood, [&](auto tag) {
      const auto term = elbo_log_likelihood_term<scalar_t, decltype(tag)::value>(p);
      ll_width = host_row_sums<scalar_t>(p.B * p.S, p.F, term, ll_rows.data_ptr<double>(), variant);
    });
    kl_width = host_row_sums<scalar_t>(p.B, p.D, elbo_kl_term<scalar_t>(p, beta), kl_rows.data_ptr<double>());
  });
  return {ll_rows, kl_rows, p.dobj_dx_hat, p.dobj_dmu, p.dobj_dlv, p.dobj_dx_log_var, ll_width, kl_width};
}

// The backward's rescale of d objective / d x_hat, into a new tensor or (in_place)
// into the buffer itself, as elbo_backward_x_hat and elbo_scale_x_hat_grad_ launch it.
std::tuple<at::Tensor, int64_t> elbo_backward_x_hat(const at::Tensor& grad_stats, const at::Tensor& buffer,
                                                    bool in_place) {
  const at::Tensor g = grad_stats.reshape({kNumStats});
  const at::Tensor in = buffer.contiguous();
  at::Tensor out = in_place ? in : at::empty_like(in);
  const int64_t n = in.numel();
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(in.scalar_type(), "elbo_backward_x_hat", [&] {
    width = host_for_each_element<scalar_t>(
        1, n,
        ScaleBy<scalar_t>{RowMatrix<const scalar_t>{in.const_data_ptr<scalar_t>(), 1, n, n},
                          grad_stats_coefficient<scalar_t>(g, kXHatGradWeights, 1.0),
                          dense_rows(out.data_ptr<scalar_t>(), 1, n), in_place});
  });
  return {out, width};
}

// The backward's latent gradients, coefficient * d KL / d (mu, log_var).
std::tuple<at::Tensor, at::Tensor, int64_t> elbo_backward_latent(const at::Tensor& grad_stats, const at::Tensor& mu,
                                                                 const at::Tensor& log_var, double beta) {
  check_latent_pair(mu, log_var);
  const int64_t B = mu.size(0), D = mu.size(1);
  const at::Tensor g = grad_stats.reshape({kNumStats});
  auto [g_mu, g_lv] = latent_pair_grads(mu);
  const at::Tensor mu2 = as_rows(mu, B, D), lv2 = as_rows(log_var, B, D);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "elbo_backward_latent", [&] {
    width = host_for_each_element<scalar_t>(
        B, D,
        LatentGrad<scalar_t>{const_row_matrix<scalar_t>(mu2), const_row_matrix<scalar_t>(lv2),
                             grad_stats_coefficient<scalar_t>(g, latent_grad_weights(beta), static_cast<double>(B)),
                             dense_rows(g_mu.data_ptr<scalar_t>(), B, D),
                             dense_rows(g_lv.data_ptr<scalar_t>(), B, D)});
  });
  return {g_mu, g_lv, width};
}

// -------------------------------------------------------- reparameterize
std::tuple<at::Tensor, at::Tensor, bool> reparameterize(const at::Tensor& mu, const at::Tensor& log_var,
                                                        int64_t num_samples, const at::Tensor& seed,
                                                        bool keep_noise) {
  const SampleProblem p = make_sample_problem(mu, log_var, num_samples, keep_noise);
  check_seed(seed);
  bool packed = false;
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "reparameterize", [&] {
    const auto args = sample_args<scalar_t>(p, seed.const_data_ptr<int64_t>(), keep_noise);
    packed = args.packable();
    const int64_t blocks = ceil_div(p.z.numel(), 4);
    if (packed) {
      host_for_each_index(blocks, Sample<scalar_t, true>{args});
    } else {
      host_for_each_index(blocks, Sample<scalar_t, false>{args});
    }
  });
  return {p.z, p.noise, packed};
}

std::tuple<at::Tensor, at::Tensor, bool> reparameterize_backward(const at::Tensor& grad_z, const at::Tensor& mu,
                                                                 const at::Tensor& log_var, const at::Tensor& seed,
                                                                 const std::optional<at::Tensor>& noise) {
  const SampleGradProblem p = make_sample_grad_problem(grad_z, mu, log_var, seed, noise);
  bool packed = false;
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "reparameterize_backward", [&] {
    const auto args = sample_grad_args<scalar_t>(p, seed.const_data_ptr<int64_t>());
    packed = args.packable();
    if (packed) {
      host_for_each_index(p.g_mu.numel() / 4, SampleGrad<scalar_t, 4>{args});
    } else {
      host_for_each_index(p.g_mu.numel(), SampleGrad<scalar_t, 1>{args});
    }
  });
  return {p.g_mu, p.g_lv, packed};
}

// -------------------------------------------------- count_log_likelihood
// The op's outputs (the sum per row in double when summed) and the pack width.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t> count_log_likelihood(
    const at::Tensor& x, const at::Tensor& mu, const std::optional<at::Tensor>& theta,
    const std::optional<at::Tensor>& zi_logits, const std::string& likelihood, double eps, bool reduce_sum,
    bool need_grad, bool need_grad_x) {
  const CountProblem p =
      make_count_problem(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, need_grad, need_grad_x);
  at::Tensor totals = row_totals(p.rows, mu);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "count_log_likelihood", [&] {
    dispatch_count_likelihood(p.likelihood, [&](auto tag) {
      dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
        const auto term = make_count_term<scalar_t, decltype(tag)::value, decltype(grad)::value,
                                          decltype(grad_x)::value>(p, reduce_sum);
        width = reduce_sum ? host_row_sums<scalar_t>(p.rows, p.cols, term, totals.data_ptr<double>())
                           : host_for_each_element<scalar_t>(p.rows, p.cols, term);
      });
    });
  });
  auto [out, d_x, d_mu, d_theta, d_zi] = p.outputs();
  return {reduce_sum ? totals.view(out.sizes()) : out, d_x, d_mu, d_theta, d_zi, width};
}

// --------------------------------------------- nb_mixture_log_likelihood
// The op's outputs (the sum per row in double when summed) and the pack width.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t>
nb_mixture_log_likelihood(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                          const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                          const at::Tensor& pi_logits, double eps, bool reduce_sum, bool need_grad,
                          bool need_grad_x) {
  const NbMixtureProblem p =
      make_nb_mixture_problem(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad, need_grad_x);
  at::Tensor totals = row_totals(p.rows, mu_1);
  int64_t width = 0;
  PAF_DISPATCH_FLOATING(mu_1.scalar_type(), "nb_mixture_log_likelihood", [&] {
    dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
      const auto term = make_nb_mixture_term<scalar_t, decltype(grad)::value, decltype(grad_x)::value>(p, reduce_sum);
      width = reduce_sum ? host_row_sums<scalar_t>(p.rows, p.cols, term, totals.data_ptr<double>())
                         : host_for_each_element<scalar_t>(p.rows, p.cols, term);
    });
  });
  auto [out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi] = p.outputs();
  return {reduce_sum ? totals.view(out.sizes()) : out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi, width};
}

}  // namespace
}  // namespace paf::cuda

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  using namespace paf::cuda;
  m.def("check_packs", &check_packs);
  m.def("log_likelihood_sum", &log_likelihood_sum);
  m.def("log_likelihood_sum_backward", &log_likelihood_sum_backward);
  m.def("kl_diag_gaussian", &kl_diag_gaussian);
  m.def("kl_diag_gaussian_backward", &kl_diag_gaussian_backward);
  m.def("count_log_likelihood", &count_log_likelihood);
  m.def("nb_mixture_log_likelihood", &nb_mixture_log_likelihood);
  m.def("elbo_rows", &elbo_rows);
  m.def("iwae_bound", &iwae_bound);
  m.def("iwae_bound_backward_latent", &iwae_bound_backward_latent);
  m.def("elbo_backward_x_hat", &elbo_backward_x_hat);
  m.def("elbo_backward_latent", &elbo_backward_latent);
  m.def("reparameterize", &reparameterize);
  m.def("reparameterize_backward", &reparameterize_backward);
}
