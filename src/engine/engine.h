/* What the layers above the engine (image, viz, train, onnx's writer) use
 * besides the public API: the handles' message buffers, so that their
 * failures land on the handle that was called, and the model queries. They
 * never include the engine's other headers. */
#ifndef CNV_ENGINE_H
#define CNV_ENGINE_H

#include "core/base.h"
#include "engine/query.h"

/* The message buffer of a session, of a model (NULL for NULL). A model's
 * is written only by calls that also change the model (training). */
cnv_err *cnv_session_err(cnv_session *s);
cnv_err *cnv_model_err(cnv_model *m);

#endif
