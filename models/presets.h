/* Named models usable instead of layer sections ([model] preset = NAME).
 * Each is a list of layer specs as the job file would give them; the last
 * dense layer's units are DL_UNITS_CLASSES, replaced by the data's number of
 * classes when the model is planned. docs/models.md lists their layers. */
#ifndef DL_PRESETS_H
#define DL_PRESETS_H

#include "model.h"

#define DL_UNITS_CLASSES (-1)

/* Names accepted by dl_preset_specs, NULL-terminated; index 0 is "none". */
extern const char *const dl_preset_names[];

/* Fill specs (room for max) with preset number `preset` (an index into
 * dl_preset_names, > 0). Returns the number of sections, or -1 if max is
 * too small. */
int dl_preset_specs(int preset, dl_layer_spec_t *specs, int max);

#endif
