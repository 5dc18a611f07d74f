"""The registry of layer kinds: keys, shape rules, counts, explanations, tensors."""

from archc.kinds.registry import (
    KINDS as KINDS,
)
from archc.kinds.registry import (
    REQUIRED as REQUIRED,
)
from archc.kinds.registry import (
    USER_KINDS as USER_KINDS,
)
from archc.kinds.registry import (
    Attrs as Attrs,
)
from archc.kinds.registry import (
    CountFn as CountFn,
)
from archc.kinds.registry import (
    Counts as Counts,
)
from archc.kinds.registry import (
    ExplainFn as ExplainFn,
)
from archc.kinds.registry import (
    InferFn as InferFn,
)
from archc.kinds.registry import (
    Key as Key,
)
from archc.kinds.registry import (
    KeyType as KeyType,
)
from archc.kinds.registry import (
    LayerKind as LayerKind,
)
from archc.kinds.registry import (
    Pair as Pair,
)
from archc.kinds.registry import (
    ShapeError as ShapeError,
)
from archc.kinds.registry import (
    Uneven as Uneven,
)
from archc.kinds.registry import (
    Window as Window,
)
from archc.kinds.registry import (
    coerce as coerce,
)
from archc.kinds.registry import (
    resolve_window as resolve_window,
)
from archc.kinds.registry import (
    same_pads as same_pads,
)
from archc.kinds.registry import (
    show_value as show_value,
)
from archc.kinds.registry import (
    uneven_division as uneven_division,
)
from archc.kinds.registry import (
    window_explain as window_explain,
)
from archc.kinds.registry import (
    window_out as window_out,
)
