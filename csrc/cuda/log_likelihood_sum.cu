// log_likelihood_sum: per-sample summed log-likelihood (CUDA). x [B, ...]
// against x_hat [B, S, ...] -> [B, S]: the elementwise term and the feature
// sum in one pass (deterministic row sums, cuda_utils.cuh), x read in place
// for every sample.
#include "../common/op_args.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <torch/library.h>

namespace paf::cuda {
namespace {

// The term of column j of row r = (b, s) of x_hat viewed as [B*S, F].
template <typename scalar_t, Likelihood L>
struct LogLikelihoodTerm {
  RowMatrix<const scalar_t> x, x_hat;
  int64_t samples;
  C10_DEVICE opmath_t<scalar_t> operator()(int64_t r, int64_t j) const {
    return LogLikelihood<L>::value(load(x.row(r / samples), j), load(x_hat.row(r), j));
  }
};

// grad[r] * d ll / d x_hat[r, j], shaped like x_hat.
template <typename scalar_t, Likelihood L>
struct GradXHat {
  RowMatrix<const scalar_t> x, x_hat;
  const scalar_t* grad;
  scalar_t* out;
  int64_t samples, features;
  C10_DEVICE void operator()(int64_t i) const {
    const int64_t r = i / features, j = i % features;
    const auto partial = LogLikelihood<L>::grad_x_hat(load(x.row(r / samples), j), load(x_hat.row(r), j));
    out[i] = static_cast<scalar_t>(load(grad, r) * partial);
  }
};

// sum_s grad[b, s] * d ll / d x[b, j], shaped like x.
template <typename scalar_t, Likelihood L>
struct GradX {
  RowMatrix<const scalar_t> x, x_hat;
  const scalar_t* grad;
  scalar_t* out;
  int64_t samples, features;
  C10_DEVICE void operator()(int64_t i) const {
    const int64_t b = i / features, j = i % features;
    const auto xv = load(x.row(b), j);
    opmath_t<scalar_t> total(0);
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t r = b * samples + s;
      total += load(grad, r) * LogLikelihood<L>::grad_x(xv, load(x_hat.row(r), j));
    }
    out[i] = static_cast<scalar_t>(total);
  }
};

at::Tensor log_likelihood_sum_cuda(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name) {
  const c10::cuda::CUDAGuard guard(x.device());
  const SumProblem s = make_sum_problem(x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  at::Tensor out = at::empty({s.batch, s.samples}, x.options());
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      const LogLikelihoodTerm<scalar_t, decltype(tag)::value> term{const_row_matrix<scalar_t>(s.x),
                                                                   const_row_matrix<scalar_t>(s.x_hat), s.samples};
      launch_row_sums<opmath_t<scalar_t>>(s.batch * s.samples, s.features, term,
                                          StoreTotal<scalar_t>{out.data_ptr<scalar_t>()}, x.device());
    });
  });
  return out;
}

at::Tensor log_likelihood_sum_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                            c10::string_view likelihood_name, bool wrt_x) {
  const c10::cuda::CUDAGuard guard(x.device());
  const SumProblem s = make_sum_problem(x, x_hat);
  at::Tensor g, out;
  std::tie(g, out) = sum_backward_buffers(s, grad, x, x_hat, wrt_x);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_backward_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      constexpr Likelihood L = decltype(tag)::value;
      const auto xm = const_row_matrix<scalar_t>(s.x), hm = const_row_matrix<scalar_t>(s.x_hat);
      if (wrt_x) {
        launch_for_each_index(out.numel(), GradX<scalar_t, L>{xm, hm, g.const_data_ptr<scalar_t>(),
                                                             out.data_ptr<scalar_t>(), s.samples, s.features});
      } else {
        launch_for_each_index(out.numel(), GradXHat<scalar_t, L>{xm, hm, g.const_data_ptr<scalar_t>(),
                                                                out.data_ptr<scalar_t>(), s.samples, s.features});
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("log_likelihood_sum", &log_likelihood_sum_cuda);
  m.impl("log_likelihood_sum_backward", &log_likelihood_sum_backward_cuda);
}

}  // namespace paf::cuda
