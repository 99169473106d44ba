/* cnnviz atlas, shared between its three files: the command and its
 * manifest (cmd_atlas.c), the items and their rendering (atlas_items.c),
 * and the pages built from whatever items exist (atlas_pages.c). */
#ifndef CNV_ATLAS_H
#define CNV_ATLAS_H

#include <stdint.h>
#include <stdio.h>

#include "cli_common.h"

#define ATLAS_ITERS 128    /* a quarter of Lucid's 512: an overview, for speed */
#define ATLAS_DIVERSE 4    /* pictures in a diversity batch */
#define ATLAS_TOP 5        /* predictions an image's record keeps */
#define ATLAS_METHODS 2    /* saliency methods per image */
#define ATLAS_MAX_TOP 64   /* --top at most */

/* What an item is; the letter starts its file's name. */
typedef enum atlas_kind {
    ITEM_CHANNEL = 'n',   /* a channel's picture */
    ITEM_NEGATIVE = 'g',  /* the picture that lowers the channel most */
    ITEM_DIVERSITY = 'd', /* ATLAS_DIVERSE different pictures of a channel */
    ITEM_CLASS = 'c',     /* a class model */
    ITEM_IMAGE = 'i'      /* one image of --images: its record and maps */
} atlas_kind;

typedef struct atlas_layer {
    int t, node;        /* tensor, and the node that makes it */
    int C, shown;       /* channels, and how many (the first ones) are shown */
    int h, w;           /* its height and width at the model's input size */
    int first_channel;  /* item index of its first channel picture */
    int first_negative; /* ... negative (-1: none) */
    int first_diverse;  /* ... diversity batch (-1: none) */
    int n_diverse;      /* channels with a diversity batch */
    int channel0;       /* its first channel among all layers' shown ones */
} atlas_layer;

typedef struct atlas_item {
    char kind;  /* atlas_kind */
    int layer;  /* index into the layers; -1: a class or an image */
    int index;  /* channel, class, or image (index into image_names) */
    /* "items/n0123456789abcdef.png", relative to the site; an image's is
     * its name without extension ("items/i...": .txt, .in.png, .s0.png,
     * .s1.png); "" until named (images are named when first needed: that
     * reads the file) */
    char file[40];
} atlas_item;

typedef struct atlas {
    cli_model cm;
    const char *site, *layers_text, *per_text, *classes_text, *images_dir, *methods_text;
    int iters, per_layer; /* per_layer -1: all */
    int layer_sample;     /* 0: every chosen layer; else that many, spread */
    int negatives;        /* a negative picture per channel */
    int diverse;          /* channels of each layer with a diversity batch */
    int top;              /* image crops per channel */
    uint64_t seed, model_hash;
    char recipe[512];     /* the recipe as text, hashed into each item's name */
    char image_recipe[256]; /* the same for the image items */
    cnv_saliency_method methods[ATLAS_METHODS];
    atlas_layer *layers;
    int n_layers, n_channels; /* shown channels over all layers */
    int *classes, n_classes;
    int n_scores;             /* the model's class count */
    char **image_names;       /* the files of --images, sorted */
    int n_images;
    atlas_item *items;
    int n_items, first_class, first_image;
    cnv_shape *shapes; /* every tensor's, for 1 x C x H x W */
    double *flops;     /* every node's multiply-add FLOPs */
    char *command;     /* how the site was made, for the pages */
    char *options;     /* the same without the model's and folder's names */
    char date[64];     /* "" with --no-time */
    int timed;         /* times.log: each item's seconds (not with --no-time) */
    double *seconds;   /* merge: each item's, from times.log; < 0: unknown */
    double total_seconds; /* merge: their sum over the items that exist */
    int timed_items;      /* ... and how many of those have a time */
    int unreadable;       /* merge: images whose record says they could not
                             be read or scored */
} atlas;

/* atlas_items.c */
uint64_t atlas_fnv(uint64_t h, const void *data, size_t n);
uint64_t atlas_fnv_str(uint64_t h, const char *s);
#define ATLAS_FNV_OFFSET 0xcbf29ce484222325ull
int atlas_hash_file(const char *path, uint64_t *out);
int atlas_list_items(atlas *a);
int atlas_item_name(atlas *a, atlas_item *it); /* fills it->file */
char *atlas_site_path(const atlas *a, const char *name);
char *atlas_site_path2(const atlas *a, const char *name, const char *suffix);
char *atlas_image_path(const atlas *a, int index);
int atlas_file_exists(const char *path);
int atlas_make_dir(const char *path);
int atlas_item_present(atlas *a, atlas_item *it);
typedef struct atlas_stats {
    int items, rendered, skipped, failed;
    double seconds;
} atlas_stats;
int atlas_render(atlas *a, int shard, int shards, int resume, int quiet, int one_thread, atlas_stats *rs);

#define ATLAS_TIMES "times.log"

/* atlas_pages.c */
int atlas_merge(atlas *a, int *missing);
const char *atlas_model_name(const atlas *a);

#endif
