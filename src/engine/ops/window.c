/* auto_pad and window counts (see window.h). */
#include "engine/ops/window.h"

#include <string.h>

cnv_status cnv_auto_pad_parse(const cnv_node *n, int *mode, cnv_err *e)
{
    const char *ap;
    cnv_status st = cnv_attr_get_string(n, "auto_pad", "NOTSET", &ap, e);
    if (st != CNV_OK)
        return st;
    if (strcmp(ap, "NOTSET") == 0 || ap[0] == '\0')
        *mode = CNV_PAD_NOTSET;
    else if (strcmp(ap, "SAME_UPPER") == 0)
        *mode = CNV_PAD_SAME_UPPER;
    else if (strcmp(ap, "SAME_LOWER") == 0)
        *mode = CNV_PAD_SAME_LOWER;
    else if (strcmp(ap, "VALID") == 0)
        *mode = CNV_PAD_VALID;
    else
        return cnv_fail(e, CNV_ERR_FORMAT, "unknown auto_pad '%s'", ap);
    return CNV_OK;
}

int cnv_window_axis(int mode, int64_t in, int64_t k, int64_t s, int64_t d, int ceil_mode, int64_t *pb,
                    int64_t *pe, int64_t *out)
{
    int64_t span = (k - 1) * d + 1;
    if (mode == CNV_PAD_SAME_UPPER || mode == CNV_PAD_SAME_LOWER) {
        int64_t o = (in + s - 1) / s;
        int64_t total = (o - 1) * s + span - in;
        if (total < 0)
            total = 0;
        *pb = mode == CNV_PAD_SAME_UPPER ? total / 2 : total - total / 2;
        *pe = total - *pb;
        *out = o;
        return 1;
    }
    if (mode == CNV_PAD_VALID)
        *pb = *pe = 0;
    int64_t room = in + *pb + *pe - span;
    if (room < 0)
        return 0;
    int64_t o = room / s + 1;
    if (ceil_mode && mode == CNV_PAD_NOTSET) {
        o = (room + s - 1) / s + 1;
        if ((o - 1) * s >= in + *pb)
            o--;
    }
    *out = o;
    return 1;
}
