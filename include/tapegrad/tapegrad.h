/* The whole public API of tapegrad. */
#ifndef TAPEGRAD_H
#define TAPEGRAD_H

#include <tapegrad/common.h>
#include <tapegrad/tensor.h>
#include <tapegrad/autograd.h>
#include <tapegrad/ops.h>
#include <tapegrad/gradcheck.h>

#endif
