// Worker threads for CPU kernels made of long independent units (an image's channel group for all
// walk passes, a block of pixels for all centroid iterations).
//
// Why whole units: GNU OpenMP threads spin while they wait, and a barrier per walk step waits for
// the slowest thread every step. On a busy machine (data-loader processes, a second job) a thread
// that loses its core stalls the others at every barrier, and the spinning waiters take cores from
// everyone: measured 18 ms -> 1.7 s for the walk with two busy processes on 2 cores. Here each
// thread takes whole units from a shared counter and runs them to the end: one parallel region,
// no barrier but its end.
//
// Why still OpenMP: torch's own ops (the copies and fills around a kernel) run on the same OpenMP
// pool, whose workers then spin for milliseconds waiting for more work. Threads of our own would
// compete with those spinning workers for the cores (measured: 5x the CPU time of one thread);
// a region on the same pool puts the spinning workers to work instead.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#ifdef _OPENMP
#include <omp.h>
#else
#include <thread>
#include <vector>
#endif

namespace irnet_fast {

// Threads worth starting for `units` independent units of `work` elementary operations in all:
// at most torch's intra-op thread count and the number of units, and none beyond the first
// unless each thread gets at least `min_work_per_thread` (~2 ms on one core: waking a thread costs
// microseconds on a quiet machine, but a scheduling round, milliseconds, on a busy one).
inline int threads_for(int64_t units, double work, double min_work_per_thread = 1e7) {
  int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  threads = std::min<int64_t>(threads, std::max<int64_t>(1, units));
  threads = std::min<int64_t>(threads, std::max<int64_t>(1, (int64_t)(work / min_work_per_thread)));
  return (int)threads;
}

// Calls fn(unit) for every unit in [0, units), on `threads` threads (the caller is one of them).
// Inside a parallel region already (a caller's at::parallel_for) it runs on the calling thread.
// Units are handed out in order, one at a time, so the threads stay balanced even when units
// differ in cost or a thread runs slower for a while. fn must not throw.
template <typename F>
void run_units(int64_t units, int threads, const F& fn) {
  if (units <= 0) return;
#ifdef _OPENMP
  if (omp_in_parallel()) threads = 1;
#endif
  if (threads <= 1 || units == 1) {
    for (int64_t u = 0; u < units; ++u) fn(u);
    return;
  }
  std::atomic<int64_t> next{0};
  auto worker = [&]() {
    for (int64_t u = next.fetch_add(1, std::memory_order_relaxed); u < units;
         u = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(u);
    }
  };
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
  worker();
#else
  std::vector<std::thread> team;
  team.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) team.emplace_back(worker);
  worker();
  for (auto& thread : team) thread.join();
#endif
}

// at::parallel_for's shape on run_units: fn(begin, end) over chunks of [0, n) of at least
// `grain` items, about four chunks per thread so that a thread slowed by another process leaves
// its share to the others. `work`: elementary operations in all (sets the thread count).
template <typename F>
void parallel_chunks(int64_t n, int64_t grain, double work, const F& fn) {
  if (n <= 0) return;
  const int threads = threads_for((n + grain - 1) / std::max<int64_t>(grain, 1), work);
  const int64_t chunk = std::max<int64_t>(std::max<int64_t>(grain, 1), (n + 4 * threads - 1) / (4 * threads));
  const int64_t chunks = (n + chunk - 1) / chunk;
  run_units(chunks, threads, [&](int64_t c) { fn(c * chunk, std::min(n, (c + 1) * chunk)); });
}

// parallel_chunks for work whose cost the caller cannot estimate (centroids stop early on clean
// fields): the calling thread runs the first chunk alone and timed, and wakes the other threads
// only if the rest would take longer than `serial_budget_s` on its own.
template <typename F>
void parallel_chunks_probed(int64_t n, int64_t grain, double max_work, double serial_budget_s, const F& fn) {
  if (n <= 0) return;
  const int threads = threads_for((n + grain - 1) / std::max<int64_t>(grain, 1), max_work);
  const int64_t chunk = std::max<int64_t>(std::max<int64_t>(grain, 1), (n + 8 * threads - 1) / (8 * threads));
  const auto start = std::chrono::steady_clock::now();
  fn(0, std::min(n, chunk));
  if (chunk >= n) return;
  const double first_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t rest = n - chunk, chunks = (rest + chunk - 1) / chunk;
  const bool parallel = threads > 1 && first_s * (double)rest / (double)chunk > serial_budget_s;
  run_units(chunks, parallel ? threads : 1,
            [&](int64_t c) { fn(chunk + c * chunk, std::min(n, chunk + (c + 1) * chunk)); });
}

}  // namespace irnet_fast
