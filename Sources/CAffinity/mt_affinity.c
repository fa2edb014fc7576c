#define _GNU_SOURCE
#include "mt_affinity.h"
#include <pthread.h>
#include <sched.h>
#include <string.h>

int mt_allowed_cpus(int *cpus, int max) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && n < max; cpu++) {
        if (CPU_ISSET(cpu, &set)) cpus[n++] = cpu;
    }
    return n;
}

int mt_pin_thread(int cpu, void *saved) {
    cpu_set_t old, set;
    int e = pthread_getaffinity_np(pthread_self(), sizeof old, &old);
    if (e != 0) return -1;
    memcpy(saved, &old, sizeof old);
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : -1;
}

int mt_restore_thread(const void *saved) {
    cpu_set_t set;
    memcpy(&set, saved, sizeof set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0 ? 0 : -1;
}

int mt_pin_process(pid_t pid, int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(pid, sizeof set, &set);
}

int mt_affinity_mask_bytes(void) { return (int)sizeof(cpu_set_t); }
