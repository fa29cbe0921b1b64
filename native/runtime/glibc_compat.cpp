// Keeps the statically linked libstdc++ and libgcc from raising the glibc floor: each calls one function that
// glibc exports only in versions newer than everything else the addon needs. Defined here, hidden, those
// references bind inside the addon, so the .node asks neither of the system (scripts/glibc-floor.js checks it).
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

// Every std exception class pulls in libstdc++.a's random.o (through its copy-on-write string instantiations), and
// GCC 12's random.o calls arc4random (glibc 2.36). The addon itself never reads std::random_device.

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) noexcept {
  uint32_t value;
  size_t got = 0;
  while (got < sizeof value) {
    // getrandom(2) (Linux 3.17) through syscall(), which every glibc has, rather than glibc's 2.25 wrapper.
    long n = syscall(SYS_getrandom, reinterpret_cast<char*>(&value) + got, sizeof value - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
    else if (errno != EINTR) __builtin_trap();  // as glibc's own arc4random: it never returns a value it did not draw
  }
  return value;
}

#ifdef DLFO_EH_SEGMENT_TYPE
// libgcc's unwinder, built against glibc 2.35+, finds a PC's unwind tables with _dl_find_object (glibc 2.35)
// instead of walking dl_iterate_phdr; it has no fallback, so this answers the same question by that walk: the
// object whose loaded segments hold the address, and its PT_GNU_EH_FRAME segment. Only exceptions thrown inside
// the addon unwind through it.
extern "C" __attribute__((visibility("hidden"))) int _dl_find_object(void* address, struct dl_find_object* result) noexcept {
  struct Search {
    uintptr_t pc;
    dl_find_object* out;
    bool found;
  } search{reinterpret_cast<uintptr_t>(address), result, false};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) -> int {
        auto* s = static_cast<Search*>(data);
        uintptr_t lo = UINTPTR_MAX, hi = 0;
        void* eh = nullptr;
        bool inside = false;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
          if (ph.p_type == PT_LOAD) {
            if (start < lo) lo = start;
            if (start + ph.p_memsz > hi) hi = start + ph.p_memsz;
            if (s->pc >= start && s->pc < start + ph.p_memsz) inside = true;
          } else if (ph.p_type == DLFO_EH_SEGMENT_TYPE) {
            eh = reinterpret_cast<void*>(start);
          }
        }
        if (!inside) return 0;
        *s->out = dl_find_object{};
        s->out->dlfo_map_start = reinterpret_cast<void*>(lo);
        s->out->dlfo_map_end = reinterpret_cast<void*>(hi);
        s->out->dlfo_eh_frame = eh;
        s->found = true;
        return 1;
      },
      &search);
  return search.found ? 0 : -1;
}
#endif
