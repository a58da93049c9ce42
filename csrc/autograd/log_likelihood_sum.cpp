// log_likelihood_sum: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/log_likelihood_sum).
#include "likelihood_function.h"

namespace paf::autograd::log_likelihood_sum {
namespace {

struct LogLikelihoodSumOps {
  static constexpr const char* kName = "log_likelihood_sum";
  static constexpr bool kBroadcasts = false;  // the backward op writes x's and x_hat's shapes
  static const auto& forward() { return PAF_OP(log_likelihood_sum, LikelihoodForward); }
  static const auto& backward() { return PAF_OP(log_likelihood_sum_backward, LikelihoodBackward); }
};

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) {
  m.impl("log_likelihood_sum", &likelihood_autograd<LogLikelihoodSumOps>);
}

}  // namespace paf::autograd::log_likelihood_sum
