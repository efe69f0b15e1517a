/* ops-loss: not written yet. */
#include <tapegrad/tapegrad.h>
