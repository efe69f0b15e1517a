/* ops-pool: not written yet. */
#include <tapegrad/tapegrad.h>
