// C++ smoke test of the CPU ops through the dispatcher (CMake build, also under sanitizers).
// Checks identities that hold for any correct kernel: a zero boundary gives affinity 1, the walk
// keeps a constant field constant (T is column-stochastic), the fast and portable walks agree.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdio>
#include <tuple>

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) ++failures;
}

}  // namespace

int main() {
  auto& dispatcher = c10::Dispatcher::singleton();
  auto affinity = dispatcher.findSchemaOrThrow("irnet_fast::path_affinity", "")
                      .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                const at::Tensor&, int64_t)>();
  auto backward = dispatcher.findSchemaOrThrow("irnet_fast::_path_affinity_backward", "")
                      .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                        int64_t, int64_t, int64_t)>();
  auto stencil = dispatcher.findSchemaOrThrow("irnet_fast::transition_stencil", "")
                     .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                               const at::Tensor&, double)>();
  using WalkFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t);
  auto walk = dispatcher.findSchemaOrThrow("irnet_fast::random_walk", "").typed<WalkFn>();
  auto portable = dispatcher.findSchemaOrThrow("irnet_fast::_random_walk_portable", "").typed<WalkFn>();

  // radius 2: directions (0,1), (1,0) (length 2) and (1,-1), (1,1) (length 4), destination first
  const int path_data[4][4][2] = {{{0, 1}, {0, 0}, {0, 0}, {0, 0}},
                                  {{1, 0}, {0, 0}, {0, 0}, {0, 0}},
                                  {{1, -1}, {0, -1}, {1, 0}, {0, 0}},
                                  {{1, 1}, {0, 1}, {1, 0}, {0, 0}}};
  auto paths = at::from_blob((void*)path_data, {4, 4, 2}, at::kInt).clone();
  auto lengths = at::tensor({2, 2, 4, 4}, at::kInt);
  auto dirs = paths.select(1, 0).contiguous();

  auto [aff, arg] = affinity.call(at::zeros({2, 7, 9}), paths, lengths, 1);
  expect(aff.sizes() == at::IntArrayRef({2, 4, 6, 7}) && aff.eq(1).all().item<bool>(), "zero boundary -> affinity 1");
  auto grad = backward.call(at::ones_like(aff), arg, paths, lengths, 1, 7, 9);
  expect(grad.sum().item<double>() == -aff.numel(), "backward routes every gradient to one pixel");

  auto edge = at::rand({3, 11, 13});
  auto [planes, norm] = stencil.call(edge, paths, lengths, 10.0);
  expect(norm.ge(1).all().item<bool>(), "norm includes the self loop");
  auto ones = at::ones({3, 2, 11, 13});
  auto walked = walk.call(ones, planes, norm.reciprocal(), dirs, 64);
  expect(walked.sub(1).abs().max().item<double>() < 1e-4, "walk keeps a constant field constant");
  auto x = at::rand({3, 2, 11, 13});
  auto fast = walk.call(x, planes, norm.reciprocal(), dirs, 33);
  auto slow = portable.call(x, planes, norm.reciprocal(), dirs, 33);
  expect(fast.sub(slow).abs().max().item<double>() < 1e-5, "fast and portable walks agree");

  bool threw = false;
  try {
    affinity.call(at::zeros({2, 7, 9}), paths.to(at::kLong), lengths, 1);
  } catch (const c10::Error&) {
    threw = true;
  }
  expect(threw, "bad geometry dtype raises c10::Error");
  std::printf("%d failed\n", failures);
  return failures == 0 ? 0 : 1;
}
