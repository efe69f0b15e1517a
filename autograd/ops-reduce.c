/* ops-reduce: not written yet. */
#include <tapegrad/tapegrad.h>
