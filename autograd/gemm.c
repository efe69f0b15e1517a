/* gemm: not written yet. */
#include <tapegrad/tapegrad.h>
