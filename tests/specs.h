/* Layer specs as a job file would give them, for the tests that build
 * models from lists of layers (test_layers.c, test_gpu.c): every spec
 * starts from S(type), with a bias, one group, stride 1 and batch norm's
 * torch defaults (momentum 0.1, eps 1e-5). */
#ifndef DL_TEST_SPECS_H
#define DL_TEST_SPECS_H

#include "models/model.h"

dl_layer_spec_t S(dl_layer_type_t type);
dl_layer_spec_t dense(int units, dl_act_t act);
dl_layer_spec_t conv(int filters, int size, int stride, int pad, dl_act_t act);
dl_layer_spec_t act(dl_act_t a);
dl_layer_spec_t pool(dl_layer_type_t t, int size, int stride, int pad);
dl_layer_spec_t shortcut(int from, dl_act_t a);
dl_layer_spec_t dropout(double rate);
/* s with g channel groups; s without a bias */
dl_layer_spec_t groups(dl_layer_spec_t s, int g);
dl_layer_spec_t nobias(dl_layer_spec_t s);

#endif
