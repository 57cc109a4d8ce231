# OpenMP shim: header-only, so a build without OpenMP still compiles and the
# kernels (and roicore.openmp_enabled()) see a serial runtime.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define ROICORE_OPENMP 1
    static inline int rc_omp_get_max_threads(void) { return omp_get_max_threads(); }
    #else
    #define ROICORE_OPENMP 0
    static inline int rc_omp_get_max_threads(void) { return 1; }
    #endif
    """
    int ROICORE_OPENMP
    int rc_omp_get_max_threads() nogil
