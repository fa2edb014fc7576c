#ifndef MT_AFFINITY_H
#define MT_AFFINITY_H

#include <sys/types.h>

/// CPU affinity for pairing a compute thread with its environment server (glibc's GNU extensions, which Swift's
/// Glibc module does not show). Each returns 0 on success, -1 with errno set on failure.

/// The CPUs this process may run on, in increasing order: at most `max` written to `cpus`; returns how many (-1 on error).
int mt_allowed_cpus(int *cpus, int max);
/// Pins the calling thread to `cpu`, saving its previous mask in `saved` (`mt_affinity_mask_bytes()` bytes).
int mt_pin_thread(int cpu, void *saved);
/// Restores the calling thread's mask saved by `mt_pin_thread`.
int mt_restore_thread(const void *saved);
/// Pins process `pid` (all its threads started later, and its main thread) to `cpu`.
int mt_pin_process(pid_t pid, int cpu);
/// The size of a saved mask.
int mt_affinity_mask_bytes(void);

#endif
