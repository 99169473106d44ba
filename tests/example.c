/* The usage example at the top of include/cnnviz.h, as a program: `make
 * test` builds it against the installed library (tests/install_test.sh)
 * and checks that its lines match the header's. Keep the two identical. */
#include <stdio.h>

#include <cnnviz.h>

int main(void)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_status st = cnv_model_load_onnx("weights/fashion_mnist.onnx", &m);
    if (st == CNV_OK) st = cnv_session_create(m, &s);
    if (st == CNV_OK) st = cnv_session_plan(s, 1, 28, 28);
    if (st == CNV_OK) st = cnv_session_forward(s);
    if (st != CNV_OK) fprintf(stderr, "%s\n", s ? cnv_session_errmsg(s) : cnv_model_errmsg(m));
    cnv_session_free(s);
    cnv_model_free(m);
    return st == CNV_OK ? 0 : 1;
}
