"""The machine's FMA ceiling for a target, measured by a generated throughput microkernel.

A kernel's ``peak_fraction`` is its non-zero MACs per second over this peak: how much of
what the core can issue the sparse code turns into useful work. The peak is measured,
never assumed from a data sheet: clock, turbo, the VM's share of the core and how the
core executes the widest vectors (AVX-512 at one or two FMAs a cycle) all move it.

The microkernel runs ``chains`` independent FMA chains ``a = a * x + y`` on the target's
widest vectors (enough chains to cover FMA latency times the FMA pipes; each value
converges to ``y / (1 - x)``, so nothing overflows), in every thread at once under
OpenMP, and reports the best rate over several timed repeats (other processes only ever
take time away). It is a standalone program, so the device farm can run it on a phone
exactly as it runs a kernel.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codegen.local_builder import executable_command
from codegen.target import Target
from pattune_common import PattuneError

_SOURCE = r"""
#include <stdio.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif
typedef float vf __attribute__((vector_size(VL * 4)));
static double now(void) {
  struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9;
}
/* Reads and writes through volatile pointers: a function without side effects could be
   moved across the clock reads. */
__attribute__((noinline)) static void chains(long n, const volatile float* xy,
                                             volatile float* res) {
  const vf x = xy[0] - (vf){0}, y = xy[1] - (vf){0};
  vf DECLS;
  for (long i = 0; i < n; ++i) { BODY }
  vf s = SUM;
  float out = 0; for (int l = 0; l < VL; ++l) out += s[l];
  *res = out;
}
/* Every thread runs n iterations at once; returns the wall time of the slowest. */
static double timed(long n, volatile float* sink) {
  const double t0 = now();
  static const volatile float xy[2] = {0.9999f, 1e-4f};
#pragma omp parallel num_threads(NTHREADS)
  chains(n, xy, sink);
  return now() - t0;
}
int main(void) {
  volatile float sink = 0;
  long n = 1000;
  while (timed(n, &sink) < 0.02 && n < (1L << 40)) n *= 2;  /* ~20 ms a repeat */
  double best = 1e30;
  for (int r = 0; r < REPEATS; ++r) { double t = timed(n, &sink); if (t < best) best = t; }
  const double macs = (double)n * CHAINS * VL * NTHREADS;
  printf("{\"macs_per_s\": %.6e, \"chains\": %d, \"vector_floats\": %d, \"threads\": %d, "
         "\"iterations\": %ld, \"best_s\": %.6e, \"sink\": %g}\n",
         macs / best, CHAINS, VL, NTHREADS, n, best, (double)sink);
  return 0;
}
"""


@dataclass(frozen=True)
class FmaPeak:
    """The measured ceiling.

    Attributes:
        macs_per_s: Multiply-adds per second, all threads together.
        vector_floats: Lanes per FMA.
        chains: Independent accumulator chains per thread.
        threads: Threads that ran at once.
    """

    macs_per_s: float
    vector_floats: int
    chains: int
    threads: int

    @property
    def gmacs(self) -> float:
        """The peak in GMAC/s."""
        return self.macs_per_s / 1e9


def peak_source(target: Target, *, threads: int = 1, chains: int | None = None,
                repeats: int = 7) -> str:
    """The microkernel's C source for ``target``: ``chains`` FMA chains on its widest
    vectors (default: every vector register but four, at most 24), ``threads`` threads."""
    n = chains or max(4, min(24, target.vector_registers - 4))
    names = [f"a{i}" for i in range(n)]
    defines = {
        "VL": target.vector_floats, "CHAINS": n, "NTHREADS": threads, "REPEATS": repeats,
        # distinct starting values, so no two chains are the same computation
        "DECLS": ", ".join(f"{a} = (float){i + 1} - (vf){{0}}" for i, a in enumerate(names)),
        "BODY": " ".join(f"{a} = {a} * x + y;" for a in names),
        "SUM": " + ".join(names),
    }
    head = "\n".join(f"#define {k} {v}" for k, v in defines.items())
    return head + "\n" + _SOURCE


def measure_peak(target: Target, *, threads: int = 1, chains: int | None = None,
                 timeout_s: float = 120.0) -> FmaPeak:
    """Build and run the microkernel on this machine (through ``target.run_prefix``).

    Raises:
        PattuneError: The compiler or the program failed; the message says which and why.
    """
    with tempfile.TemporaryDirectory(prefix="pattune-peak-") as tmp:
        src, exe = Path(tmp) / "peak.c", Path(tmp) / "peak"
        src.write_text(peak_source(target, threads=threads, chains=chains))
        cmd = executable_command(target, src, exe,
                                 openmp=threads > 1 and target.supports_openmp)
        try:
            built = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except OSError as exc:
            raise PattuneError(f"FMA peak microkernel: cannot run {target.cc}: "
                               f"{exc.strerror or exc}") from None
        if built.returncode:
            first = (built.stderr.strip().splitlines() or ["no output"])[0]
            raise PattuneError(f"FMA peak microkernel: {target.cc} failed: {first}")
        ran = subprocess.run([*target.run_prefix, str(exe)], capture_output=True, text=True,
                             timeout=timeout_s)
        if ran.returncode:
            raise PattuneError(f"FMA peak microkernel exited {ran.returncode}: "
                               f"{ran.stderr.strip()[:200]}")
        doc = json.loads(ran.stdout.strip().splitlines()[-1])
    return FmaPeak(macs_per_s=float(doc["macs_per_s"]), vector_floats=int(doc["vector_floats"]),
                   chains=int(doc["chains"]), threads=int(doc["threads"]))
