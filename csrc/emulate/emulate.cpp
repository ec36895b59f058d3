// The emulator's scheduler (see emulate.h): blocks one after another, the threads of a block as
// fibers that switch at __syncthreads().
#include "emulate.h"

#include <c10/util/Exception.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace irnet_fast {
namespace emu {
namespace {

constexpr size_t kStackBytes = 128 * 1024;

#if defined(__x86_64__)
// A context is a saved stack pointer; the switch pushes the callee-saved registers (System V
// ABI) and returns on the other stack. Much faster than swapcontext, which makes two syscalls.
struct Context {
  void* sp = nullptr;
};
extern "C" void irnet_fast_emu_switch(void** save_sp, void* next_sp);
asm(R"(
.text
.globl irnet_fast_emu_switch
.type irnet_fast_emu_switch,@function
irnet_fast_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size irnet_fast_emu_switch,.-irnet_fast_emu_switch
.section .note.GNU-stack,"",@progbits
.text
)");

void start_context(Context& ctx, char* stack, size_t size, void (*entry)()) {
  auto top = reinterpret_cast<uintptr_t>(stack + size) & ~uintptr_t(15);
  void** sp = reinterpret_cast<void**>(top);
  *--sp = nullptr;                              // as if called: entry sees rsp % 16 == 8
  *--sp = reinterpret_cast<void*>(entry);       // where the first switch returns to
  for (int i = 0; i < 6; ++i) *--sp = nullptr;  // rbp, rbx, r12-r15
  ctx.sp = sp;
}

void switch_context(Context& from, Context& to) { irnet_fast_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};

void start_context(Context& ctx, char* stack, size_t size, void (*entry)()) {
  getcontext(&ctx.uc);
  ctx.uc.uc_stack.ss_sp = stack;
  ctx.uc.uc_stack.ss_size = size;
  ctx.uc.uc_link = nullptr;
  makecontext(&ctx.uc, entry, 0);
}

void switch_context(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

// One fiber stack with a guard page below it: an overflow faults instead of corrupting memory.
struct Stack {
  char* base = nullptr;
  Stack() {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void* p = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    TORCH_CHECK(p != MAP_FAILED, "CUDA emulator: cannot map a fiber stack");
    mprotect(p, page, PROT_NONE);
    base = static_cast<char*>(p) + page;
  }
  Stack(const Stack&) = delete;
  Stack(Stack&& other) noexcept : base(other.base) { other.base = nullptr; }
  ~Stack() {
    if (base) {
      const size_t page = (size_t)sysconf(_SC_PAGESIZE);
      munmap(base - page, kStackBytes + page);
    }
  }
};

struct Fiber {
  Context ctx;
  uint3 index;
  unsigned int barriers;
  bool done;
};

// Per OS thread: the block that thread is running.
struct Scheduler {
  std::vector<Stack> stacks;
  std::vector<Fiber> fibers;
  std::vector<unsigned char> shared;
  Context main;
  const Body* body = nullptr;
  int current = -1;
};

thread_local Scheduler scheduler;

void fiber_entry() {
  Scheduler& s = scheduler;
  (*s.body)();
  s.fibers[s.current].done = true;
  switch_context(s.fibers[s.current].ctx, s.main);
  std::abort();  // a finished fiber is never resumed
}

void run_block(const Body& body, unsigned int linear, dim3 grid, dim3 block, size_t shared_bytes) {
  Scheduler& s = scheduler;
  const unsigned int n = block.x * block.y * block.z;
  while (s.stacks.size() < n) s.stacks.emplace_back();
  s.fibers.resize(n);
  s.shared.assign(shared_bytes, 0xFF);  // NaN in every float: reads before writes show
  blockIdx = uint3{linear % grid.x, (linear / grid.x) % grid.y, linear / (grid.x * grid.y)};
  blockDim = block;
  gridDim = grid;
  for (unsigned int t = 0; t < n; ++t) {
    Fiber& f = s.fibers[t];
    f.index = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
    f.barriers = 0;
    f.done = false;
    start_context(f.ctx, s.stacks[t].base, kStackBytes, &fiber_entry);
  }
  struct Reset {  // also when a check below throws
    Scheduler& s;
    ~Reset() {
      s.body = nullptr;
      s.current = -1;
    }
  } reset{s};
  s.body = &body;
  for (unsigned int interval = 0, live = n; live > 0; ++interval) {
    const bool reverse = ((linear + interval) & 1) != 0;
    for (unsigned int i = 0; i < n; ++i) {
      const unsigned int t = reverse ? n - 1 - i : i;
      if (s.fibers[t].done) continue;
      s.current = (int)t;
      threadIdx = s.fibers[t].index;
      switch_context(s.main, s.fibers[t].ctx);
    }
    unsigned int exited = 0, waiting = 0;
    for (unsigned int t = 0; t < n; ++t) {
      const Fiber& f = s.fibers[t];
      if (f.done) {
        exited += f.barriers == interval;  // finished in this interval
      } else {
        ++waiting;
        TORCH_CHECK(f.barriers == interval + 1, "CUDA emulator: thread ", t, " of block ", linear,
                    " is at another __syncthreads() than the others");
      }
    }
    TORCH_CHECK(waiting == 0 || exited == 0, "CUDA emulator: in block ", linear, ", ", exited,
                " threads exited while ", waiting, " wait at __syncthreads() (undefined behaviour on a GPU)");
    live = waiting;
  }
}

}  // namespace

void run_grid(const Body& body, dim3 grid, dim3 block, size_t shared_bytes) {
  const uint64_t threads = (uint64_t)block.x * block.y * block.z;
  TORCH_CHECK(block.x >= 1 && block.y >= 1 && block.z >= 1 && block.x <= 1024 && block.y <= 1024 && block.z <= 64 &&
                  threads <= kMaxThreadsPerBlock,
              "CUDA emulator: invalid configuration argument: block (", block.x, ", ", block.y, ", ", block.z, ")");
  TORCH_CHECK(grid.x >= 1 && grid.y >= 1 && grid.z >= 1 && grid.x <= 2147483647u && grid.y <= 65535 &&
                  grid.z <= 65535,
              "CUDA emulator: invalid configuration argument: grid (", grid.x, ", ", grid.y, ", ", grid.z, ")");
  TORCH_CHECK(shared_bytes <= kMaxSharedBytes, "CUDA emulator: ", shared_bytes,
              " bytes of dynamic shared memory exceed the limit of ", kMaxSharedBytes);
  TORCH_CHECK(scheduler.body == nullptr, "CUDA emulator: a kernel launched from inside a kernel");
  // Blocks one after another: deterministic, and on a loaded CI machine much faster than a
  // thread pool (measured: 10x slower with 2 OpenMP threads on 2 busy cores).
  const uint64_t blocks = (uint64_t)grid.x * grid.y * grid.z;
  for (uint64_t b = 0; b < blocks; ++b) run_block(body, (unsigned int)b, grid, block, shared_bytes);
}

void syncthreads() {
  Scheduler& s = scheduler;
  TORCH_CHECK(s.current >= 0, "CUDA emulator: __syncthreads() outside a kernel");
  Fiber& f = s.fibers[s.current];
  ++f.barriers;
  switch_context(f.ctx, s.main);
}

unsigned char* dynamic_shared() { return scheduler.shared.data(); }

}  // namespace emu
}  // namespace irnet_fast
