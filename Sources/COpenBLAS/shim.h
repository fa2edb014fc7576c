#ifndef METATRAIN_COPENBLAS_SHIM_H
#define METATRAIN_COPENBLAS_SHIM_H
#include <cblas.h>
/* Declared by OpenBLAS's own cblas.h; repeated so the intent is visible: we pin BLAS to one thread. */
void openblas_set_num_threads(int num_threads);
#endif
