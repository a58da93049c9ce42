// The likelihoods by name: the enum every kernel switches on, its parser
// (the message of a bad name) and the dispatch to a compile-time constant.
#pragma once

#include <c10/util/string_view.h>

#include "checks.h"

#include <string>
#include <type_traits>

namespace paf {

// BernoulliProbs: x_hat are probabilities, as torch.nn.functional.
// binary_cross_entropy takes them (nidl's BetaVAELoss).
enum class Likelihood { Gaussian, Bernoulli, Laplace, BernoulliProbs };

inline Likelihood parse_likelihood(c10::string_view name) {
  if (name == "gaussian") return Likelihood::Gaussian;
  if (name == "bernoulli") return Likelihood::Bernoulli;
  if (name == "laplace") return Likelihood::Laplace;
  if (name == "bernoulli_probs") return Likelihood::BernoulliProbs;
  PAF_CHECK_VALUE(false, "likelihood: expected 'gaussian', 'bernoulli', "
                           "'laplace' or 'bernoulli_probs', got '", std::string(name), "'");
}

// Calls fn(tag) where decltype(tag)::value is the likelihood as a
// compile-time constant, so each likelihood gets its own inner loop.
template <Likelihood L>
using LikelihoodTag = std::integral_constant<Likelihood, L>;

template <typename Fn>
decltype(auto) dispatch_likelihood(Likelihood l, Fn&& fn) {
  switch (l) {
    case Likelihood::Gaussian:
      return fn(LikelihoodTag<Likelihood::Gaussian>{});
    case Likelihood::Bernoulli:
      return fn(LikelihoodTag<Likelihood::Bernoulli>{});
    case Likelihood::Laplace:
      return fn(LikelihoodTag<Likelihood::Laplace>{});
    case Likelihood::BernoulliProbs:
      break;
  }
  return fn(LikelihoodTag<Likelihood::BernoulliProbs>{});
}

}  // namespace paf
