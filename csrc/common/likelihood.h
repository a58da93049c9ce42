// The likelihoods by name: the enum every kernel switches on, its parser
// (the message of a bad name) and the dispatch to a compile-time constant.
#pragma once

#include <c10/util/string_view.h>

#include "checks.h"

#include <string>
#include <type_traits>

namespace paf {

// BernoulliProbs: x_hat are probabilities, as torch.nn.functional.
// binary_cross_entropy takes them (nidl's BetaVAELoss). GaussianLogVar: the
// Gaussian with a learned log-variance x_log_var per element (a third
// operand); it has no name of its own: "gaussian" with x_log_var given.
enum class Likelihood { Gaussian, Bernoulli, Laplace, BernoulliProbs, GaussianLogVar };

// Whether ll reads the third operand, the log-variance x_log_var.
constexpr bool reads_log_var(Likelihood l) { return l == Likelihood::GaussianLogVar; }

inline Likelihood parse_likelihood(c10::string_view name) {
  if (name == "gaussian") return Likelihood::Gaussian;
  if (name == "bernoulli") return Likelihood::Bernoulli;
  if (name == "laplace") return Likelihood::Laplace;
  if (name == "bernoulli_probs") return Likelihood::BernoulliProbs;
  PAF_CHECK_VALUE(false, "likelihood: expected 'gaussian', 'bernoulli', "
                           "'laplace' or 'bernoulli_probs', got '", std::string(name), "'");
}

// The likelihood a kernel runs: `name`, or GaussianLogVar for "gaussian"
// with a log-variance; no other likelihood takes one.
inline Likelihood parse_likelihood(c10::string_view name, bool has_log_var) {
  const Likelihood l = parse_likelihood(name);
  if (!has_log_var) return l;
  PAF_CHECK_VALUE(l == Likelihood::Gaussian, "x_log_var: only likelihood 'gaussian' takes a log-variance, got '",
                  std::string(name), "'");
  return Likelihood::GaussianLogVar;
}

// Which input a likelihood's backward differentiates (the `wrt` argument
// of the backward ops).
enum class LikelihoodInput { X, XHat, XLogVar };

inline LikelihoodInput parse_likelihood_input(c10::string_view wrt) {
  if (wrt == "x") return LikelihoodInput::X;
  if (wrt == "x_hat") return LikelihoodInput::XHat;
  if (wrt == "x_log_var") return LikelihoodInput::XLogVar;
  PAF_CHECK_VALUE(false, "wrt: expected 'x', 'x_hat' or 'x_log_var', got '", std::string(wrt), "'");
}

// The wrt argument of a backward, checked against the likelihood: only
// GaussianLogVar has an x_log_var to differentiate.
inline LikelihoodInput parse_wrt(c10::string_view wrt, Likelihood likelihood) {
  const LikelihoodInput input = parse_likelihood_input(wrt);
  PAF_CHECK_VALUE(input != LikelihoodInput::XLogVar || reads_log_var(likelihood),
                  "wrt: 'x_log_var' needs x_log_var, got None");
  return input;
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
    case Likelihood::GaussianLogVar:
      return fn(LikelihoodTag<Likelihood::GaussianLogVar>{});
    case Likelihood::BernoulliProbs:
      break;
  }
  return fn(LikelihoodTag<Likelihood::BernoulliProbs>{});
}

// The count likelihoods of count_log_likelihood (scvi-tools' names): the
// negative binomial (mean mu, inverse dispersion theta), its zero-inflated
// form (dropout logits zi_logits) and the Poisson (rate mu).
enum class CountLikelihood { NegativeBinomial, ZeroInflatedNegativeBinomial, Poisson };

inline CountLikelihood parse_count_likelihood(c10::string_view name) {
  if (name == "nb") return CountLikelihood::NegativeBinomial;
  if (name == "zinb") return CountLikelihood::ZeroInflatedNegativeBinomial;
  if (name == "poisson") return CountLikelihood::Poisson;
  PAF_CHECK_VALUE(false, "likelihood: expected 'nb', 'zinb' or 'poisson', got '", std::string(name), "'");
}

// Which parameters a count likelihood reads besides x and mu.
constexpr bool has_theta(CountLikelihood l) { return l != CountLikelihood::Poisson; }
constexpr bool has_zi_logits(CountLikelihood l) { return l == CountLikelihood::ZeroInflatedNegativeBinomial; }

template <CountLikelihood L>
using CountLikelihoodTag = std::integral_constant<CountLikelihood, L>;

// Calls fn(kGrad, kGradX) as std::bool_constant pairs for the derivatives a
// count kernel writes: none, the parameters', or x's too (which come with
// the parameters').
template <typename Fn>
void dispatch_count_grads(bool need_grad, bool need_grad_x, Fn&& fn) {
  if (need_grad_x) {
    fn(std::true_type{}, std::true_type{});
  } else if (need_grad) {
    fn(std::true_type{}, std::false_type{});
  } else {
    fn(std::false_type{}, std::false_type{});
  }
}

template <typename Fn>
decltype(auto) dispatch_count_likelihood(CountLikelihood l, Fn&& fn) {
  switch (l) {
    case CountLikelihood::NegativeBinomial:
      return fn(CountLikelihoodTag<CountLikelihood::NegativeBinomial>{});
    case CountLikelihood::ZeroInflatedNegativeBinomial:
      return fn(CountLikelihoodTag<CountLikelihood::ZeroInflatedNegativeBinomial>{});
    case CountLikelihood::Poisson:
      break;
  }
  return fn(CountLikelihoodTag<CountLikelihood::Poisson>{});
}

}  // namespace paf
