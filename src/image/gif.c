/* Animated GIF output through giflib: one 256-color palette per frame from
 * giflib's median-cut quantizer, written beside the target and renamed. */
#include "image/image.h"

#include <errno.h>
#include <string.h>

#include <gif_lib.h>

struct cnv_gif_writer {
    cnv_err err;
    cnv_tmpfile file;
    GifFileType *gif;
    int width, height, delay_cs;
    int frames;
    int failed;   /* a write failed: only _free is accepted */
    int closed;
    unsigned char *planes; /* R, G, B and index planes, width*height each */
};

/* giflib's output callback: our own FILE, so write errors are seen here
 * and giflib never closes a descriptor it did not open. */
static int gif_out(GifFileType *gif, const GifByteType *data, int len)
{
    FILE *f = gif->UserData;
    return len > 0 ? (int)fwrite(data, 1, (size_t)len, f) : 0;
}

static cnv_status gif_fail(cnv_gif_writer *g, int code, const char *what)
{
    g->failed = 1;
    int e = errno;
    if (code == E_GIF_ERR_WRITE_FAILED || code == E_GIF_ERR_DISK_IS_FULL || code == E_GIF_ERR_CLOSE_FAILED)
        return cnv_fail(&g->err, CNV_ERR_IO, "cannot write '%s': %s (%s)", g->file.path ? g->file.path : "",
                        what, e ? strerror(e) : "write failed");
    const char *msg = GifErrorString(code);
    return cnv_fail(&g->err, code == E_GIF_ERR_NOT_ENOUGH_MEM ? CNV_ERR_NOMEM : CNV_ERR_IO,
                    "GIF '%s': %s: %s", g->file.path ? g->file.path : "", what, msg ? msg : "giflib error");
}

cnv_status cnv_gif_writer_open(const char *path, int width, int height, int delay_cs, int loop,
                               cnv_gif_writer **out)
{
    if (!out)
        return CNV_ERR_INVALID_ARG;
    *out = NULL;
    cnv_gif_writer *g = cnv_calloc(1, sizeof *g);
    if (!g)
        return CNV_ERR_NOMEM;
    *out = g;
    g->width = width;
    g->height = height;
    g->delay_cs = delay_cs;
    g->failed = 1; /* until the header is written */
    size_t n, planes;
    /* GIF sizes are 16-bit fields. */
    if (width <= 0 || height <= 0 || width > 65535 || height > 65535 ||
        !cnv_image_bytes(width, height, 4, &n))
        return cnv_fail(&g->err, CNV_ERR_INVALID_ARG, "GIF: invalid size %dx%d", width, height);
    if (delay_cs < 0 || delay_cs > 65535)
        return cnv_fail(&g->err, CNV_ERR_INVALID_ARG, "GIF: delay %d is not in 0..65535 (1/100 s)", delay_cs);
    if (!path)
        return cnv_fail(&g->err, CNV_ERR_INVALID_ARG, "GIF: path is NULL");
    if (!cnv_mul_size((size_t)width * height, 4, &planes) || !(g->planes = cnv_malloc(planes)))
        return cnv_fail(&g->err, CNV_ERR_NOMEM, "GIF: out of memory for %dx%d frames", width, height);
    cnv_status st = cnv_tmpfile_open(&g->file, path, &g->err);
    if (st != CNV_OK)
        return st;
    int code = 0;
    g->gif = EGifOpen(g->file.f, gif_out, &code);
    if (!g->gif)
        return gif_fail(g, code, "cannot start the file");
    /* Delays and looping live in GIF89 extensions. */
    EGifSetGifVersion(g->gif, true);
    g->failed = 0;
    if (EGifPutScreenDesc(g->gif, width, height, 8, 0, NULL) == GIF_ERROR)
        return gif_fail(g, g->gif->Error, "writing the screen descriptor");
    if (loop) {
        /* NETSCAPE2.0 application block: sub-block 1, loop count 0 = forever. */
        static const unsigned char app[11] = {'N', 'E', 'T', 'S', 'C', 'A', 'P', 'E', '2', '.', '0'};
        static const unsigned char count[3] = {1, 0, 0};
        if (EGifPutExtensionLeader(g->gif, APPLICATION_EXT_FUNC_CODE) == GIF_ERROR ||
            EGifPutExtensionBlock(g->gif, sizeof app, app) == GIF_ERROR ||
            EGifPutExtensionBlock(g->gif, sizeof count, count) == GIF_ERROR ||
            EGifPutExtensionTrailer(g->gif) == GIF_ERROR)
            return gif_fail(g, g->gif->Error, "writing the loop extension");
    }
    return CNV_OK;
}

