/* Model queries in terms of what ops declare about themselves (see
 * query.h): producers, pre-activations, the layers users look at, the raw
 * class scores, and layer names as users type them. */
#include <stdio.h>
#include <string.h>

#include "engine/op.h"
#include "engine/query.h"

int cnv_model_producer(const cnv_model *m, int t)
{
    return m && t >= 0 && t < m->n_tensors ? m->tensors[t].producer : -1;
}

int cnv_model_pre_activation(const cnv_model *m, int t)
{
    int p = cnv_model_producer(m, t);
    if (p < 0 || !(m->nodes[p].op->flags & CNV_OP_ACTIVATION) || m->nodes[p].n_in < 1)
        return -1;
    return m->nodes[p].in[0];
}

int cnv_model_node_is_layer(const cnv_model *m, int i)
{
    return m && i >= 0 && i < m->n_nodes && m->nodes[i].n_out > 0 &&
           (m->nodes[i].op->flags & (CNV_OP_ACTIVATION | CNV_OP_FEATURES));
}

int cnv_model_node_joins(const cnv_model *m, int i)
{
    if (!m || i < 0 || i >= m->n_nodes)
        return 0;
    int n = 0;
    for (int k = 0; k < m->nodes[i].n_in; k++)
        n += m->nodes[i].in[k] >= 0 && m->tensors[m->nodes[i].in[k]].kind != CNV_T_CONST;
    return n;
}

/* Nodes are stored after their producers, so one backward sweep over them
 * marks every tensor that `to` depends on. */
int cnv_model_feeds(const cnv_model *m, int from, int to, unsigned char *mark)
{
    memset(mark, 0, (size_t)m->n_tensors);
    mark[to] = 1;
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const cnv_node *n = &m->nodes[i];
        int hit = 0;
        for (int k = 0; k < n->n_out; k++)
            hit |= mark[n->out[k]];
        if (!hit)
            continue;
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] >= 0)
                mark[n->in[k]] = 1;
    }
    return mark[from];
}

/* One forward sweep marks what the inputs reach without passing `via`. */
int cnv_model_all_paths_through(const cnv_model *m, int via, int to, unsigned char *mark)
{
    memset(mark, 0, (size_t)m->n_tensors);
    for (int k = 0; k < m->n_inputs; k++)
        mark[m->inputs[k]] = 1;
    int reached_via = mark[via];
    mark[via] = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const cnv_node *n = &m->nodes[i];
        int hit = 0;
        for (int k = 0; k < n->n_in; k++)
            hit |= n->in[k] >= 0 && mark[n->in[k]];
        for (int k = 0; hit && k < n->n_out; k++)
            if (n->out[k] != via)
                mark[n->out[k]] = 1;
            else
                reached_via = 1;
    }
    return reached_via && !mark[to];
}

int cnv_model_score_tensor(const cnv_model *m)
{
    if (!m || m->n_outputs < 1)
        return -1;
    int t = m->outputs[0], p = m->tensors[t].producer;
    if (p >= 0) {
        const cnv_node *n = &m->nodes[p];
        if ((n->op->flags & CNV_OP_PROBABILITIES) && n->n_in >= 1 && n->in[0] >= 0)
            return n->in[0];
    }
    return t;
}

/* A layer sheet shows every activation's output, and every feature map
 * that no activation reads (its activation's output stands for it). */
static int is_shown(const cnv_model *m, const cnv_node *n)
{
    unsigned f = n->op->flags;
    return (f & CNV_OP_ACTIVATION) || ((f & CNV_OP_FEATURES) && !m->tensors[n->out[0]].activated);
}

static int is_layer(const cnv_model *m, int t)
{
    return t >= 0 && m->tensors[t].kind != CNV_T_CONST;
}

cnv_status cnv_model_find_layer(const cnv_model *m, const char *text, int *tensor, char *errbuf,
                                size_t errlen)
{
    char dummy[8];
    if (!errbuf || !errlen) {
        errbuf = dummy;
        errlen = sizeof dummy;
    }
    errbuf[0] = '\0';
    if (!m || !text || !tensor || !*text) {
        snprintf(errbuf, errlen, "no layer name given");
        return CNV_ERR_INVALID_ARG;
    }
    int t = cnv_model_find(m, text);
    if (t >= 0) {
        if (!is_layer(m, t)) {
            snprintf(errbuf, errlen, "'%s' is a constant (a weight), not a layer", text);
            return CNV_ERR_NOT_FOUND;
        }
        *tensor = t;
        return CNV_OK;
    }
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].name && !strcmp(m->nodes[i].name, text)) {
            *tensor = m->nodes[i].out[0];
            return CNV_OK;
        }
    int found = -1, count = 0;
    for (int i = 0; i < m->n_nodes; i++)
        for (int k = 0; k < m->nodes[i].n_out; k++) {
            int o = m->nodes[i].out[k];
            if (strstr(m->tensors[o].name, text)) {
                if (count == 0)
                    found = o;
                count++;
            }
        }
    if (count == 1) {
        *tensor = found;
        return CNV_OK;
    }
    if (count == 0) {
        snprintf(errbuf, errlen,
                 "no layer '%s': no tensor or node has that name, and no layer name contains it "
                 "('cnnviz info' lists the layers)",
                 text);
        return CNV_ERR_NOT_FOUND;
    }
    /* Ambiguous: name the first few so the user can pick. */
    size_t len = (size_t)snprintf(errbuf, errlen, "layer '%s' is ambiguous: %d layers contain it (", text,
                                  count);
    int shown = 0;
    for (int i = 0; i < m->n_nodes && shown < 3; i++)
        for (int k = 0; k < m->nodes[i].n_out && shown < 3; k++) {
            const char *o = m->tensors[m->nodes[i].out[k]].name;
            if (!strstr(o, text) || len >= errlen)
                continue;
            len += (size_t)snprintf(errbuf + len, errlen - len, "%s'%s'", shown ? ", " : "", o);
            shown++;
        }
    if (len < errlen)
        snprintf(errbuf + len, errlen - len, "%s); give more of the name", count > shown ? ", ..." : "");
    return CNV_ERR_NOT_FOUND;
}

int cnv_model_layers(const cnv_model *m, int max, int *layers)
{
    if (!m)
        return 0;
    /* First pass counts, second writes the chosen ones. */
    int total = 0;
    for (int pass = 0; pass < 2; pass++) {
        int idx = 0, written = 0;
        for (int i = 0; i < m->n_nodes; i++) {
            const cnv_node *n = &m->nodes[i];
            int take = is_shown(m, n);
            if (!take)
                continue;
            if (pass == 1) {
                int keep;
                if (max <= 0 || total <= max) {
                    keep = 1;
                } else if (max == 1) {
                    keep = idx == total - 1;
                } else {
                    /* idx is kept when it is the rounded k-th of max evenly
                     * spaced positions over 0..total-1 */
                    keep = 0;
                    for (int k = 0; k < max && !keep; k++)
                        keep = (int)(((int64_t)k * (total - 1) * 2 + (max - 1)) / (2 * (max - 1))) == idx;
                }
                if (keep) {
                    if (layers)
                        layers[written] = n->out[0];
                    written++;
                }
            }
            idx++;
        }
        if (pass == 0)
            total = idx;
        else
            return written;
    }
    return 0;
}
