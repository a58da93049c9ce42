// count_log_likelihood: the log-pmf of counts (nb, zinb, poisson) per
// element or summed over the genes (the last dimension), and, in the same
// pass, its partial derivatives per element. All arguments are read as
// [rows, G] row views, so a per-gene theta is read in place for every row.
#include "../common/elementwise_math.h"
#include "../common/kernel_utils.h"
#include "../common/op_args.h"

#include <torch/library.h>

namespace paf {
namespace {

// The rows' outputs, in the types the problem allocated them.
template <typename scalar_t>
struct CountOutputs {
  using opmath_t = at::opmath_type<scalar_t>;
  scalar_t* out;  // [rows, G] or [rows] (summed)
  opmath_t *d_x, *d_mu, *d_theta, *d_zi_logits;  // [rows, G] or null
};

template <CountLikelihood L, bool kGrad, bool kGradX, bool kSum, typename scalar_t>
void count_rows(const CountProblem& p, const CountOutputs<scalar_t>& o) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  using Vec = typename IO::Vec;
  using Term = CountLogLikelihood<L>;
  constexpr int64_t W = IO::kWidth;
  const auto xm = const_row_matrix<scalar_t>(p.x), mm = const_row_matrix<scalar_t>(p.mu);
  const auto tm = has_theta(L) ? const_row_matrix<scalar_t>(p.theta) : mm;  // (mm: never read)
  const auto zm = has_zi_logits(L) ? const_row_matrix<scalar_t>(p.zi_logits) : mm;
  const int64_t G = p.cols;
  const opmath_t eps = static_cast<opmath_t>(p.eps);
  at::parallel_for(0, p.rows, row_grain(G), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const scalar_t *xr = xm.row(r), *mr = mm.row(r), *tr = tm.row(r), *zr = zm.row(r);
      const int64_t base = r * G;
      // One element (scalar) or W of them (Vec) at column j: the value,
      // with the derivatives stored as it goes.
      auto element = [&](auto tag, int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
        using T = decltype(tag);
        constexpr bool kVec = !std::is_same_v<T, opmath_t>;
        auto load = [&](const scalar_t* row) {
          if constexpr (kVec) {
            return IO::load(row + j);
          } else {
            return static_cast<opmath_t>(row[j]);
          }
        };
        auto store_grad = [&](opmath_t* d, const T& v) {
          if constexpr (kVec) {
            v.store(d + base + j);
          } else {
            d[base + j] = v;
          }
        };
        const T theta = has_theta(L) ? load(tr) : T(1);
        const T zi = has_zi_logits(L) ? load(zr) : T(0);
        const CountTerms<T> t = Term::template terms<kGrad, kGradX>(load(xr), load(mr), theta, zi, T(eps));
        const T& v = t.value;
        if constexpr (kGradX) store_grad(o.d_x, t.grad.x);
        if constexpr (kGrad) {
          store_grad(o.d_mu, t.grad.mu);
          if constexpr (has_theta(L)) store_grad(o.d_theta, t.grad.theta);
          if constexpr (has_zi_logits(L)) store_grad(o.d_zi_logits, t.grad.zi_logits);
        }
        if constexpr (!kSum) {
          if constexpr (kVec) {
            IO::store(o.out + base + j, v);
          } else {
            o.out[base + j] = static_cast<scalar_t>(v);
          }
        }
        return v;
      };
      auto vec_element = [&](int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE { return element(Vec(0), j); };
      auto scalar_element = [&](int64_t j) { return element(opmath_t(0), j); };
      if constexpr (kSum) {
        o.out[r] = static_cast<scalar_t>(row_sum<IO>(G, vec_element, scalar_element));
      } else {
        for_each_column<W>(G, vec_element, scalar_element);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> count_log_likelihood_cpu(
    const at::Tensor& x, const at::Tensor& mu, const std::optional<at::Tensor>& theta,
    const std::optional<at::Tensor>& zi_logits, c10::string_view likelihood, double eps, bool reduce_sum,
    bool need_grad, bool need_grad_x) {
  const CountProblem p =
      make_count_problem(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, need_grad, need_grad_x);
  if (p.rows == 0) return p.outputs();
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "count_log_likelihood_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    auto grad_data = [](const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<opmath_t>() : nullptr; };
    const CountOutputs<scalar_t> o{p.out.data_ptr<scalar_t>(), grad_data(p.d_x), grad_data(p.d_mu),
                                   grad_data(p.d_theta), grad_data(p.d_zi_logits)};
    dispatch_count_likelihood(p.likelihood, [&](auto tag) {
      constexpr CountLikelihood L = decltype(tag)::value;
      dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
        dispatch_bool(reduce_sum, [&](auto sum) {
          count_rows<L, decltype(grad)::value, decltype(grad_x)::value, decltype(sum)::value>(p, o);
        });
      });
    });
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) { m.impl("count_log_likelihood", &count_log_likelihood_cpu); }

}  // namespace paf
