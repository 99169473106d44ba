/* The usage example at the top of include/cnnviz.h, as a program: `make
 * test` builds it against the installed library (tests/install_test.sh),
 * runs it from the repository root and checks that its lines match the
 * header's. Keep the two identical. */
#include <stdio.h>

#include <cnnviz.h>

int main(void)
{
    cnv_model *m = NULL;
    cnv_session *s = NULL;
    cnv_image img = {0};
    char err[256] = "";
    float seed[10] = {0}; // d(seed . scores) / d(input): here the score
    seed[9] = 1.0f;       // of class 9 of the default model, Ankle boot
    cnv_status st = cnv_image_load("docs/img/ankle_boot.png", &img, err, sizeof err);
    if (st == CNV_OK) st = cnv_model_load_onnx("weights/fashion_mnist.onnx", &m);
    if (st == CNV_OK) st = cnv_session_create(m, &s);
    if (st == CNV_OK) st = cnv_session_plan(s, 1, 28, 28);
    if (st == CNV_OK) st = cnv_session_set_image(s, 0, &img, NULL);
    if (st == CNV_OK) st = cnv_session_forward(s);
    if (st == CNV_OK) st = cnv_session_backward(s, cnv_model_score_tensor(m), seed, 10);
    if (st == CNV_OK) printf("d score / d pixel (14, 14): %g\n", cnv_session_input_grad(s)[14 * 28 + 14]);
    if (st != CNV_OK) fprintf(stderr, "%s\n", err[0] ? err : s ? cnv_session_errmsg(s) : cnv_model_errmsg(m));
    cnv_image_free(&img);
    cnv_session_free(s);
    cnv_model_free(m);
    return st == CNV_OK ? 0 : 1;
}
