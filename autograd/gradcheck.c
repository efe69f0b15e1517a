/* gradcheck: not written yet. */
#include <tapegrad/tapegrad.h>
