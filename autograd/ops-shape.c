/* Shape ops: reshape, flatten, 2-d transpose, concatenation. */
#include <string.h>

#include "core-impl.h"
#include "ops-impl.h"

enum tg_status tg_shape_same_as_first(struct tg_op_ctx *ctx, struct tg_tensor *const *in, int n_in,
                                      int *n_dims, int64_t *shape)
{
    (void)ctx;
    (void)n_in;
    *n_dims = in[0]->n_dims;
    memcpy(shape, in[0]->shape, sizeof(in[0]->shape));
    return TG_OK;
}

int tg_axis_norm(int axis, int n_dims)
{
    if (axis < 0)
        axis += n_dims;
    return axis >= 0 && axis < n_dims ? axis : -1;
}
