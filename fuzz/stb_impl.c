/* The fuzz build compiles stb_image and stb_image_resize from the system
 * headers with the same instrumentation as the library, so that ASan sees
 * inside the decoder (Debian's prebuilt libstb is not instrumented). The
 * library itself never defines these; only build/fuzz links this file. */
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image_resize.h>
