// log_likelihood: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/log_likelihood).
#include "likelihood_function.h"

namespace paf::autograd::log_likelihood {
namespace {

struct LogLikelihoodOps {
  static constexpr const char* kName = "log_likelihood";
  static constexpr bool kBroadcasts = true;  // x and x_hat broadcast against each other
  static const auto& forward() { return PAF_OP(log_likelihood, LikelihoodForward); }
  static const auto& backward() { return PAF_OP(log_likelihood_backward, LikelihoodBackward); }
};

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("log_likelihood", &likelihood_autograd<LogLikelihoodOps>); }

}  // namespace paf::autograd::log_likelihood
