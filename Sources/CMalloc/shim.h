// glibc's malloc.h, for mallopt (Transport's MessageAllocator): not part of Swift's Glibc module.
#if defined(__linux__)
#include <malloc.h>
#endif
