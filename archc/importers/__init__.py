"""Importers: existing models (Caffe prototxt, ONNX) as readable `.arch` specs.

Each importer reads one format and returns an `Imported` (the spec's text and,
where the format carries them, the weights by state_dict name); `finish` turns
that into the file `archc import` writes: a header naming the source, the
totals asserted, formatted by `archc fmt` and checked again. They sit above
the API (they compile what they write) and below the commands.
"""