cnv_status cnv_gif_writer_add_frame(cnv_gif_writer *g, const cnv_image *frame)
{
    if (!g)
        return CNV_ERR_INVALID_ARG;
    if (g->failed || g->closed || !g->gif)
        return cnv_fail(&g->err, CNV_ERR_STATE, "GIF: the writer is %s",
                        g->closed ? "closed" : "in a failed state");
    size_t bytes;
    if (!frame || !frame->data || !cnv_image_bytes(frame->width, frame->height, frame->channels, &bytes))
        return cnv_fail(&g->err, CNV_ERR_INVALID_ARG, "GIF frame %d: not a valid image", g->frames);
    if (frame->width != g->width || frame->height != g->height)
        return cnv_fail(&g->err, CNV_ERR_SHAPE, "GIF frame %d is %dx%d, the animation is %dx%d",
                        g->frames, frame->width, frame->height, g->width, g->height);
    size_t n = (size_t)g->width * g->height;
    int c = frame->channels;
    unsigned char *r = g->planes, *gr = r + n, *b = gr + n, *idx = b + n;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *p = frame->data + i * c;
        r[i] = p[0];
        gr[i] = p[c == 1 ? 0 : 1];
        b[i] = p[c == 1 ? 0 : 2];
    }
    GifColorType colors[256];
    memset(colors, 0, sizeof colors);
    int ncolors = 256;
    if (GifQuantizeBuffer((unsigned)g->width, (unsigned)g->height, &ncolors, r, gr, b, idx, colors) ==
        GIF_ERROR) {
        g->failed = 1;
        return cnv_fail(&g->err, CNV_ERR_NOMEM, "GIF frame %d: color quantization failed", g->frames);
    }
    /* Entries past the ones the quantizer used are zeroed: the map stays
     * 256 long (a power of two, as GIF needs). */
    ColorMapObject *map = GifMakeMapObject(256, colors);
    if (!map) {
        g->failed = 1;
        return cnv_fail(&g->err, CNV_ERR_NOMEM, "GIF frame %d: out of memory", g->frames);
    }
    GraphicsControlBlock gcb = {DISPOSE_DO_NOT, false, g->delay_cs, NO_TRANSPARENT_COLOR};
    GifByteType ext[4];
    size_t ext_len = EGifGCBToExtension(&gcb, ext);
    cnv_status st = CNV_OK;
    if (EGifPutExtension(g->gif, GRAPHICS_EXT_FUNC_CODE, (int)ext_len, ext) == GIF_ERROR ||
        EGifPutImageDesc(g->gif, 0, 0, g->width, g->height, false, map) == GIF_ERROR)
        st = gif_fail(g, g->gif->Error, "writing a frame header");
    for (int y = 0; st == CNV_OK && y < g->height; y++)
        if (EGifPutLine(g->gif, idx + (size_t)y * g->width, g->width) == GIF_ERROR)
            st = gif_fail(g, g->gif->Error, "writing frame pixels");
    GifFreeMapObject(map);
    if (st == CNV_OK)
        g->frames++;
    return st;
}

cnv_status cnv_gif_writer_close(cnv_gif_writer *g)
{
    if (!g)
        return CNV_ERR_INVALID_ARG;
    if (g->closed || g->failed || !g->gif)
        return cnv_fail(&g->err, CNV_ERR_STATE, "GIF: the writer is %s",
                        g->closed ? "already closed" : "in a failed state");
    if (g->frames == 0)
        return cnv_fail(&g->err, CNV_ERR_STATE, "GIF '%s': no frames were added", g->file.path);
    int code = 0;
    int rc = EGifCloseFile(g->gif, &code); /* frees the handle either way */
    g->gif = NULL;
    if (rc == GIF_ERROR)
        return gif_fail(g, code, "finishing the file");
    g->closed = 1;
    return cnv_tmpfile_commit(&g->file, &g->err);
}

void cnv_gif_writer_free(cnv_gif_writer *g)
{
    if (!g)
        return;
    if (g->gif) {
        int code;
        EGifCloseFile(g->gif, &code);
    }
    cnv_tmpfile_abort(&g->file); /* no-op once committed */
    cnv_free(g->planes);
    cnv_free(g);
}

const char *cnv_gif_writer_errmsg(const cnv_gif_writer *g)
{
    return g ? g->err.msg : "";
}

int cnv_gif_writer_frames(const cnv_gif_writer *g)
{
    return g ? g->frames : 0;
}
