/* ops-elementwise: not written yet. */
#include <tapegrad/tapegrad.h>
