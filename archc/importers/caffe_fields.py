"""The field names of caffe.proto's messages that the Caffe importer reads (BVLC/caffe master).

Caffe's own text-format parser refuses a field its message does not have, so a
misspelt `strid: 2` would stop Caffe; the importer refuses it too (naming the
field and the nearest real one) rather than read the layer without it.
Each message maps a field to the message it holds (checked in turn) or to
None (a value, or a message archc does not read inside).
"""

from __future__ import annotations

Schema = dict[str, str | None]

_FILLER = "FillerParameter"
_SHARED = {"name": None, "type": None, "bottom": None, "top": None, "include": "NetStateRule",
           "exclude": "NetStateRule", "param": "ParamSpec", "blobs": None, "loss_weight": None}

# the parameters of the layer types archc imports, and the messages inside them
PARAMS: dict[str, Schema] = {
    "convolution_param": dict.fromkeys(
        "num_output bias_term pad kernel_size stride dilation pad_h pad_w kernel_h kernel_w stride_h "
        "stride_w group engine axis force_nd_im2col".split()) | {"weight_filler": _FILLER, "bias_filler": _FILLER},
    "pooling_param": dict.fromkeys(
        "pool pad pad_h pad_w kernel_size kernel_h kernel_w stride stride_h stride_w engine global_pooling "
        "round_mode".split()),
    "inner_product_param": dict.fromkeys("num_output bias_term axis transpose".split())
    | {"weight_filler": _FILLER, "bias_filler": _FILLER},
    "relu_param": dict.fromkeys(["negative_slope", "engine"]),
    "sigmoid_param": {"engine": None},
    "tanh_param": {"engine": None},
    "lrn_param": dict.fromkeys("local_size alpha beta norm_region k engine".split()),
    "dropout_param": {"dropout_ratio": None},
    "softmax_param": dict.fromkeys(["engine", "axis"]),
    "concat_param": dict.fromkeys(["axis", "concat_dim"]),
    "eltwise_param": dict.fromkeys(["operation", "coeff", "stable_prod_grad"]),
    "batch_norm_param": dict.fromkeys(["use_global_stats", "moving_average_fraction", "eps"]),
    "scale_param": dict.fromkeys(["axis", "num_axes", "bias_term"]) | {"filler": _FILLER, "bias_filler": _FILLER},
    "flatten_param": dict.fromkeys(["axis", "end_axis"]),
    "input_param": {"shape": "BlobShape"},
}

# the layer's other parameters: messages of types archc does not import (a data or loss layer)
_OTHER_PARAMS = (
    "phase propagate_down transform_param loss_param accuracy_param argmax_param bias_param clip_param "
    "contrastive_loss_param crop_param data_param dummy_data_param elu_param embed_param exp_param "
    "hdf5_data_param hdf5_output_param hinge_loss_param image_data_param infogain_loss_param log_param "
    "memory_data_param mvn_param parameter_param power_param prelu_param python_param recurrent_param "
    "reduction_param reshape_param spp_param slice_param swish_param threshold_param tile_param "
    "window_data_param"
).split()
_V1_ONLY = ["blob_share_mode", "blobs_lr", "weight_decay", "layer"]

MESSAGES: dict[str, Schema] = {
    "NetParameter": dict.fromkeys(["name", "input", "input_dim", "force_backward", "state", "debug_info"])
    | {"input_shape": "BlobShape", "layer": "LayerParameter", "layers": "V1LayerParameter"},
    "LayerParameter": _SHARED | dict.fromkeys(_OTHER_PARAMS) | {k: k for k in PARAMS},
    "V1LayerParameter": _SHARED | {"param": None} | dict.fromkeys(_OTHER_PARAMS + _V1_ONLY)
    | {k: k for k in PARAMS if k not in ("batch_norm_param", "scale_param", "flatten_param", "input_param")},
    "BlobShape": {"dim": None},
    "NetStateRule": dict.fromkeys(["phase", "min_level", "max_level", "stage", "not_stage"]),
    "ParamSpec": dict.fromkeys(["name", "share_mode", "lr_mult", "decay_mult"]),
    _FILLER: dict.fromkeys("type value min max mean std sparse variance_norm".split()),
    **PARAMS,
}
