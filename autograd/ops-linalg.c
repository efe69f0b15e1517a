/* ops-linalg: not written yet. */
#include <tapegrad/tapegrad.h>
