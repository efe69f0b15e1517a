/* ops-conv: not written yet. */
#include <tapegrad/tapegrad.h>
