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
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#ifdef __linux__
#include <dirent.h>
#include <sched.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#else
#include <vector>
#endif

namespace irnet_fast {

#ifdef __linux__
// Threads of this process in state R (running or runnable), from /proc/self/task/*/stat.
inline int own_running_threads() {
  int own = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    char path[320], buf[512];
    while (const dirent* entry = readdir(dir)) {
      if (entry->d_name[0] == '.') continue;
      std::snprintf(path, sizeof(path), "/proc/self/task/%s/stat", entry->d_name);
      if (FILE* f = std::fopen(path, "r")) {
        const size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
        std::fclose(f);
        buf[n] = 0;
        const char* close = std::strrchr(buf, ')');  // the state follows the "(name)" field
        if (close != nullptr && close[1] == ' ' && close[2] == 'R') ++own;
      }
    }
    closedir(dir);
  }
  return own;
}
#endif

// Runnable threads of other processes right now, or 0 where that cannot be read (not Linux).
// Linux: /proc/loadavg's "running/total" field counts every runnable thread of the machine, this
// process's included; those are counted from /proc/self/task/*/stat (state R) and taken off. The
// two reads take ~30 us, so callers ask only before work of milliseconds.
inline int other_runnable_threads() {
#ifdef __linux__
  int running = 0;
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    double l1, l5, l15;
    if (std::fscanf(f, "%lf %lf %lf %d/", &l1, &l5, &l15, &running) != 4) running = 0;
    std::fclose(f);
  }
  if (running <= 1) return 0;  // only the calling thread
  return std::max(0, running - std::max(own_running_threads(), 1));
#else
  return 0;
#endif
}

// Hysteresis on the readings: the machine turns busy once other processes were runnable at every
// reading for kConfirmNs, and quiet again once no other thread was runnable at every reading for
// kConfirmNs. One reading alone also catches blips: on a quiet shared VM, threads outside this
// container ran for 0.5-2 ms at a time, seen by 1.5-6% of the readings right after a parallel op,
// and each such reading put the whole op on one thread (a 256x512 walk: 140 ms against 85, in up
// to a third of the calls). Under a real load, likewise, a reading now and then finds every other
// thread between two bursts of work. While busy, the count planned for is the last busy reading.
// After kStaleNs without a reading the earlier ones are no evidence of the load now: start afresh.
struct LoadStreak {
  static constexpr int64_t kConfirmNs = 5'000'000, kStaleNs = 10'000'000'000;
  bool busy = false;
  int planned = 0;              // while busy: the last busy reading
  int64_t change_since = -1;    // first of the readings that disagree with `busy`, -1 if none
  int64_t last = 0;
  // The other runnable threads to plan for, given a reading `other` taken at `now_ns`.
  int update(int other, int64_t now_ns) {
    if (now_ns - last > kStaleNs) busy = false, change_since = -1;
    last = now_ns;
    if (other > 0 && busy) planned = other;
    if ((other > 0) == busy) {
      change_since = -1;
    } else if (change_since < 0) {
      change_since = now_ns;
    }
    if (change_since >= 0 && now_ns - change_since >= kConfirmNs) {
      busy = other > 0, planned = other, change_since = -1;
    }
    return busy ? planned : 0;
  }
};

// other_runnable_threads through the process's LoadStreak: the threads of a sustained load only.
inline int sustained_other_runnable_threads() {
  static std::mutex mutex;
  static LoadStreak streak;
  const int other = other_runnable_threads();
  const int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now().time_since_epoch()).count();
  std::lock_guard<std::mutex> lock(mutex);
  return streak.update(other, now);
}

// Cores this process may run on (its affinity mask on Linux).
inline int usable_cores() {
#ifdef __linux__
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1, (int)std::thread::hardware_concurrency());
}

// IRNET_FAST_LOAD_AWARE=0 turns the load check of threads_for off (read on every call).
inline bool load_aware() {
  const char* flag = std::getenv("IRNET_FAST_LOAD_AWARE");
  return flag == nullptr || std::strcmp(flag, "0") != 0;
}

// Threads worth starting for `units` independent units of `work` elementary operations in all:
// at most torch's intra-op thread count and the number of units, and none beyond the first
// unless each thread gets at least `min_work_per_thread` (~2 ms on one core: waking a thread costs
// microseconds on a quiet machine, but a scheduling round, milliseconds, on a busy one).
// On a busy machine no more threads than there are idle cores (at least one): a thread that has
// to share a core finishes its unit last, and the region's end waits for it (measured at 94x125
// with two busy torch processes: 2 threads 15x slower than quiet, 1 thread 2.6x).
inline int threads_for(int64_t units, double work, double min_work_per_thread = 1e7) {
  int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  threads = std::min<int64_t>(threads, std::max<int64_t>(1, units));
  threads = std::min<int64_t>(threads, std::max<int64_t>(1, (int64_t)(work / min_work_per_thread)));
  if (threads > 1 && load_aware()) {
    threads = std::min<int64_t>(threads, std::max(1, usable_cores() - sustained_other_runnable_threads()));
  }
  return (int)threads;
}

// Caps the calling thread's OpenMP thread count, which torch's own ops and these kernels read, at
// the cores other processes leave idle now (at least 1); returns the count before, for
// restore_threads. Why: on a busy machine every parallel region of torch's small ops (a copy, a
// fill, x * (1 - edge)) waits a scheduling round, milliseconds, for a worker without a core
// (measured beside a training process on 2 cores: x * (1 - edge) at 94x125 took 5 ms against
// 0.02 ms, the whole walk 72 ms against 9.7 ms on one thread). The count is OpenMP's per-thread
// nthreads-var: other threads of the process keep theirs.
inline int cap_threads_to_idle_cores() {
  const int before = at::get_num_threads();  // initialises torch's count on this thread first
#ifdef _OPENMP
  if (before > 1 && load_aware()) {
    const int idle = std::max(1, usable_cores() - sustained_other_runnable_threads());
    if (idle < before) omp_set_num_threads(idle);
  }
#endif
  return before;
}

inline void restore_threads(int count) {
#ifdef _OPENMP
  if (count > 0 && omp_get_max_threads() != count) omp_set_num_threads(count);
#endif
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
void parallel_chunks(int64_t n, int64_t grain, double work, const F& fn, double min_work_per_thread = 1e7) {
  if (n <= 0) return;
  const int threads = threads_for((n + grain - 1) / std::max<int64_t>(grain, 1), work, min_work_per_thread);
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
