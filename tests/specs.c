/* Layer specs for the model tests (specs.h). */
#include "specs.h"

dl_layer_spec_t S(dl_layer_type_t type)
{
    return (dl_layer_spec_t){
        .type = type, .bias = 1, .groups = 1, .stride = 1, .momentum = 0.1, .eps = 1e-5};
}

dl_layer_spec_t dense(int units, dl_act_t act)
{
    dl_layer_spec_t s = S(DL_LAYER_DENSE);
    s.units = units;
    s.act = act;
    return s;
}

dl_layer_spec_t conv(int filters, int size, int stride, int pad, dl_act_t act)
{
    dl_layer_spec_t s = S(DL_LAYER_CONV);
    s.filters = filters;
    s.size = size;
    s.stride = stride;
    s.pad = pad;
    s.act = act;
    return s;
}

dl_layer_spec_t act(dl_act_t a)
{
    dl_layer_spec_t s = S(DL_LAYER_ACTIVATION);
    s.act = a;
    return s;
}

dl_layer_spec_t pool(dl_layer_type_t t, int size, int stride, int pad)
{
    dl_layer_spec_t s = S(t);
    s.size = size;
    s.stride = stride;
    s.pad = pad;
    return s;
}

dl_layer_spec_t shortcut(int from, dl_act_t a)
{
    dl_layer_spec_t s = S(DL_LAYER_SHORTCUT);
    s.from = from;
    s.act = a;
    return s;
}

dl_layer_spec_t dropout(double rate)
{
    dl_layer_spec_t s = S(DL_LAYER_DROPOUT);
    s.rate = rate;
    return s;
}

dl_layer_spec_t groups(dl_layer_spec_t s, int g)
{
    s.groups = g;
    return s;
}

dl_layer_spec_t nobias(dl_layer_spec_t s)
{
    s.bias = 0;
    return s;
}
